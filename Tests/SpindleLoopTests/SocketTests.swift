import Glibc
import SpindleLoop
import Testing

/// SpindleLoop's own sockets, resolver and signal watcher, driven by their callbacks with no
/// layer above them.
@Suite("Sockets, resolver and signals")
struct SocketTests {
    static let loopback = try! SocketAddress(ip: "127.0.0.1", port: 0)

    @Test("a TCP connection: accept, write, read the echo back, shut down, and read end of stream")
    func tcpRoundTrip() throws {
        let log = try withLoop { loop -> [String] in
            var log: [String] = []
            let listener = TCPSocket(loop: loop)
            try listener.bind(Self.loopback)
            var server: TCPSocket?
            let serverBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 1)
            let clientBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 1)
            defer {
                serverBuffer.deallocate()
                clientBuffer.deallocate()
            }
            try listener.listen { error in
                guard error == nil, let accepted = try? listener.accept() else { return log.append("accept failed") }
                server = accepted
                listener.close()
                accepted.readTarget = serverBuffer
                accepted.setReadHandler { result in
                    switch result {
                    case .success(0):  // end of stream: the client shut down its side
                        log.append("server read end of stream")
                        accepted.close()
                    case .success(let count):
                        accepted.write(UnsafeRawBufferPointer(rebasing: serverBuffer[..<count])) { error in
                            if let error { log.append("server write: \(error)") }
                        }
                    case .failure(let error):
                        log.append("server read: \(error)")
                        accepted.close()
                    }
                }
                do { try accepted.startReading() } catch { log.append("server startReading: \(error)") }
            }
            let client = TCPSocket(loop: loop)
            let address = try listener.localAddress
            client.connect(to: address) { error in
                if let error { return log.append("connect: \(error)") }
                log.append("connected to \((try? client.peerAddress) == address)")
                client.readTarget = clientBuffer
                client.setReadHandler { result in
                    switch result {
                    case .success(0):
                        log.append("client read end of stream")
                        client.close()
                    case .success(let count):
                        log.append("client read \(String(decoding: clientBuffer[..<count], as: UTF8.self))")
                        client.shutdown { error in log.append("shutdown: \(error.map { "\($0)" } ?? "ok")") }
                    case .failure(let error):
                        log.append("client read: \(error)")
                        client.close()
                    }
                }
                do { try client.startReading() } catch { log.append("client startReading: \(error)") }
                Array("ping".utf8).withUnsafeBytes { bytes in
                    // uv_try_write copies what the kernel takes; a 4-byte write is taken whole.
                    log.append("tryWrite \((try? client.tryWrite(bytes)) ?? -1)")
                }
            }
            try loop.run()
            _ = server
            return log
        }
        #expect(
            log == [
                "connected to true", "tryWrite 4", "client read ping", "shutdown: ok", "server read end of stream",
                // Closing a socket that is reading tells its read handler, at once.
                "server read: uv_read: ECANCELED: operation canceled", "client read end of stream",
                "client read: uv_read: ECANCELED: operation canceled",
            ])
    }

    @Test("connecting where nobody listens completes with ECONNREFUSED, naming the call")
    func refused() throws {
        let message = try withLoop { loop -> String in
            // A port just freed: bound, its number read, closed.
            let probe = TCPSocket(loop: loop)
            try probe.bind(Self.loopback)
            let address = try probe.localAddress
            probe.close()
            var message = ""
            let client = TCPSocket(loop: loop)
            client.connect(to: address) { error in
                message = error.map { "\($0)" } ?? "connected"
                #expect(error == .connectionRefused)
                client.close()
            }
            try loop.run()
            return message
        }
        #expect(message == "uv_tcp_connect: ECONNREFUSED: connection refused")
    }

    @Test("a datagram arrives with its sender's address")
    func datagram() throws {
        let seen = try withLoop { loop -> String in
            let receiver = try UDPSocket(loop: loop, boundTo: Self.loopback)
            let sender = try UDPSocket(loop: loop, boundTo: Self.loopback)
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 1)
            defer { buffer.deallocate() }
            var seen = ""
            receiver.receiveTarget = buffer
            receiver.setReceiveHandler { result in
                switch result {
                case .success((let count, let from)):
                    let fromSender = from?.port == (try? sender.localAddress)?.port
                    seen = "\(String(decoding: buffer[..<count], as: UTF8.self)) from sender \(fromSender)"
                case .failure(let error):
                    // Closing the receiver below reports ECANCELED to this handler, after the datagram.
                    if seen.isEmpty { seen = "\(error)" }
                }
                receiver.close()
                sender.close()
            }
            try receiver.startReceiving()
            Array("hello".utf8).withUnsafeBytes { bytes in
                sender.send(bytes, to: try! receiver.localAddress) { error in if let error { seen = "send: \(error)" } }
            }
            try loop.run()
            return seen
        }
        #expect(seen == "hello from sender true")
    }

    @Test("the resolver finds localhost's loopback address, with the port asked for, and names a host it cannot find")
    func resolver() throws {
        let (found, missing) = try withLoop { loop -> ([SocketAddress], String) in
            var found: [SocketAddress] = []
            var missing = ""
            Resolver.resolve("localhost", port: 8_080, on: loop) { result in
                found = (try? result.get()) ?? []
            }
            Resolver.resolve("no-such-host.invalid", port: 1, on: loop) { result in
                if case .failure(let error) = result { missing = "\(error)" }
            }
            try loop.run()
            return (found, missing)
        }
        #expect(found.contains { !$0.isIPv6 && $0.ip == "127.0.0.1" && $0.port == 8_080 }, "\(found)")
        #expect(missing.hasPrefix("uv_getaddrinfo") && missing.contains(": EAI_"), "\(missing)")
    }

    @Test("a signal watcher runs its callback on the loop's thread when the process gets the signal")
    func signal() throws {
        let (received, onLoopThread) = try withLoop { loop -> (Int32, Bool) in
            var received: Int32 = 0
            var onLoopThread = false
            let watcher = SignalWatcher(loop: loop)
            try watcher.start(SIGUSR2) { [unowned watcher] signal in
                received = signal
                onLoopThread = loop.isOnLoopThread
                watcher.close()
            }
            #expect(watcher.handleDescription == "signal watcher (signal \(SIGUSR2))")
            // Raised on this thread, where start() unblocked it: libuv's handler forwards it to
            // the loop, which runs the callback on its next turn.
            raise(SIGUSR2)
            try loop.run()
            return (received, onLoopThread)
        }
        #expect(received == SIGUSR2)
        #expect(onLoopThread)
    }
}
