import CLibUV
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
                        guard count > 0 else { throw UVError(code: UV_EOF.rawValue, operation: "echo ended early") }
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

    @Test("a connection dropped with a read outstanding still delivers it; one dropped while idle is closed, not crashed into")
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

    @Test("datagrams: send, and receive with the sender's address")
    func datagrams() throws {
        let log = Box<[String]>([])
        try withLoop { loop in
            let server = try Callbacks.DatagramSocket(address: loopback, loop: loop)
            let client = try Callbacks.DatagramSocket(address: loopback, loop: loop)
            let clientPort = try client.localAddress.port
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 1)
            server.receive(into: buffer) { result in
                let (count, sender) = try result.get()
                log.value.append("\(String(decoding: buffer[..<count], as: UTF8.self)) from client \(sender.port == clientPort)")
                buffer.deallocate()
                server.close()
                client.close()
            }
            client.send(Array("hello".utf8), to: try server.localAddress) { error in #expect(error == nil) }
        }
        #expect(log.value == ["hello from client true"])
    }
}
