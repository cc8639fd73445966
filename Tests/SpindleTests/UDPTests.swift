import Spindle
import SpindleLoop
import Testing

@Suite("UDP on fibers")
struct UDPTests {
    @Test("datagrams arrive whole, with their sender, in a ping-pong between two sockets")
    func pingPong() throws {
        let log = try withLoop { loop -> [String] in
            let any = try SocketAddress(ip: "127.0.0.1", port: 0)
            let server = try DatagramSocket(address: any, loop: loop)
            let client = try DatagramSocket(address: any, loop: loop)
            let serverAddress = try server.localAddress
            let clientAddress = try client.localAddress
            var log: [String] = []
            loop.spawn(name: "server") {
                var buffer = [UInt8](repeating: 0, count: 1500)
                for _ in 0..<3 {
                    let (count, sender) = try server.receive(into: &buffer)
                    log.append("server got \(String(decoding: buffer[..<count], as: UTF8.self)) from port \(sender.port == clientAddress.port ? "client" : "?")")
                    try server.send(Array(buffer[..<count].reversed()), to: sender)
                }
                server.close()
            }
            loop.spawn(name: "client") {
                var buffer = [UInt8](repeating: 0, count: 1500)
                for word in ["abc", "spindle", "x"] {
                    try client.send(Array(word.utf8), to: serverAddress)
                    let (count, _) = try client.receive(into: &buffer)
                    log.append("client got \(String(decoding: buffer[..<count], as: UTF8.self))")
                }
                client.close()
            }
            try loop.run()
            return log
        }
        #expect(log == [
            "server got abc from port client", "client got cba",
            "server got spindle from port client", "client got eldnips",
            "server got x from port client", "client got x",
        ])
    }

    @Test("closing a socket while a fiber receives wakes it with ECANCELED")
    func closeWhileReceiving() throws {
        let name = try withLoop { loop -> String in
            let socket = try DatagramSocket(address: SocketAddress(ip: "127.0.0.1", port: 0), loop: loop)
            let receiver = loop.spawn { () -> String in
                var buffer = [UInt8](repeating: 0, count: 64)
                do {
                    _ = try socket.receive(into: &buffer)
                    return "received"
                } catch let error as UVError {
                    return error.name
                }
            }
            loop.spawn {
                try Fiber.sleep(for: .milliseconds(2))
                socket.close()
            }
            try loop.run()
            return try receiver.join()
        }
        #expect(name == "ECANCELED")
    }
}
