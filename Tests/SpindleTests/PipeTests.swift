import Glibc
import Spindle
import SpindleLoop
import Testing

/// A fresh socket path in the temporary directory (short: `sun_path` holds 107 bytes).
func temporarySocketPath(_ tag: String) -> String {
    "/tmp/spindle-\(getpid())-\(tag)-\(UInt32.random(in: 0...UInt32.max)).sock"
}

/// A message whose bytes depend on their position and `seed`, so a lost, reordered or
/// duplicated chunk shows.
func patterned(_ count: Int, seed: Int) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: ($0 &* 31) &+ seed &+ ($0 >> 8)) }
}

@Suite("Unix-domain sockets on fibers")
struct PipeTests {
    @Test("a Unix-domain echo of 4 MiB (writes that must queue) comes back byte for byte, and close removes the file")
    func echoLarge() throws {
        let path = temporarySocketPath("echo")
        let (echoed, peer, fileGone) = try withLoop { loop -> (Bool, String, Bool) in
            let listener = try PipeListener(path: path, loop: loop)
            loop.spawn(name: "server") {
                let connection = try listener.accept()
                var buffer = [UInt8](repeating: 0, count: 65_536)
                while true {
                    let n = try connection.read(into: &buffer)
                    if n == 0 { break }
                    try buffer.withUnsafeBytes { try connection.write(UnsafeRawBufferPointer(rebasing: $0[..<n])) }
                }
                connection.close()
                listener.close()
            }
            let client = loop.spawn(name: "client") { () -> (Bool, String) in
                let connection = try PipeConnection.connect(to: path)
                let message = patterned(4 << 20, seed: 7)
                // The writer and the reader are separate fibers: a 4 MiB write cannot finish
                // before someone reads the echo.
                let writer = Fiber.spawn {
                    try connection.write(message)
                    try connection.shutdown()
                }
                var received = [UInt8](repeating: 0, count: message.count + 1)
                let count = try received.withUnsafeMutableBytes { try connection.read(exactly: $0) }
                try writer.join()
                let peer = try connection.peerPath
                connection.close()
                return (count == message.count && received[..<count].elementsEqual(message), peer)
            }
            try loop.run()
            let (echoed, peer) = try client.join()
            return (echoed, peer, access(path, F_OK) != 0)
        }
        #expect(echoed)
        #expect(peer == path)
        #expect(fileGone)
    }

    @Test("connecting to a missing socket says ENOENT; a path over 107 bytes says EINVAL and why")
    func connectErrors() throws {
        let (missing, tooLong) = try withLoop { loop -> (String, String) in
            let attempt = loop.spawn { () -> (String, String) in
                var missing = "connected", tooLong = "connected"
                do { _ = try PipeConnection.connect(to: temporarySocketPath("missing")) } catch { missing = "\(error)" }
                do {
                    _ = try PipeConnection.connect(to: "/tmp/" + String(repeating: "x", count: 120))
                } catch { tooLong = "\(error)" }
                return (missing, tooLong)
            }
            try loop.run()
            return try attempt.join()
        }
        #expect(missing == "uv_pipe_connect: ENOENT: no such file or directory")
        #expect(tooLong.hasPrefix("uv_pipe_connect: a socket path must be 1 to 107 bytes (got 125): EINVAL"))
    }

    @Test("binding over an existing socket file says EADDRINUSE unless replacingStale; a regular file is never removed")
    func staleSocket() throws {
        let path = temporarySocketPath("stale")
        let regular = temporarySocketPath("regular")
        defer { unlink(path); unlink(regular) }
        Glibc.close(open(regular, O_CREAT | O_WRONLY, 0o600))
        try withLoop { loop in
            // A crashed server leaves its socket file behind (a closed PipeSocket would remove
            // it): bind a raw socket and close it without unlinking.
            let raw = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) {
                _ = strcpy($0.baseAddress!.assumingMemoryBound(to: CChar.self), path)
            }
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(raw, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            #expect(bound == 0)
            Glibc.close(raw)
            #expect(access(path, F_OK) == 0)
            #expect { _ = try PipeListener(path: path, loop: loop) } throws: { ($0 as? UVError)?.name == "EADDRINUSE" }
            let listener = try PipeListener(path: path, replacingStale: true, loop: loop)
            #expect { _ = try PipeListener(path: regular, replacingStale: true, loop: loop) } throws: {
                "\($0)".contains("exists and is not a socket")
            }
            #expect(access(regular, F_OK) == 0)
            listener.close()
            try loop.run()
        }
        #expect(access(path, F_OK) != 0)
    }

    @Test(
        "a socketpair end adopted as a PipeConnection reads and writes; a reader of a closed pair end sees end of stream"
    )
    func socketpairAdopted() throws {
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0)
        let (reply, eof) = try withLoop { loop -> (String, Int) in
            let task = loop.spawn { () -> (String, Int) in
                let a = try PipeConnection(adopting: fds[0])
                let b = try PipeConnection(adopting: fds[1])
                try a.write("ping")
                var buffer = [UInt8](repeating: 0, count: 16)
                let n = try b.read(into: &buffer)
                a.close()
                let eof = try b.read(into: &buffer)
                b.close()
                return (String(decoding: buffer[..<n], as: UTF8.self), eof)
            }
            try loop.run()
            return try task.join()
        }
        #expect(reply == "ping")
        #expect(eof == 0)
    }

    @Test(
        "a connection dropped without close() after a read is closed (the peer sees end of stream), not crashed into by later data"
    )
    func droppedWithoutClose() throws {
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0)
        let peerSaw = try withLoop { loop -> Int in
            let task = loop.spawn { () -> Int in
                let peer = try PipeConnection(adopting: fds[1])
                do {
                    // Reading stays on after this read; then the last reference goes.
                    let reader = try PipeConnection(adopting: fds[0])
                    try peer.write("a")
                    var buffer = [UInt8](repeating: 0, count: 4)
                    _ = try reader.read(into: &buffer)
                }
                try? peer.write("more data for a reader that is gone")
                var buffer = [UInt8](repeating: 0, count: 64)
                let count = try peer.read(into: &buffer)
                peer.close()
                return count
            }
            try loop.run()
            return try task.join()
        }
        #expect(peerSaw == 0)
    }

    @Test("a fiber woken by a read runs inside the read's completion, not a loop turn later; the bytes arrive in order")
    func readerRunsInCompletion() throws {
        let rounds = 200
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0)
        let (received, inCompletion, wakes) = try withLoop { loop -> ([UInt8], UInt64, UInt64) in
            let a = try PipeConnection(adopting: fds[0], loop: loop)
            let b = try PipeConnection(adopting: fds[1], loop: loop)
            var received: [UInt8] = []
            loop.spawn(name: "ping") {
                var byte: [UInt8] = [0]
                for round in 0..<rounds {
                    try a.write([UInt8(truncatingIfNeeded: round)])
                    _ = try a.read(into: &byte)
                }
            }
            loop.spawn(name: "pong") {
                var byte: [UInt8] = [0]
                for _ in 0..<rounds {
                    _ = try b.read(into: &byte)
                    received.append(byte[0])
                    try b.write(byte)
                }
            }
            let before = loop.scheduler.counters
            try loop.run()
            let after = loop.scheduler.counters
            a.close()
            b.close()
            return (received, after.completionResumes - before.completionResumes, after.wakes - before.wakes)
        }
        #expect(received == (0..<rounds).map { UInt8(truncatingIfNeeded: $0) })
        // Every read parks and is woken by its completion, 2 per round, and each of those
        // fibers ran from inside the completion (queued, it would have waited for the drain).
        #expect(wakes == UInt64(2 * rounds))
        #expect(inCompletion == wakes)
    }

    @Test(
        "a connection still reading after its reader is done does not keep run() going; later data waits for the next read"
    )
    func idleReadingDoesNotHoldTheLoop() throws {
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0)
        let (first, second) = try withLoop { loop -> (String, String) in
            let reader = try PipeConnection(adopting: fds[0], loop: loop)
            let writer = try PipeConnection(adopting: fds[1], loop: loop)
            var first = "", second = ""
            loop.spawn {
                try writer.write("one")
                var buffer = [UInt8](repeating: 0, count: 3)
                first = String(decoding: buffer[..<(try reader.read(into: &buffer))], as: UTF8.self)
                try writer.write("two")  // nobody reads it in this run
            }
            try loop.run()  // returns although the reader's socket still reads
            loop.spawn {
                var buffer = [UInt8](repeating: 0, count: 8)
                second = String(decoding: buffer[..<(try reader.read(into: &buffer))], as: UTF8.self)
                reader.close()
                writer.close()
            }
            try loop.run()
            return (first, second)
        }
        #expect(first == "one")
        #expect(second == "two")
    }

    @Test("closing a stream while a fiber's write is queued throws ECANCELED in the writer")
    func closeDuringQueuedWrite() throws {
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0)
        defer { Glibc.close(fds[1]) }
        let outcome = try withLoop { loop -> String in
            let task = loop.spawn { () -> String in
                let connection = try PipeConnection(adopting: fds[0])
                // Nobody reads the other end: 8 MiB cannot all go into the socket buffer.
                Fiber.spawn {
                    try Fiber.sleep(for: .milliseconds(5))
                    connection.close()
                }
                do {
                    try connection.write(patterned(8 << 20, seed: 1))
                    return "written"
                } catch let error as UVError {
                    return error.name
                }
            }
            try loop.run()
            return try task.join()
        }
        #expect(outcome == "ECANCELED")
    }
}
