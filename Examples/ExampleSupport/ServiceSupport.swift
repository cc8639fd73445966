// What the example services share: output lines, usage errors, --host/--port flags, and a
// clean stop on SIGINT/SIGTERM.
import Glibc
import Spindle
import SpindleLoop

/// Writes a line to standard output (fd 1) in one unbuffered write.
public func say(_ line: String) {
    var text = line + "\n"
    text.withUTF8 { _ = write(1, $0.baseAddress, $0.count) }
}

/// Writes `service: line` to standard error.
public func complain(_ service: String, _ line: String) {
    var text = "\(service): \(line)\n"
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

/// The `--host` and `--port` flags of a service; exits 2 with usage on anything else.
public func parseServiceArguments(_ service: String, defaultPort: Int) -> (host: String, port: Int) {
    func usage(_ problem: String) -> Never {
        complain(service, "\(problem)\nusage: \(service) [--host ADDRESS] [--port PORT]")
        exit(2)
    }
    var host = "127.0.0.1"
    var port = defaultPort
    var arguments = CommandLine.arguments.dropFirst()
    while let flag = arguments.popFirst() {
        switch flag {
        case "--host":
            guard let value = arguments.popFirst() else { usage("--host needs an address") }
            host = value
        case "--port":
            guard let value = arguments.popFirst(), let number = Int(value), (0...65535).contains(number) else {
                usage("--port needs a number from 0 to 65535")
            }
            port = number
        case "-h", "--help":
            usage("options")
        default:
            usage("unknown argument \(flag)")
        }
    }
    return (host, port)
}

/// Runs a TCP service on one loop: listens on host:port, prints where, hands each connection
/// to `handle` in its own fiber, and on SIGINT or SIGTERM stops accepting, closes every open
/// connection and returns.
public func runService(
    _ service: String, host: String, port: Int, handle: @escaping (TCPConnection) -> Void
) throws {
    let loop = EventLoop()
    var connections: [ObjectIdentifier: TCPConnection] = [:]
    loop.spawn(name: "acceptor") {
        let listener: TCPListener
        do {
            listener = try TCPListener(address: SocketAddress(ip: host, port: port))
        } catch {
            complain(service, "cannot listen on \(host):\(port): \(error)")
            exit(1)
        }
        say("\(service) listening on \(try listener.localAddress)")
        Fiber.spawnDetached(name: "signals") {
            guard let signal = try? Fiber.waitForSignal([SIGINT, SIGTERM]) else { return }
            say("\(service) stopping on signal \(signal) with \(connections.count) connection(s) open")
            listener.close()
            for connection in connections.values { connection.close() }
        }
        while let connection = try? listener.accept() {
            connections[ObjectIdentifier(connection)] = connection
            Fiber.spawnDetached(name: "connection") {
                defer {
                    connections[ObjectIdentifier(connection)] = nil
                    connection.close()
                }
                try? connection.setNoDelay(true)
                handle(connection)
            }
        }
    }
    try loop.run()
    try loop.close()
}
