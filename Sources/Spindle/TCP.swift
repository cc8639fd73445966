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
    @exclusivity(unchecked) private var pending = 0
    @exclusivity(unchecked) private var listenError: UVError?
    @exclusivity(unchecked) private var waiters = WaitList()

    /// Binds and listens on `address` on the running fiber's loop (or `loop`, outside a fiber).
    /// Port 0 picks a free port (see ``localAddress``). With `reusePort`, several listeners
    /// (one per loop thread) can share the port.
    public init(address: SocketAddress, backlog: Int32 = 511, reusePort: Bool = false, loop: EventLoop? = nil) throws {
        let loop = loop ?? Scheduler.of(Fiber.runningFiber("TCPListener.init").pointee.sched).loop
        socket = reusePort ? try TCPSocket(loop: loop, familyOf: address) : TCPSocket(loop: loop)
        do {
            try socket.bind(address, reusePort: reusePort)
            try socket.listen(backlog: backlog) { [unowned self] error in self.connectionArrived(error) }
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
        let me = Fiber.runningFiber("TCPListener.accept()")
        while true {
            try Fiber.checkInterruption(me)
            if let listenError { throw listenError }
            if socket.isClosed { throw UVError(code: -ECANCELED, operation: "accept on a closed listener") }
            if pending > 0 {
                pending -= 1
                return TCPConnection(socket: try socket.accept())
            }
            waiters.append(me)
            let reason = Fiber.park(me, .accept, detail: 0, cancellable: true)
            if reason == .cancelled || reason == .timedOut {
                waiters.remove(me)
                try Fiber.throwIfInterrupted(reason)
            }
        }
    }

    private func connectionArrived(_ error: UVError?) {
        if let error { listenError = error } else { pending += 1 }
        if let waiter = waiters.popFirst() { FiberRef(waiter).wake(.ready) }
    }

    /// Stops listening; fibers waiting in ``accept()`` get `ECANCELED`.
    public func close() {
        socket.close()
        while let waiter = waiters.popFirst() { FiberRef(waiter).wake(.closed) }
    }
}

// MARK: - Connection

/// A TCP connection for fibers: straight-line reads and writes that park the calling fiber.
///
/// Reads go straight into the caller's buffer (libuv reads into it; nothing is copied). One
/// fiber reads at a time; any fiber of the loop may write.
public final class TCPConnection {
    /// The underlying libuv socket.
    public let socket: TCPSocket
    private let pending = PendingRead<Int>()

    /// A connection over an already-connected stream socket, which it takes over (see
    /// ``TCPSocket/init(loop:adopting:)``): for example one end of a `socketpair`.
    public convenience init(adopting descriptor: Int32, loop: EventLoop? = nil) throws {
        let loop = loop ?? Scheduler.of(Fiber.runningFiber("TCPConnection(adopting:)").pointee.sched).loop
        self.init(socket: try TCPSocket(loop: loop, adopting: descriptor))
    }

    init(socket: TCPSocket) {
        self.socket = socket
        socket.setReadHandlers(
            buffer: { [unowned self] in self.pending.target },
            onRead: { [unowned self] result in self.readFinished(result) })
    }

    /// Connects to `address` from the running fiber, parking it until the connection is made.
    /// Throws the connection error, such as `ECONNREFUSED: connection refused`.
    public static func connect(to address: SocketAddress) throws -> TCPConnection {
        let me = Fiber.runningFiber("TCPConnection.connect(to:)")
        let socket = TCPSocket(loop: Scheduler.of(me.pointee.sched).loop)
        do {
            try Fiber.awaitCompletion(.connect) { done in socket.connect(to: address, done) }
        } catch {
            socket.close()
            throw error
        }
        return TCPConnection(socket: socket)
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

    /// Reads what is available (at least one byte, up to `buffer.count`) into `buffer`, parking
    /// the fiber until data arrives. Returns 0 at end of stream. Throws the read error (a reset
    /// peer: `ECONNRESET`; a connection closed meanwhile: `ECANCELED`), `CancellationError` or
    /// ``FiberTimeoutError``.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard buffer.count > 0 else { return 0 }
        return try pending.wait(
            into: buffer, "TCPConnection.read(into:)", closed: socket.isClosed,
            start: { try socket.startReading() }, stop: { socket.stopReading() })
    }

    /// Reads into an array's storage; see ``read(into:)-(UnsafeMutableRawBufferPointer)``.
    public func read(into bytes: inout [UInt8]) throws -> Int {
        try bytes.withUnsafeMutableBytes { try read(into: $0) }
    }

    private func readFinished(_ result: Result<Int, UVError>) {
        // Reading stays on after a read, so a fiber that reads again soon costs no epoll
        // re-registration; data arriving meanwhile finds no buffer and pauses reading.
        if case .failure = result { socket.stopReading() } else if case .success(0) = result { socket.stopReading() }
        pending.finish(result)
    }

    /// Writes all of `bytes`, parking the fiber until the kernel has taken them. What the
    /// kernel takes at once is written without parking or allocating; only the rest is queued.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard bytes.count > 0 else { return }
        let written = try socket.tryWrite(bytes)
        if written == bytes.count { return }
        let rest = UnsafeRawBufferPointer(rebasing: bytes[written...])
        try Fiber.awaitCompletion(.write) { done in socket.write(rest, done) }
    }

    /// Writes all of `bytes`.
    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Writes the UTF-8 of `text`.
    public func write(_ text: String) throws {
        var text = text
        try text.withUTF8 { try write(UnsafeRawBufferPointer($0)) }
    }

    /// Half-closes: the peer reads end of stream; this side can still read.
    public func shutdown() throws {
        try Fiber.awaitCompletion(.write) { done in socket.shutdown(done) }
    }

    /// Closes the connection; a fiber reading it gets `ECANCELED`.
    public func close() { socket.close() }

    /// Sets TCP_NODELAY.
    public func setNoDelay(_ enabled: Bool) throws { try socket.setNoDelay(enabled) }

    /// Turns TCP keep-alive on or off.
    public func setKeepAlive(_ enabled: Bool, delay: UInt32 = 60) throws { try socket.setKeepAlive(enabled, delay: delay) }

    /// This side's address.
    public var localAddress: SocketAddress { get throws { try socket.localAddress } }

    /// The peer's address.
    public var peerAddress: SocketAddress { get throws { try socket.peerAddress } }
}
