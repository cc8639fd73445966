import CSpindleSupport
import Glibc
import SpindleLoop

// MARK: - Waiting for a libuv completion

extension Fiber {
    /// Starts a libuv operation with `start` and parks the running fiber until its completion
    /// runs; throws the operation's error. Not cancellable: the operation's memory (buffers on
    /// this fiber's stack) must stay put until libuv is done with it; close the socket to make
    /// it complete early (with `ECANCELED`).
    static func awaitCompletion(_ reason: ParkReason, _ start: (@escaping (UVError?) -> Void) -> Void) throws {
        try awaitResult(reason) { (done: @escaping (Result<Void, UVError>) -> Void) in
            start { error in done(error.map { .failure($0) } ?? .success(())) }
        }
    }

    /// Resolves `host` to its addresses (with `port`), parking the running fiber while libuv's
    /// thread pool asks the system resolver.
    public static func resolve(_ host: String, port: Int) throws -> [SocketAddress] {
        let loop = Scheduler.of(runningFiber("Fiber.resolve").pointee.sched).loop
        return try awaitResult(.resolve) { Resolver.resolve(host, port: port, on: loop, $0) }
    }

    /// The running fiber's loop, or `loop` when given (for code outside a fiber).
    static func loop(_ loop: EventLoop?, _ what: StaticString) -> EventLoop {
        loop ?? Scheduler.of(runningFiber(what).pointee.sched).loop
    }
}

// MARK: - Listener

/// A listening TCP socket for fibers: ``accept()`` parks the calling fiber until a connection
/// arrives.
///
/// ```swift
/// let listener = try TCPListener(address: SocketAddress(ip: "127.0.0.1", port: 0))
/// while true {
///     let connection = try listener.accept()
///     Fiber.spawnDetached { serve(connection) }
/// }
/// ```
public final class TCPListener {
    /// The underlying libuv socket.
    public let socket: TCPSocket
    private let queue: AcceptQueue<TCPSocket>

    /// Binds and listens on `address` on the running fiber's loop (or `loop`, outside a fiber).
    /// Port 0 picks a free port (see ``localAddress``). With `reusePort`, several listeners
    /// (one per loop thread) can share the port.
    public init(address: SocketAddress, backlog: Int32 = 511, reusePort: Bool = false, loop: EventLoop? = nil) throws {
        let loop = Fiber.loop(loop, "TCPListener.init")
        let socket = reusePort ? try TCPSocket(loop: loop, familyOf: address) : TCPSocket(loop: loop)
        self.socket = socket
        // Unowned: the socket holds this callback, and calls it only while it is open.
        queue = AcceptQueue { [unowned(unsafe) socket] () throws(UVError) in try socket.accept() }
        do {
            try socket.bind(address, reusePort: reusePort)
            try socket.listen(backlog: backlog) { [queue] error in queue.arrived(error) }
        } catch {
            socket.close()
            throw error
        }
    }

    /// The address the listener is bound to (with the real port when asked for port 0).
    public var localAddress: SocketAddress { get throws { try socket.localAddress } }

    /// Waits for the next connection. Throws the listen error if listening failed, `ECANCELED`
    /// once the listener is closed, `CancellationError` if the fiber is cancelled.
    public func accept() throws -> TCPConnection {
        TCPConnection(socket: try queue.accept("TCPListener.accept()", closed: { socket.isClosed }))
    }

    /// Stops listening; fibers waiting in ``accept()`` get `ECANCELED`.
    public func close() {
        socket.close()
        queue.wakeAll()
    }
}

// MARK: - Connection

/// A TCP connection for fibers; reading and writing come from ``StreamConnection``.
public final class TCPConnection: StreamConnection {
    /// The underlying libuv socket.
    public let socket: TCPSocket

    /// A connection over an already-connected stream socket, which it takes over (see
    /// ``/SpindleLoop/TCPSocket/init(loop:adopting:)``): for example one end of a `socketpair`.
    public convenience init(adopting descriptor: Int32, loop: EventLoop? = nil) throws {
        self.init(socket: try TCPSocket(loop: Fiber.loop(loop, "TCPConnection(adopting:)"), adopting: descriptor))
    }

    init(socket: TCPSocket) {
        self.socket = socket
        super.init(stream: socket)
    }

    /// Connects to `address` from the running fiber, parking it until the connection is made.
    /// Throws the connection error, such as `ECONNREFUSED: connection refused`.
    public static func connect(to address: SocketAddress) throws -> TCPConnection {
        let socket = TCPSocket(loop: Fiber.loop(nil, "TCPConnection.connect(to:)"))
        return TCPConnection(socket: try connecting(socket) { $0.connect(to: address, $1) })
    }

    /// Resolves `host` (a name or a numeric address) and connects to the first address that
    /// accepts, trying each in turn. Throws the resolution error (`EAI_NONAME: unknown node or
    /// service`) or the last connection error.
    public static func connect(host: String, port: Int) throws -> TCPConnection {
        if let numeric = try? SocketAddress(ip: host, port: port) { return try connect(to: numeric) }
        var lastError: any Error = UVError(code: -EINVAL, operation: "resolve \(host)")
        for address in try Fiber.resolve(host, port: port) {
            do {
                return try connect(to: address)
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    /// Sets TCP_NODELAY.
    public func setNoDelay(_ enabled: Bool) throws { try socket.setNoDelay(enabled) }

    /// Turns TCP keep-alive on or off.
    public func setKeepAlive(_ enabled: Bool, delay: UInt32 = 60) throws {
        try socket.setKeepAlive(enabled, delay: delay)
    }

    /// This side's address.
    public var localAddress: SocketAddress { get throws { try socket.localAddress } }

    /// The peer's address.
    public var peerAddress: SocketAddress { get throws { try socket.peerAddress } }
}
