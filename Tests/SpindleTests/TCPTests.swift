import Glibc
import Spindle
import SpindleLoop
import Testing

@Suite("TCP on fibers")
struct TCPTests {
    static let loopback = try! SocketAddress(ip: "127.0.0.1", port: 0)

    @Test("a fiber echo server and client exchange 1,000 messages byte for byte")
    func echo() throws {
        let (echoed, serverSawEOF) = try withLoop { loop -> (Bool, Bool) in
            let listener = try TCPListener(address: Self.loopback, loop: loop)
            let address = try listener.localAddress
            var serverSawEOF = false
            loop.spawn(name: "server") {
                let connection = try listener.accept()
                var buffer = [UInt8](repeating: 0, count: 4096)
                while true {
                    let n = try connection.read(into: &buffer)
                    if n == 0 { break }
                    try connection.write(Array(buffer[0..<n]))
                }
                serverSawEOF = true
                connection.close()
                listener.close()
            }
            let client = loop.spawn(name: "client") { () -> Bool in
                let connection = try TCPConnection.connect(to: address)
                try connection.setNoDelay(true)
                var ok = true
                var reply = [UInt8](repeating: 0, count: 64)
                for i in 0..<1_000 {
                    let message = (0..<64).map { UInt8(truncatingIfNeeded: i &+ $0) }
                    try connection.write(message)
                    var got = 0
                    while got < 64 {
                        let n = try reply.withUnsafeMutableBytes {
                            try connection.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[got...]))
                        }
                        if n == 0 { break }
                        got += n
                    }
                    ok = ok && got == 64 && reply == message
                }
                try connection.shutdown()
                var rest = [UInt8](repeating: 0, count: 16)
                let tail = try connection.read(into: &rest)
                ok = ok && tail == 0
                connection.close()
                return ok
            }
            try loop.run()
            return (try client.join(), serverSawEOF)
        }
        #expect(echoed)
        #expect(serverSawEOF)
    }

    @Test("a refused connection is a thrown UVError that names itself")
    func refused() throws {
        let description = try withLoop { loop -> String in
            let listener = try TCPListener(address: Self.loopback, loop: loop)
            let address = try listener.localAddress
            listener.close()
            let attempt = loop.spawn { () -> String in
                do {
                    _ = try TCPConnection.connect(to: address)
                    return "connected"
                } catch let error as UVError {
                    #expect(error == .connectionRefused)
                    return error.description
                }
            }
            try loop.run()
            return try attempt.join()
        }
        #expect(description == "uv_tcp_connect: ECONNREFUSED: connection refused")
    }

    @Test("connections waiting together are all accepted in one loop turn, and those never taken are closed")
    func acceptsABurstAtOnce() throws {
        let clients = 40
        let (turns, leftOverClosed) = try withLoop { loop -> (UInt64, Bool) in
            let listener = try TCPListener(address: Self.loopback, loop: loop)
            let port = try listener.localAddress.port
            // Every client connects (the kernel completes the handshakes) before the loop runs.
            let descriptors = try (0..<clients + 1).map { _ in try ServiceProcess.connect(port: port) }
            defer { for fd in descriptors { Glibc.close(fd) } }
            var turns: UInt64 = 0
            loop.spawnDetached {
                var connections: [TCPConnection] = []
                let first = try! listener.accept()
                let before = loop.scheduler.counters.loopTurns
                for _ in 1..<clients { connections.append(try! listener.accept()) }
                turns = loop.scheduler.counters.loopTurns - before
                first.close()
                for connection in connections { connection.close() }
                // One connection was accepted and never taken: closing the listener closes it.
                listener.close()
            }
            try loop.run()
            // The last client's connection was closed by the server: its read sees end of stream.
            var byte: UInt8 = 0
            let last = descriptors[clients]
            return (turns, Glibc.read(last, &byte, 1) == 0)
        }
        // Accepted one a turn (the fiber taking each before libuv polled the listener again),
        // the 39 took 39 turns or more.
        #expect(turns <= 1, "\(clients) waiting connections took \(turns) loop turns to accept")
        #expect(leftOverClosed)
    }

    @Test("binding a port in use says EADDRINUSE")
    func addressInUse() throws {
        try withLoop { loop in
            let first = try TCPListener(address: Self.loopback, loop: loop)
            let taken = try first.localAddress
            let error = #expect(throws: UVError.self) { _ = try TCPListener(address: taken, loop: loop) }
            #expect(error == .addressInUse)
            #expect(error?.description.contains("EADDRINUSE: address already in use") == true)
            first.close()
            try loop.run()
        }
    }

    @Test("with reusePort two listeners share a port; without it the second is refused")
    func reusePort() throws {
        try withLoop { loop in
            let first = try TCPListener(address: Self.loopback, reusePort: true, loop: loop)
            let port = try first.localAddress.port
            let shared = try SocketAddress(ip: "127.0.0.1", port: port)
            let second = try TCPListener(address: shared, reusePort: true, loop: loop)
            #expect(try second.localAddress.port == port)
            #expect(throws: UVError.self) { _ = try TCPListener(address: shared, loop: loop) }
            first.close()
            second.close()
            try loop.run()
        }
    }

    @Test("closing a connection while a fiber reads it wakes the reader with an error")
    func closeWhileReading() throws {
        let outcome = try withLoop { loop -> String in
            let listener = try TCPListener(address: Self.loopback, loop: loop)
            let address = try listener.localAddress
            var serverSide: TCPConnection?
            loop.spawn {
                serverSide = try listener.accept()
                listener.close()
            }
            let reader = loop.spawn { () -> String in
                let connection = try TCPConnection.connect(to: address)
                Fiber.spawn {
                    try Fiber.sleep(for: .milliseconds(2))
                    connection.close()
                }
                var buffer = [UInt8](repeating: 0, count: 16)
                defer { serverSide?.close() }
                do {
                    _ = try connection.read(into: &buffer)
                    return "read"
                } catch let error as UVError {
                    return error.name
                }
            }
            try loop.run()
            return try reader.join()
        }
        #expect(outcome == "ECANCELED")
    }

    @Test("a workload full of failures leaks no file descriptor")
    func noFdLeaks() async {
        // In a child process: other tests open and close sockets in parallel in this one.
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            // Socket descriptors. (Pipes, epoll and eventfd descriptors are left out: the test
            // harness and the Dispatch runtime open some of their own in this process meanwhile.)
            func openFds() -> Int {
                guard let dir = opendir("/proc/self/fd") else { return -1 }
                defer { closedir(dir) }
                var count = 0
                var target = [CChar](repeating: 0, count: 256)
                while let entry = readdir(dir) {
                    let name = withUnsafeBytes(of: entry.pointee.d_name) {
                        String(cString: $0.baseAddress!.assumingMemoryBound(to: CChar.self))
                    }
                    let length = readlink("/proc/self/fd/\(name)", &target, target.count - 1)
                    guard length > 0 else { continue }
                    let link = String(decoding: target[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                    if link.hasPrefix("socket:") { count += 1 }
                }
                return count
            }
            let loopback = try! SocketAddress(ip: "127.0.0.1", port: 0)
            // libuv opens a process-wide signal pipe with the first loop; count after it.
            try! LoopThread.withLoop { _ in }
            let before = openFds()
            try! LoopThread.withLoop { loop in
                for _ in 0..<20 {
                    let listener = try TCPListener(address: loopback, loop: loop)
                    let address = try listener.localAddress
                    _ = try? TCPListener(address: address, loop: loop)  // EADDRINUSE
                    loop.spawn {
                        let server = try listener.accept()
                        server.close()
                        listener.close()
                    }
                    loop.spawn {
                        let client = try TCPConnection.connect(to: address)
                        var buffer = [UInt8](repeating: 0, count: 8)
                        _ = try? client.read(into: &buffer)  // the server closed: end of stream or reset
                        client.close()
                        _ = try? TCPConnection.connect(to: address)  // refused: the listener is gone
                    }
                    // The same failures on Unix-domain sockets.
                    let path = "/tmp/spindle-fdleak-\(getpid()).sock"
                    let pipeListener = try PipeListener(path: path, replacingStale: true, loop: loop)
                    _ = try? PipeListener(path: path, loop: loop)  // EADDRINUSE
                    loop.spawn {
                        let server = try pipeListener.accept()
                        server.close()
                        pipeListener.close()
                    }
                    loop.spawn {
                        let client = try PipeConnection.connect(to: path)
                        var buffer = [UInt8](repeating: 0, count: 8)
                        _ = try? client.read(into: &buffer)
                        client.close()
                        _ = try? PipeConnection.connect(to: path)  // ENOENT: the listener removed its file
                    }
                    try loop.run()
                }
                try loop.run()
            }
            let after = openFds()
            // The exit status says by how much the count moved, if it did.
            exit(after == before ? 0 : Int32(100 + after - before))
        }
        _ = result
    }
}

@Suite("Name resolution")
struct ResolutionTests {
    @Test("localhost resolves to a loopback address and connect(host:port:) reaches a listener")
    func localhost() throws {
        let (addresses, greeting) = try withLoop { loop -> ([SocketAddress], String) in
            let listener = try TCPListener(address: SocketAddress(ip: "127.0.0.1", port: 0), loop: loop)
            let port = try listener.localAddress.port
            loop.spawn {
                let connection = try listener.accept()
                try connection.write("hello")
                connection.close()
                listener.close()
            }
            let client = loop.spawn { () -> ([SocketAddress], String) in
                let addresses = try Fiber.resolve("localhost", port: port)
                let connection = try TCPConnection.connect(host: "localhost", port: port)
                var buffer = [UInt8](repeating: 0, count: 16)
                let n = try connection.read(into: &buffer)
                connection.close()
                return (addresses, String(decoding: buffer[0..<n], as: UTF8.self))
            }
            try loop.run()
            return try client.join()
        }
        #expect(addresses.contains { $0.ip == "127.0.0.1" || $0.ip == "::1" })
        #expect(addresses.allSatisfy { $0.port > 0 })
        #expect(greeting == "hello")
    }

    @Test("an unknown host is a thrown error that names itself")
    func unknownHost() throws {
        let message = try withLoop { loop -> String in
            let attempt = loop.spawn { () -> String in
                do {
                    _ = try Fiber.resolve("no-such-host.invalid", port: 80)
                    return "resolved"
                } catch let error as UVError {
                    return error.description
                }
            }
            try loop.run()
            return try attempt.join()
        }
        #expect(message.hasPrefix("uv_getaddrinfo: EAI_"))
    }
}
