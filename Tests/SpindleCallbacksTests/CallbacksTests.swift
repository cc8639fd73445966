import Glibc
import SpindleCallbacks
import SpindleTestSupport
import Testing

func withLoop<T>(_ body: @escaping (EventLoop) throws -> T) throws -> T {
    try withRunningLoop("callbacks-test", body)
}

let loopback = try! SocketAddress(ip: "127.0.0.1", port: 0)

/// An echo server in callback style: read, write back, read again.
func echo(_ connection: Callbacks.StreamConnection, buffer: UnsafeMutableRawBufferPointer) {
    connection.read(into: buffer) { result in
        let count = try result.get()
        if count == 0 {
            connection.close()
            buffer.deallocate()
            return
        }
        connection.write(UnsafeRawBufferPointer(rebasing: buffer[..<count])) { error in
            if let error { throw error }
            echo(connection, buffer: buffer)
        }
    }
}

@Suite("Callbacks")
struct CallbacksTests {
    @Test("a callback echo server and client exchange 1,000 messages byte for byte")
    func tcpEcho() throws {
        let outcome = Box<[String]>([])
        try withLoop { loop in
            var listener: Callbacks.TCPListener!
            listener = try Callbacks.TCPListener(address: loopback, loop: loop) { result in
                let connection = try result.get()
                echo(connection, buffer: .allocate(byteCount: 4096, alignment: 1))
                listener.close()
            }
            Callbacks.TCPConnection.connect(to: try listener.localAddress, loop: loop) { result in
                let client = try result.get()
                try client.setNoDelay(true)
                let reply = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 1)
                var round = 0, got = 0, ok = true
                func message(_ round: Int) -> [UInt8] { (0..<64).map { UInt8(truncatingIfNeeded: round &* 7 &+ $0) } }
                func readRest() {
                    client.read(into: UnsafeMutableRawBufferPointer(rebasing: reply[got...])) { result in
                        let count = try result.get()
                        guard count > 0 else {
                            throw UVError(code: UVError.endOfFile.code, operation: "echo ended early")
                        }
                        got += count
                        if got < 64 { return readRest() }
                        ok = ok && Array(reply) == message(round)
                        round += 1
                        if round == 1_000 {
                            outcome.value = ["rounds \(round)", "bytes ok \(ok)"]
                            reply.deallocate()
                            client.close()
                            return
                        }
                        sendRound()
                    }
                }
                func sendRound() {
                    got = 0
                    client.write(message(round)) { error in if let error { throw error } }
                    readRest()
                }
                sendRound()
            }
        }
        #expect(outcome.value == ["rounds 1000", "bytes ok true"])
    }

    @Test("errors arrive as UVError in the completion: a refused connect, a read on a closed connection")
    func errors() throws {
        let seen = Box<[String]>([])
        try withLoop { loop in
            var port = 0
            let listener = try Callbacks.TCPListener(address: loopback, loop: loop) { _ in }
            port = try listener.localAddress.port
            listener.close()
            Callbacks.TCPConnection.connect(to: try SocketAddress(ip: "127.0.0.1", port: port), loop: loop) { result in
                if case .failure(let error) = result { seen.value.append(error.description) }
            }
            var fds: [Int32] = [0, 0]
            _ = socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds)
            let connection = try Callbacks.PipeConnection(adopting: fds[0], loop: loop)
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 1)
            connection.read(into: buffer) { result in
                if case .failure(let error) = result { seen.value.append("pending read: \(error.name)") }
                buffer.deallocate()
            }
            connection.close()
            connection.read(into: buffer) { result in
                if case .failure(let error) = result { seen.value.append("read after close: \(error.name)") }
            }
            Glibc.close(fds[1])
        }
        #expect(seen.value.contains("uv_tcp_connect: ECONNREFUSED: connection refused"))
        #expect(seen.value.contains("pending read: ECANCELED"))
        #expect(seen.value.contains("read after close: ECANCELED"))
    }

    @Test("a completion that throws reaches the uncaught-error handler and the loop carries on")
    func throwingCallback() throws {
        struct Oops: Error {}
        let reported = Box<[String]>([])
        let previous = Callbacks.uncaughtErrorHandler
        Callbacks.uncaughtErrorHandler = { error, operation in reported.value.append("\(operation): \(error is Oops)") }
        defer { Callbacks.uncaughtErrorHandler = previous }
        let afterwards = Box(false)
        try withLoop { loop in
            var fds: [Int32] = [0, 0]
            _ = socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds)
            let a = try Callbacks.PipeConnection(adopting: fds[0], loop: loop)
            let b = try Callbacks.PipeConnection(adopting: fds[1], loop: loop)
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 1)
            a.write([1, 2, 3]) { _ in throw Oops() }
            b.read(into: buffer) { _ in
                // The loop and the connection still work after a throwing callback.
                a.write([4]) { _ in }
                b.read(into: buffer) { result in
                    afterwards.value = (try? result.get()) == 1 && buffer[0] == 4
                    buffer.deallocate()
                    a.close()
                    b.close()
                }
                throw Oops()
            }
        }
        #expect(reported.value == ["write: true", "read: true"])
        #expect(afterwards.value)
    }

    @Test(
        "a connection dropped with a read outstanding still delivers it; one dropped while idle is closed, not crashed into"
    )
    func droppedEarly() throws {
        let got = Box<Int?>(nil)
        let peerSaw = Box<Int?>(nil)
        try withLoop { loop in
            var fds: [Int32] = [0, 0]
            _ = socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds)
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 1)
            do {
                let reader = try Callbacks.PipeConnection(adopting: fds[0], loop: loop)
                reader.read(into: buffer) { result in got.value = try result.get() }
            }  // the only reference is gone; the read is outstanding
            let writer = try Callbacks.PipeConnection(adopting: fds[1], loop: loop)
            _ = loop.schedule(after: .milliseconds(2)) {
                writer.write([9, 9]) { _ in }
                _ = loop.schedule(after: .milliseconds(2)) {
                    // The reader was released after its read: closed, so the writer sees EOF.
                    let probe = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 1)
                    writer.read(into: probe) { result in
                        peerSaw.value = try? result.get()
                        probe.deallocate()
                        buffer.deallocate()
                        writer.close()
                    }
                }
            }
        }
        #expect(got.value == 2)
        #expect(peerSaw.value == 0)
    }

    @Test("a 4 MiB write that must queue completes later; the reader gets every byte")
    func queuedWrite() throws {
        let (completedBeforeReturn, received, intact) = try withLoop { loop -> (Box<Bool>, Box<Int>, Box<Bool>) in
            let message = (0..<(4 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ ($0 >> 12)) }
            var fds: [Int32] = [0, 0]
            _ = socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds)
            let a = try Callbacks.PipeConnection(adopting: fds[0], loop: loop)
            let b = try Callbacks.PipeConnection(adopting: fds[1], loop: loop)
            let completed = Box(false), received = Box(0), intact = Box(true)
            a.write(message) { error in
                #expect(error == nil)
                completed.value = true
                a.close()
            }
            let completedBeforeReturn = Box(completed.value)
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65_536, alignment: 1)
            func next() {
                b.read(into: buffer) { result in
                    let count = try result.get()
                    if count == 0 {
                        buffer.deallocate()
                        b.close()
                        return
                    }
                    for i in 0..<count where buffer[i] != message[received.value + i] { intact.value = false }
                    received.value += count
                    next()
                }
            }
            next()
            return (completedBeforeReturn, received, intact)
        }
        #expect(!completedBeforeReturn.value)
        #expect(received.value == 4 << 20)
        #expect(intact.value)
    }

    @Test("datagrams: send, and receive with the sender's address; a receive outstanding at close is ECANCELED")
    func datagrams() throws {
        let log = Box<[String]>([])
        try withLoop { loop in
            let server = try Callbacks.DatagramSocket(address: loopback, loop: loop)
            let client = try Callbacks.DatagramSocket(address: loopback, loop: loop)
            let clientPort = try client.localAddress.port
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 1)
            server.receive(into: buffer) { result in
                let (count, sender) = try result.get()
                log.value.append(
                    "\(String(decoding: buffer[..<count], as: UTF8.self)) from client \(sender.port == clientPort)")
                buffer.deallocate()
                server.close()
                client.close()
            }
            client.send(Array("hello".utf8), to: try server.localAddress) { error in #expect(error == nil) }
            // A receive still outstanding when its socket closes completes, with ECANCELED.
            let idle = try Callbacks.DatagramSocket(address: loopback, loop: loop)
            let idleBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 1)
            idle.receive(into: idleBuffer) { result in
                if case .failure(let error) = result { log.value.append("closed while receiving: \(error.name)") }
                idleBuffer.deallocate()
            }
            loop.deferToNextTurn { idle.close() }
        }
        #expect(log.value.sorted() == ["closed while receiving: ECANCELED", "hello from client true"])
    }

    @Test("a Unix-domain socket: a callback server echoes a client's message; connecting to a missing path is ENOENT")
    func pipes() throws {
        let log = Box<[String]>([])
        let path = "/tmp/spindle-callbacks-\(getpid()).sock"
        unlink(path)
        try withLoop { loop in
            var listener: Callbacks.PipeListener!
            listener = try Callbacks.PipeListener(path: path, loop: loop) { result in
                echo(try result.get(), buffer: .allocate(byteCount: 64, alignment: 1))
                listener.close()
            }
            Callbacks.PipeConnection.connect(to: path, loop: loop) { result in
                let client = try result.get()
                let reply = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 1)
                client.write(Array("over a pipe".utf8)) { error in if let error { throw error } }
                client.read(into: reply) { result in
                    let count = try result.get()
                    log.value.append("echoed: \(String(decoding: reply[..<count], as: UTF8.self))")
                    reply.deallocate()
                    client.close()
                }
            }
            Callbacks.PipeConnection.connect(to: path + ".missing", loop: loop) { result in
                if case .failure(let error) = result { log.value.append("missing: \(error.name)") }
            }
        }
        #expect(log.value.sorted() == ["echoed: over a pipe", "missing: ENOENT"])
        #expect(access(path, F_OK) != 0, "closing the listener removes its socket file")
    }

    @Test("files through completions: write, read back, stat, fsync and close; opening a missing file is ENOENT")
    func files() throws {
        let log = Box<[String]>([])
        let path = "/tmp/spindle-callbacks-\(getpid()).txt"
        defer { unlink(path) }
        try withLoop { loop in
            let text = UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 1)
            text.copyBytes(from: "sixteen bytes ok".utf8)
            let readBack = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 1)
            FileSystem.open(path, flags: O_WRONLY | O_CREAT | O_TRUNC, on: loop) { result in
                guard case .success(let fd) = result else { return log.value.append("open for writing: \(result)") }
                FileSystem.write(fd, UnsafeRawBufferPointer(text), on: loop) { written in
                    log.value.append("wrote \((try? written.get()) ?? -1)")
                    FileSystem.fsync(fd, on: loop) { synced in
                        log.value.append("fsync \((try? synced.get()) != nil)")
                        FileSystem.close(fd, on: loop) { _ in
                            FileSystem.stat(path, on: loop) { status in
                                guard case .success(let status) = status else {
                                    return log.value.append("stat: \(status)")
                                }
                                log.value.append("stat \(status.size) regular \(status.isRegularFile)")
                                FileSystem.open(path, flags: O_RDONLY, on: loop) { result in
                                    guard case .success(let fd) = result else {
                                        return log.value.append("open for reading: \(result)")
                                    }
                                    // At offset 8: the second half.
                                    FileSystem.read(fd, into: readBack, at: 8, on: loop) { count in
                                        let count = (try? count.get()) ?? 0
                                        log.value.append("read \(String(decoding: readBack[..<count], as: UTF8.self))")
                                        FileSystem.close(fd, on: loop) { _ in
                                            text.deallocate()
                                            readBack.deallocate()
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            FileSystem.open(path + ".missing", flags: O_RDONLY, on: loop) { result in
                if case .failure(let error) = result { log.value.append("missing: \(error.name)") }
            }
        }
        #expect(
            log.value.sorted() == [
                "fsync true", "missing: ENOENT", "read bytes ok", "stat 16 regular true", "wrote 16",
            ])
    }

    @Test("name resolution through a completion: localhost is a loopback address; an unknown host names its error")
    func resolution() throws {
        let log = Box<[String]>([])
        try withLoop { loop in
            Resolver.resolve("localhost", port: 8080, on: loop) { result in
                let addresses = (try? result.get()) ?? []
                let loopback = addresses.contains { $0.ip == "127.0.0.1" || $0.ip == "::1" }
                log.value.append("localhost: loopback \(loopback), port \(addresses.allSatisfy { $0.port == 8080 })")
            }
            Resolver.resolve("no-such-host.invalid", port: 80, on: loop) { result in
                if case .failure(let error) = result { log.value.append("unknown: \(error.name.hasPrefix("EAI_"))") }
            }
        }
        #expect(log.value.sorted() == ["localhost: loopback true, port true", "unknown: true"])
    }
}
