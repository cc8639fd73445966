// spindle-echo: a TCP echo server on fibers, one fiber per connection.
//
//   spindle-echo [--host 127.0.0.1] [--port 7007]
//
// Prints where it listens ("spindle-echo listening on 127.0.0.1:7007"), echoes every byte back,
// and stops cleanly on SIGINT or SIGTERM: it stops accepting, closes every connection, and
// exits 0.
import Glibc
import Spindle
import SpindleLoop

/// Writes a line to standard output (fd 1) in one write, unbuffered.
func say(_ line: String) {
    var text = line + "\n"
    text.withUTF8 { _ = write(1, $0.baseAddress, $0.count) }
}

/// Writes a line to standard error (fd 2).
func complain(_ line: String) {
    var text = "spindle-echo: " + line + "\n"
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

func usage(_ problem: String) -> Never {
    complain("\(problem)\nusage: spindle-echo [--host ADDRESS] [--port PORT]")
    exit(2)
}

func parseArguments() -> (host: String, port: Int) {
    var host = "127.0.0.1"
    var port = 7007
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
            usage("echoes TCP connections")
        default:
            usage("unknown argument \(flag)")
        }
    }
    return (host, port)
}

func serve(host: String, port: Int) throws {
    let loop = EventLoop()
    var connections: [ObjectIdentifier: TCPConnection] = [:]

    loop.spawn(name: "acceptor") {
        let listener: TCPListener
        do {
            listener = try TCPListener(address: SocketAddress(ip: host, port: port))
        } catch {
            complain("cannot listen on \(host):\(port): \(error)")
            exit(1)
        }
        say("spindle-echo listening on \(try listener.localAddress)")

        Fiber.spawnDetached(name: "signals") {
            guard let signal = try? Fiber.waitForSignal([SIGINT, SIGTERM]) else { return }
            say("spindle-echo stopping on signal \(signal) with \(connections.count) connection(s) open")
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
                var buffer = [UInt8](repeating: 0, count: 16 * 1024)
                while let count = try? connection.read(into: &buffer), count > 0 {
                    let sent: Void? = try? buffer.withUnsafeBytes {
                        try connection.write(UnsafeRawBufferPointer(rebasing: $0[..<count]))
                    }
                    if sent == nil { return }
                }
            }
        }
    }
    try loop.run()
    try loop.close()
}

let (host, port) = parseArguments()
do {
    try serve(host: host, port: port)
} catch {
    complain("\(error)")
    exit(1)
}
