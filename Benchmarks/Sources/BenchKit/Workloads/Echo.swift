import Foundation
import Histogram
import Spindle
import SpindleAsync
import SpindleCallbacks
import SpindleFutures
import SpindleLoop

/// `echo`: a TCP echo server on loopback, driven by `spindle-echo-load` (C, a separate
/// process) over 64 or 1,000 connections playing ping-pong with 64-byte messages, every byte
/// checked. Requests per second and latency percentiles (HdrHistogram). The baseline,
/// `c-libuv`, is `spindle-echo-c`: the same server written directly on libuv in C.
package enum EchoWorkload {
    package static let name = "echo"
    package static let variants = ["64-conn", "1000-conn"]
    package static let executors = [
        "c-libuv", "fibers", "fibers-2loops", "callbacks", "futures", "swift-async-loop", "swift-async-global",
        "threads",
        "swiftnio", "swiftnio-2threads",
    ]
    package static let baseline = "c-libuv"
    /// What `make bench` runs (each echo trial is two processes for 0.9 s); `--all` adds the rest.
    package static let headlineExecutors = [
        "c-libuv", "fibers", "fibers-2loops", "callbacks", "futures", "swift-async-loop", "swiftnio",
        "swiftnio-2threads",
    ]
    /// Servers that are other programs (peers): no allocation counting through the interposer.
    package static let peers = ["swiftnio", "swiftnio-2threads"]
    /// Servers whose allocations are those of another row's code (the fiber server on two loops
    /// runs `fibers`' connection code): not counted again, to keep `make bench` short.
    package static let sameCodeAs = ["fibers-2loops": "fibers"]
    package static let messageSize = 64

    package static func connections(_ variant: String) throws -> Int {
        guard let count = Int(variant.prefix { $0.isNumber }), variant.hasSuffix("-conn") else {
            throw BenchError.tool("unknown echo variant '\(variant)' (expected 64-conn or 1000-conn)")
        }
        return count
    }

    /// One measured run: requests per second and the latency histogram (ns).
    package struct Outcome {
        package var requestsPerSecond: Double
        package var latency: Histogram<UInt64>
        package var requests: Int
        /// The server process's CPU time (user + system, from its rusage) per round trip it served.
        package var serverCPUPerRequest: Double
        /// The load generator's CPU time per round trip: on two cores it competes with the server.
        package var loadCPUPerRequest: Double
        /// Every round trip, warm-up included.
        package var rounds: Int
        /// The server's malloc calls over its whole life (only when counting allocations).
        package var serverMallocs: Int?
        /// Round trips the load generator finished per loop turn (in the window): which side of
        /// the closed loop holds the queue. Near 1, the requests wait in the server; near the
        /// connection count (or above: a fast server answers again within the turn), the load
        /// generator is the slower side and reads a whole round of echoes each turn, and the few
        /// that land just after its poll wait a second turn.
        package var loadBatch: Double
        /// From the load generator's first requests to the last connection's first echo: how long
        /// the server took to take on every connection. The warm-up and the window come after it.
        package var rampSeconds: Double
        /// From the first connect (all of them opened at once) to the last connection's first
        /// echo: what a burst of new clients waits, accept queue and handshakes included.
        package var burstSeconds: Double
    }

    /// The accept bursts the `burst` rows open (every connection at once, each then waiting
    /// for its first echo), and the servers they run against.
    package static let burstSizes = [1_000, 10_000]
    package static let burstExecutors = ["c-libuv", "fibers", "fibers-2loops"]

    // MARK: Servers

    /// Runs the `executor`'s echo server on 127.0.0.1:`port` (0: any) in this process until
    /// SIGINT or SIGTERM, printing "listening on 127.0.0.1:PORT" once it accepts connections.
    package static func serve(_ executor: String, port: Int) throws {
        switch executor {
        case "fibers": try serveFibers(port: port)
        case "fibers-2loops": try serveFibersOnLoops(2, port: port)
        case "callbacks", "futures": try serveClosures(futures: executor == "futures", port: port)
        case "swift-async-loop", "swift-async-global":
            try serveAsync(onLoop: executor == "swift-async-loop", port: port)
        case "threads": try serveThreads(port: port)
        default: throw BenchError.unknownExecutor(executor, workload: name)
        }
    }

    /// One fiber per connection, straight-line: read into the connection's buffer, write it back.
    static func serveFibers(port: Int) throws {
        let loop = EventLoop()
        let listener = try TCPListener(address: SocketAddress(ip: "127.0.0.1", port: port), backlog: 4096, loop: loop)
        announce(try listener.localAddress.port)
        loop.spawnDetached(name: "acceptor") {
            while let connection = try? listener.accept() {
                loop.spawnDetached(name: "connection") { echo(connection) }
            }
        }
        loop.spawnDetached(name: "signals") {
            _ = try? Fiber.waitForSignal([SIGINT, SIGTERM])
            listener.close()
        }
        try loop.run()
        try loop.close()
    }

    /// The fiber server on a LoopGroup: one listener per loop (SO_REUSEPORT), each connection a
    /// fiber of the loop the kernel gave it to; stops on a signal.
    static func serveFibersOnLoops(_ loops: Int, port: Int) throws {
        // Before the loops' threads exist, so they inherit the mask: sigwait takes the signals here.
        var stopSignals = sigset_t()
        sigemptyset(&stopSignals)
        sigaddset(&stopSignals, SIGTERM)
        sigaddset(&stopSignals, SIGINT)
        pthread_sigmask(SIG_BLOCK, &stopSignals, nil)
        let group = LoopGroup(loops: loops, pinning: false, name: "echo")
        let service = try group.serveTCP(on: SocketAddress(ip: "127.0.0.1", port: port), backlog: 4096) { echo($0) }
        announce(service.address.port)
        var received: Int32 = 0
        sigwait(&stopSignals, &received)
        try group.shutdown(within: .seconds(5))
    }

    static func echo(_ connection: TCPConnection) {
        defer { connection.close() }
        try? connection.setNoDelay(true)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16_384, alignment: 16)
        defer { buffer.deallocate() }
        while let count = try? connection.read(into: buffer), count > 0 {
            guard (try? connection.write(UnsafeRawBufferPointer(rebasing: buffer[..<count]))) != nil else { return }
        }
    }

    /// Callback style (read, then write back from the read's completion, then read again) or
    /// future style (the same chain of futures), one buffer per connection; stops on a signal.
    static func serveClosures(futures: Bool, port: Int) throws {
        let loop = EventLoop()
        var open: [ObjectIdentifier: Callbacks.TCPConnection] = [:]
        let listener = try Callbacks.TCPListener(
            address: SocketAddress(ip: "127.0.0.1", port: port), backlog: 4096, loop: loop
        ) { result in
            guard case .success(let connection) = result else { return }
            try? connection.setNoDelay(true)
            open[ObjectIdentifier(connection)] = connection
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16_384, alignment: 16)
            let finished = {
                open[ObjectIdentifier(connection)] = nil
                connection.close()
                buffer.deallocate()
            }
            if futures {
                echoFutures(connection, buffer, finished)
            } else {
                echoCallbacks(connection, buffer, finished)
            }
        }
        announce(try listener.localAddress.port)
        let signals = stopOnSignals(loop)
        try loop.run(.untilStopped)
        listener.close()
        for connection in open.values { connection.close() }
        for watcher in signals { watcher.close() }
        try loop.run()
        try loop.close()
    }

    static func echoCallbacks(
        _ connection: Callbacks.TCPConnection, _ buffer: UnsafeMutableRawBufferPointer, _ finished: @escaping () -> Void
    ) {
        var onRead: (Result<Int, UVError>) throws -> Void = { _ in }
        var onWrite: (UVError?) throws -> Void = { _ in }
        onRead = { result in
            guard case .success(let count) = result, count > 0 else {
                onRead = { _ in }  // break the cycles
                onWrite = { _ in }
                return finished()
            }
            connection.write(UnsafeRawBufferPointer(rebasing: buffer[..<count]), onWrite)
        }
        onWrite = { error in
            if error != nil { return finished() }
            connection.read(into: buffer, onRead)
        }
        connection.read(into: buffer, onRead)
    }

    static func echoFutures(
        _ connection: Callbacks.TCPConnection, _ buffer: UnsafeMutableRawBufferPointer, _ finished: @escaping () -> Void
    ) {
        connection.read(into: buffer)
            .flatMap { (count: Int) -> Future<Bool> in
                guard count > 0 else { return connection.stream.loop.makeSucceededFuture(false) }
                return connection.write(UnsafeRawBufferPointer(rebasing: buffer[..<count])).map { true }
            }
            .whenComplete { outcome in
                if case .success(true) = outcome { echoFutures(connection, buffer, finished) } else { finished() }
            }
    }

    /// One Task per connection, straight-line async code: on the loop's executor (libuv calls
    /// made directly), or on the global executor (every libuv call hops to the loop with `post`).
    static func serveAsync(onLoop: Bool, port: Int) throws {
        let loop = EventLoop()
        let executor = LoopExecutor.of(loop)
        let listener = try Callbacks.TCPListener(
            address: SocketAddress(ip: "127.0.0.1", port: port), backlog: 4096, loop: loop
        ) { result in
            guard case .success(let connection) = result else { return }
            try? connection.setNoDelay(true)
            let shared = UncheckedBox((connection, loop))
            let serve: @Sendable () async -> Void = {
                let (connection, loop) = shared.value
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16_384, alignment: 16)
                let onBuffer = UncheckedBox(buffer)
                func onLoopThread<T: Sendable>(_ start: @escaping (@escaping (T) -> Void) -> Void) async -> T {
                    await withUnsafeContinuation { (continuation: UnsafeContinuation<T, Never>) in
                        let resume = UncheckedBox(continuation)
                        let work = UncheckedBox(start)
                        if loop.isOnLoopThread {
                            start { resume.value.resume(returning: $0) }
                        } else {
                            loop.post { work.value { resume.value.resume(returning: $0) } }
                        }
                    }
                }
                while true {
                    let count: Int = await onLoopThread { done in
                        connection.read(into: onBuffer.value) { done((try? $0.get()) ?? 0) }
                    }
                    if count == 0 { break }
                    let failed: Bool = await onLoopThread { done in
                        connection.write(UnsafeRawBufferPointer(rebasing: onBuffer.value[..<count])) { done($0 != nil) }
                    }
                    if failed { break }
                }
                let _: Bool = await onLoopThread { done in
                    connection.close()
                    done(true)
                }
                buffer.deallocate()
            }
            if onLoop { Task(executorPreference: executor, operation: serve) } else { Task(operation: serve) }
        }
        announce(try listener.localAddress.port)
        let signals = stopOnSignals(loop)
        try loop.run(.untilStopped)
        listener.close()
        for watcher in signals { watcher.close() }
        // Connections' tasks may still be suspended on the loop: it is left open (the process
        // ends next), not closed under them.
    }

    /// One OS thread per connection with blocking `read`/`write` (64 KiB stacks).
    static func serveThreads(port: Int) throws {
        let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(server, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(server, 4096) == 0 else {
            throw BenchError.tool("threads echo: bind/listen: \(String(cString: strerror(errno)))")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(server, $0, &length) }
        }
        announce(Int(UInt16(bigEndian: address.sin_port)))
        signal(SIGTERM) { _ in exit(0) }
        signal(SIGINT) { _ in exit(0) }
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        pthread_attr_setstacksize(&attributes, 64 << 10)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        while true {
            let client = accept(server, nil, nil)
            if client < 0 { continue }
            setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            var thread = pthread_t()
            let status = pthread_create(
                &thread, &attributes,
                { raw in
                    let fd = Int32(Int(bitPattern: raw))
                    var buffer = [UInt8](repeating: 0, count: 16_384)
                    while true {
                        let count = read(fd, &buffer, buffer.count)
                        if count <= 0 { break }
                        var sent = 0
                        while sent < count {
                            let written = buffer.withUnsafeBytes { write(fd, $0.baseAddress! + sent, count - sent) }
                            if written <= 0 { break }
                            sent += written
                        }
                        if sent < count { break }
                    }
                    close(fd)
                    return nil
                }, UnsafeMutableRawPointer(bitPattern: Int(client)))
            if status != 0 { close(client) }
        }
    }

    /// Watchers that stop `loop` on SIGINT or SIGTERM (close them once it has stopped).
    static func stopOnSignals(_ loop: EventLoop) -> [SignalWatcher] {
        [SIGINT, SIGTERM].map { number in
            let watcher = SignalWatcher(loop: loop)
            try? watcher.start(number) { _ in loop.stop() }
            return watcher
        }
    }

    static func announce(_ port: Int) {
        FileHandle.standardOutput.write(Data("listening on 127.0.0.1:\(port)\n".utf8))
    }

    // MARK: Driving a run

    /// Starts the server for `executor` (a child process), drives it with `spindle-echo-load`
    /// for `warmupMs` + `durationMs`, checks the load generator saw every byte right, stops the
    /// server and returns what was measured.
    package static func run(
        _ executor: String, variant: String, warmupMs: Int, durationMs: Int, tools: URL,
        countingAllocations: Bool = false, burst: Int? = nil
    ) throws -> Outcome {
        let server = try startServer(executor, tools: tools, countingAllocations: countingAllocations)
        var serverStopped = false
        defer { if !serverStopped { server.stop() } }
        let samplesPath = FileManager.default.temporaryDirectory
            .appendingPathComponent("spindle-echo-\(getpid())-\(executor).samples").path
        defer { unlink(samplesPath) }
        let loadCPUBefore = childrenCPUSeconds()
        let load = try runTool(
            tools.appendingPathComponent("spindle-echo-load"),
            [
                "--port", String(server.port), "--connections", String(try burst ?? connections(variant)),
                "--size", String(messageSize), "--warmup-ms", String(warmupMs), "--duration-ms", String(durationMs),
                "--samples", samplesPath,
            ] + (burst != nil ? ["--burst", "1"] : []))
        let loadCPU = childrenCPUSeconds() - loadCPUBefore
        let summary = load.output
        guard load.status == 0 else {
            throw BenchError.incorrect(
                "echo \(variant) on \(executor): the load generator failed: \(summary)\(load.errors)")
        }
        let fields = keyValues(summary)
        // The server's CPU time: what RUSAGE_CHILDREN gains when it is reaped (the load
        // generator was reaped already).
        let cpuBefore = childrenCPUSeconds()
        server.stop()
        serverStopped = true
        let serverCPU = childrenCPUSeconds() - cpuBefore
        // A burst's window only ends the run: it may hold no round trip.
        guard let requests = fields["requests"], let window = fields["window_ns"], let rounds = fields["rounds"],
            requests > 0 || burst != nil,
            let turns = fields["turns"], turns > 0 || burst != nil, fields["mismatches"] == 0, fields["errors"] == 0,
            let ramp = fields["ramp_ns"], let burstNs = fields["burst_ns"], let measured = fields["measured"]
        else {
            throw BenchError.incorrect("echo \(variant) on \(executor): unexpected load generator summary: \(summary)")
        }
        // A connection with no round trip in the window had its request waiting all through it,
        // a latency no sample shows.
        // (A burst's window is only long enough to end the run: its figure is the first echoes.)
        let expected = try burst ?? connections(variant)
        guard burst != nil || Int(measured) == expected else {
            throw BenchError.incorrect(
                "echo \(variant) on \(executor): \(expected - Int(measured)) of \(expected) connections had no round trip "
                    + "in the \(durationMs) ms window: the server left them waiting")
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: samplesPath))
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
        data.withUnsafeBytes { raw in
            for sample in raw.bindMemory(to: UInt64.self) { histogram.record(Swift.min(sample, 60_000_000_000)) }
        }
        guard histogram.totalCount == UInt64(requests) else {
            throw BenchError.incorrect("echo: \(histogram.totalCount) latency samples for \(Int(requests)) requests")
        }
        return Outcome(
            requestsPerSecond: requests / (window / 1e9), latency: histogram, requests: Int(requests),
            serverCPUPerRequest: serverCPU / max(rounds, 1), loadCPUPerRequest: loadCPU / max(rounds, 1),
            rounds: Int(rounds),
            serverMallocs: server.remainingOutput().split(separator: "\n").first { $0.hasPrefix("mallocs ") }
                .flatMap { Int($0.dropFirst("mallocs ".count)) },
            loadBatch: turns > 0 ? requests / turns : 0, rampSeconds: ramp / 1e9, burstSeconds: burstNs / 1e9)
    }

    static func childrenCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_CHILDREN.rawValue, &usage)
        func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    /// A running server child process and the port it listens on.
    package final class ServerProcess {
        let process: Process
        let output: FileHandle
        package let port: Int

        init(process: Process, output: FileHandle, port: Int) {
            self.process = process
            self.output = output
            self.port = port
        }

        /// What the server printed after its first line (read once it has stopped).
        package func remainingOutput() -> String {
            String(decoding: output.readDataToEndOfFile(), as: UTF8.self)
        }

        /// SIGTERM, then SIGKILL if it has not exited within five seconds.
        package func stop() {
            guard process.isRunning else { return }
            process.terminate()
            let deadline = Date().addingTimeInterval(5)
            while process.isRunning, Date() < deadline { usleep(10_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
    }

    /// Starts `executor`'s server: `spindle-echo-c` for the baseline, else `spindle-bench
    /// serve-echo` (a process of its own, apart from the load generator and this driver), or
    /// `spindle-bench-allocs serve-echo` to count the server's allocations.
    package static func startServer(_ executor: String, tools: URL, countingAllocations: Bool = false) throws
        -> ServerProcess
    {
        let process = Process()
        if countingAllocations {
            process.executableURL = tools.appendingPathComponent("spindle-bench-allocs")
            process.arguments = ["serve-echo", executor]
        } else if executor == baseline {
            process.executableURL = tools.appendingPathComponent("spindle-echo-c")
            process.arguments = ["--port", "0"]
        } else if executor == "swiftnio" || executor == "swiftnio-2threads" {
            // SwiftNIO's own echo server (ServerBootstrap on a MultiThreadedEventLoopGroup of one
            // or two event loops) from the nio peer.
            process.executableURL = tools.appendingPathComponent("spindle-bench-nio")
            process.arguments = ["serve-echo", "--threads", executor == "swiftnio" ? "1" : "2"]
        } else {
            process.executableURL = tools.appendingPathComponent("spindle-bench")
            process.arguments = ["serve-echo", "--executor", executor, "--port", "0"]
        }
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        // The first line says where it listens.
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            // One byte at a time: what follows the first line stays in the pipe for later.
            guard let byte = try out.fileHandleForReading.read(upToCount: 1), !byte.isEmpty else { break }
            line.append(byte)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard let portText = text.split(separator: ":").last?.split(whereSeparator: \.isWhitespace).first,
            let port = Int(portText)
        else {
            process.terminate()
            throw BenchError.tool(
                "the \(executor) echo server did not say where it listens (it printed \(text.debugDescription))")
        }
        return ServerProcess(process: process, output: out.fileHandleForReading, port: port)
    }
}
