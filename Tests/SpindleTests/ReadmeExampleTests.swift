import Glibc
import Spindle
import SpindleLoop
import Testing

/// The README's ten-line example, run as written (with `print` captured).
@Suite("README example")
struct ReadmeExampleTests {
    @Test("the ten-line fiber example runs and prints the worker's answer")
    func tenLines() throws {
        let printed = try LoopThread.run { () -> [String] in
            var printed: [String] = []
            func print(_ items: Any...) { printed.append(items.map { "\($0)" }.joined(separator: " ")) }

            let loop = EventLoop()
            let worker = loop.spawn(name: "worker") { () -> Int in
                try Fiber.sleep(for: .milliseconds(10))  // parks the fiber; the loop blocks in epoll
                return 42
            }
            loop.spawn(name: "main") { print("worker says", try worker.join()) }
            try loop.run()  // returns when no work is left; throws LoopError.deadlock if fibers are stuck
            try loop.close()  // refuses, naming them, while handles or suspended fibers remain
            return printed
        }
        #expect(printed == ["worker says 42"])
    }
}

/// The README's multi-loop server, run as written (port 0 instead of 7007, `print` captured),
/// driven by a client, then shut down.
@Suite("README multi-loop example")
struct ReadmeGroupExampleTests {
    @Test("the multi-loop echo server answers on every loop and counts hits on the first")
    func multiLoopServer() throws {
        let printed = Locked<[String]>([])
        @Sendable func print(_ items: Any...) {
            printed.withLock { $0.append(items.map { "\($0)" }.joined(separator: " ")) }
        }
        let port = 0

        let group = LoopGroup()  // one loop per CPU, each on a thread of its own
        let counter = group.loops[0]  // the loop that owns `hits`: only its fibers touch it
        nonisolated(unsafe) var hits = 0
        let service = try group.serveTCP(on: SocketAddress(ip: "127.0.0.1", port: port)) { connection in
            // A fiber of the loop the connection landed on: straight-line reads and writes.
            var buffer = [UInt8](repeating: 0, count: 4096)
            while let count = try? connection.read(into: &buffer), count > 0 {
                let total = try? counter.call {
                    hits += 1; return hits
                }  // parks this fiber only
                print("hit", total ?? 0)
                _ = try? buffer.withUnsafeBytes { try connection.write(UnsafeRawBufferPointer(rebasing: $0[..<count])) }
            }
        }
        print("echo on", service.address, "with", group.loops.count, "loop(s)")
        // ... until the service is told to stop (SIGTERM: see SpindleServiceLifecycle), then:

        let clients = try (0..<8).map { _ in try ServiceProcess.connect(port: service.address.port) }
        for fd in clients {
            var message: [UInt8] = Array("ping".utf8)
            #expect(write(fd, &message, 4) == 4)
            var reply = [UInt8](repeating: 0, count: 4)
            #expect(recv(fd, &reply, 4, Int32(MSG_WAITALL)) == 4)
            #expect(reply == message)
        }
        try group.shutdown(within: .seconds(10))  // cancels every fiber, closes every socket
        for fd in clients { close(fd) }
        let lines = printed.withLock { $0 }
        #expect(lines.first == "echo on \(service.address) with \(group.loops.count) loop(s)")
        #expect(Set(lines.dropFirst()) == Set((1...8).map { "hit \($0)" }))
        #expect(service.connectionsPerLoop.reduce(0, +) == 8)
    }
}
