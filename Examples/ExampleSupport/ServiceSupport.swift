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

/// What a service's command line asks for.
public struct ServiceOptions {
    public var host = "127.0.0.1"
    public var port: Int
    /// Loops (one per thread): `--loops N`, default one per CPU this process may use.
    public var loops = LoopGroup.defaultLoopCount
    /// `--acceptor`: one listener hands connections to the loops; default one listener a loop.
    public var spreading = ConnectionSpreading.reusePort
}

/// The `--host`, `--port`, `--loops` and `--acceptor` flags of a service; exits 2 with usage
/// on anything else.
public func parseServiceArguments(_ service: String, defaultPort: Int) -> ServiceOptions {
    func usage(_ problem: String) -> Never {
        complain(service, "\(problem)\nusage: \(service) [--host ADDRESS] [--port PORT] [--loops N] [--acceptor]")
        exit(2)
    }
    var options = ServiceOptions(port: defaultPort)
    var arguments = CommandLine.arguments.dropFirst()
    while let flag = arguments.popFirst() {
        switch flag {
        case "--host":
            guard let value = arguments.popFirst() else { usage("--host needs an address") }
            options.host = value
        case "--port":
            guard let value = arguments.popFirst(), let number = Int(value), (0...65535).contains(number) else {
                usage("--port needs a number from 0 to 65535")
            }
            options.port = number
        case "--loops":
            guard let value = arguments.popFirst(), let number = Int(value), (1...1024).contains(number) else {
                usage("--loops needs a number from 1 to 1024")
            }
            options.loops = number
        case "--acceptor":
            options.spreading = .acceptor
        case "-h", "--help":
            usage("options")
        default:
            usage("unknown argument \(flag)")
        }
    }
    return options
}

/// Runs a TCP service on a loop group: listens on host:port with every loop, prints where,
/// hands each connection to `handle` in its own fiber, and on SIGINT or SIGTERM shuts the
/// group down (every connection's fiber is cancelled and its connection closed) and returns.
public func runService(
    _ service: String, _ options: ServiceOptions, handle: @escaping @Sendable (TCPConnection) -> Void
) throws {
    // The loops' threads inherit this mask: the signals wait for sigwait on this thread.
    var signals = sigset_t()
    sigemptyset(&signals)
    sigaddset(&signals, SIGINT)
    sigaddset(&signals, SIGTERM)
    pthread_sigmask(SIG_BLOCK, &signals, nil)
    let group = LoopGroup(loops: options.loops, name: service)
    let tcp: TCPService
    do {
        let address = try SocketAddress(ip: options.host, port: options.port)
        tcp = try group.serveTCP(on: address, spreading: options.spreading, handle)
    } catch {
        complain(service, "cannot listen on \(options.host):\(options.port): \(error)")
        exit(1)
    }
    say("\(service) listening on \(tcp.address)")
    say("\(service) runs \(options.loops) loop(s); connections spread by \(options.spreading)")
    var signal: Int32 = 0
    while sigwait(&signals, &signal) != 0 {}
    say(
        "\(service) stopping on signal \(signal) with \(tcp.openConnections) connection(s) open; "
            + "connections per loop: \(tcp.connectionsPerLoop.map(String.init).joined(separator: " "))")
    try group.shutdown(within: .seconds(10))
}
