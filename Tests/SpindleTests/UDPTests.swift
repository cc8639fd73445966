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
                    log.append(
                        "server got \(String(decoding: buffer[..<count], as: UTF8.self)) from port \(sender.port == clientAddress.port ? "client" : "?")"
                    )
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
        #expect(
            log == [
                "server got abc from port client", "client got cba",
                "server got spindle from port client", "client got eldnips",
                "server got x from port client", "client got x",
            ])
    }

    @Test("two members of a multicast group on one port each receive the feed, in order")
    func multicast() throws {
        let group = "239.255.77.1"
        let received = try withLoop { loop -> [[String]] in
            // Two subscribers share the feed's port (reuseAddress), as two processes would.
            let first = try DatagramSocket(
                address: SocketAddress(ip: "0.0.0.0", port: 0), reuseAddress: true, loop: loop)
            let port = try first.localAddress.port
            let second = try DatagramSocket(
                address: SocketAddress(ip: "0.0.0.0", port: port), reuseAddress: true, loop: loop)
            let subscribers = [first, second]
            for subscriber in subscribers { try subscriber.joinMulticast(group, interface: "127.0.0.1") }
            let publisher = try DatagramSocket(address: SocketAddress(ip: "127.0.0.1", port: 0), loop: loop)
            try publisher.setMulticastSending(interface: "127.0.0.1")
            var received: [[String]] = [[], []]
            let readers = subscribers.enumerated().map { index, subscriber in
                loop.spawn(name: "subscriber \(index)") {
                    var buffer = [UInt8](repeating: 0, count: 64)
                    for _ in 0..<3 {
                        let (count, _) = try subscriber.receive(into: &buffer)
                        received[index].append(String(decoding: buffer[..<count], as: UTF8.self))
                    }
                    try subscriber.leaveMulticast(group, interface: "127.0.0.1")
                    subscriber.close()
                }
            }
            loop.spawn(name: "publisher") {
                let feed = try SocketAddress(ip: group, port: port)
                for tick in ["AAPL 1", "AAPL 2", "MSFT 1"] { try publisher.send(Array(tick.utf8), to: feed) }
                publisher.close()
            }
            try loop.run()
            for reader in readers { try reader.join() }
            return received
        }
        #expect(received == [["AAPL 1", "AAPL 2", "MSFT 1"], ["AAPL 1", "AAPL 2", "MSFT 1"]])
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
