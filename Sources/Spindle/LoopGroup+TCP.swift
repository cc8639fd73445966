import Glibc
import SpindleLoop

/// How a ``LoopGroup``'s TCP service spreads its connections over the loops.
public enum ConnectionSpreading: Sendable, Equatable {
    /// One listener per loop on the same port (`SO_REUSEPORT`): the kernel picks the loop of
    /// each connection by its addresses' hash, and nothing is handed between threads.
    case reusePort
    /// One listener, on the group's first loop, which hands each accepted connection to the
    /// loops in turn (``LoopGroup/next()``). For kernels or setups where reuseport balances
    /// badly (few clients, long-lived connections): the balance is exact, at the price of a
    /// descriptor duplicated and posted per connection.
    case acceptor
}

/// A TCP service running on every loop of a ``LoopGroup`` (see
/// ``LoopGroup/serveTCP(on:spreading:backlog:connectionName:_:)``). It stops with the group.
public final class TCPService: Sendable {
    /// Where the service listens (with the real port when it was asked for port 0).
    public let address: SocketAddress
    /// How connections are spread over the loops.
    public let spreading: ConnectionSpreading
    private let counts: Locked<(accepted: [Int], open: [Int])>

    init(address: SocketAddress, spreading: ConnectionSpreading, loops: Int) {
        self.address = address
        self.spreading = spreading
        counts = Locked((Array(repeating: 0, count: loops), Array(repeating: 0, count: loops)))
    }

    /// How many connections each loop has served so far, by the loop's index in the group.
    public var connectionsPerLoop: [Int] { counts.withLock { $0.accepted } }

    /// How many connections are open now, on all loops together.
    public var openConnections: Int { counts.withLock { $0.open.reduce(0, +) } }

    fileprivate func opened(on index: Int) {
        counts.withLock {
            $0.accepted[index] += 1
            $0.open[index] += 1
        }
    }

    fileprivate func closed(on index: Int) { counts.withLock { $0.open[index] -= 1 } }
}

extension LoopGroup {
    /// Serves TCP on `address` with every loop of the group: each connection runs `handler` in
    /// a detached fiber of its own, on the loop it was spread to, and is closed when the
    /// handler returns. Returns once listening.
    ///
    /// ```swift
    /// let group = LoopGroup()
    /// let service = try group.serveTCP(on: SocketAddress(ip: "0.0.0.0", port: 7007)) { connection in
    ///     var buffer = [UInt8](repeating: 0, count: 4096)
    ///     while let count = try? connection.read(into: &buffer), count > 0 {
    ///         try? buffer.withUnsafeBytes { try connection.write(UnsafeRawBufferPointer(rebasing: $0[..<count])) }
    ///     }
    /// }
    /// print("listening on \(service.address)")
    /// ```
    ///
    /// The listeners and connections stop with ``shutdown(within:)``: their fibers are
    /// cancelled (an accept or a read then throws `CancellationError`).
    ///
    /// - Parameters:
    ///   - address: where to listen; port 0 picks a free port, shared by every loop's listener.
    ///   - spreading: one listener per loop (``ConnectionSpreading/reusePort``, the default) or
    ///     one that hands connections out (``ConnectionSpreading/acceptor``).
    ///   - backlog: the kernel's queue of connections not yet accepted, per listener.
    ///   - connectionName: the name of each connection's fiber.
    ///   - handler: serves one connection, in its fiber, on its loop's thread.
    /// - Throws: the bind or listen error (`EADDRINUSE: address already in use`, ...).
    ///
    /// Call it from a thread outside the group: it waits for the loops to set up their
    /// listeners.
    public func serveTCP(
        on address: SocketAddress, spreading: ConnectionSpreading = .reusePort, backlog: Int32 = 1024,
        connectionName: String = "connection", _ handler: @escaping @Sendable (TCPConnection) -> Void
    ) throws -> TCPService {
        let reusePort = spreading == .reusePort
        let server = TCPServer(group: self, spreading: spreading, connectionName: connectionName, handler: handler)
        let bound = try perform(on: loops[0]) { () throws -> SocketAddress in
            let listener = try TCPListener(
                address: address, backlog: backlog, reusePort: reusePort, loop: self.loops[0])
            let bound = try listener.localAddress
            server.start(listener, on: 0)
            return bound
        }
        let service = TCPService(address: bound, spreading: spreading, loops: loops.count)
        server.service = service
        if reusePort {
            for index in loops.indices.dropFirst() {
                try perform(on: loops[index]) {
                    let listener = try TCPListener(
                        address: bound, backlog: backlog, reusePort: true, loop: self.loops[index])
                    server.start(listener, on: index)
                }
            }
        }
        return service
    }

    /// Runs `body` on `loop`'s thread and waits for its value: for set-up from outside the group.
    func perform<T>(on loop: EventLoop, _ body: @escaping () throws -> T) throws -> T {
        if let current = EventLoop.current, loops.contains(where: { $0 === current }) {
            fatalError(
                "LoopGroup: set-up that waits for \(loop) was called on \(current), one of the group's loops; "
                    + "call it from a thread outside the group")
        }
        let gate = Gate()
        let handoff = Handoff(body)
        loop.post {
            let outcome = Result { try handoff.body() }
            gate.locked { handoff.outcome = outcome }
            gate.broadcast()
        }
        return try gate.locked { () -> Result<T, any Error> in
            while handoff.outcome == nil { gate.wait() }
            return handoff.outcome.unsafelyUnwrapped
        }.get()
    }
}

/// Set-up work carried to a loop's thread and its outcome carried back (under a ``Gate``).
private final class Handoff<Value>: @unchecked Sendable {
    let body: () throws -> Value
    var outcome: Result<Value, any Error>?
    init(_ body: @escaping () throws -> Value) { self.body = body }
}

/// The listeners' side of a ``TCPService``: accepting, spreading, and running the handler.
private final class TCPServer: @unchecked Sendable {
    /// Held: the listeners' fibers keep the group (and so its loops) alive while they accept.
    let group: LoopGroup
    let spreading: ConnectionSpreading
    let connectionName: String
    let handler: @Sendable (TCPConnection) -> Void
    /// Set before any connection can be accepted that uses it (see serveTCP).
    var service: TCPService!

    init(
        group: LoopGroup, spreading: ConnectionSpreading, connectionName: String,
        handler: @escaping @Sendable (TCPConnection) -> Void
    ) {
        self.group = group
        self.spreading = spreading
        self.connectionName = connectionName
        self.handler = handler
    }

    /// On loop `index`'s thread: accepts on `listener` in a fiber until it is cancelled.
    func start(_ listener: TCPListener, on index: Int) {
        let loop = group.loops[index]
        loop.spawnDetached(name: "listener") { [self] in
            defer { listener.close() }
            while true {
                let connection: TCPConnection
                do {
                    connection = try listener.accept()
                } catch is CancellationError {
                    return
                } catch let error as UVError where error == .cancelled {
                    return
                } catch {
                    spindleWarning("TCPService on \(loop): accept failed, listener stopped: \(error)")
                    return
                }
                let target = spreading == .acceptor ? group.next() : loop
                if target === loop {
                    serve(connection, on: index)
                } else {
                    handOff(connection, to: target)
                }
            }
        }
    }

    /// Runs the handler for `connection` in a fiber of its own on loop `index`.
    func serve(_ connection: TCPConnection, on index: Int) {
        service.opened(on: index)
        Fiber.spawnDetached(name: connectionName) { [self] in
            defer {
                connection.close()
                service.closed(on: index)
            }
            try? connection.setNoDelay(true)
            handler(connection)
        }
    }

    /// Moves `connection` to `target`: its descriptor is duplicated and adopted there, and the
    /// handle here closed.
    func handOff(_ connection: TCPConnection, to target: EventLoop) {
        defer { connection.close() }
        let descriptor: Int32
        do {
            descriptor = try connection.socket.duplicateDescriptor()
        } catch {
            spindleWarning("TCPService: a connection could not be handed to \(target): \(error)")
            return
        }
        let index = group.loops.firstIndex { $0 === target }!
        let queued = target.tryPost { [self] in
            guard !target.isClosing else {
                Glibc.close(descriptor)
                return
            }
            do {
                let adopted = try TCPConnection(adopting: descriptor, loop: target)
                target.spawnDetached(name: connectionName) { [self] in serveAdopted(adopted, on: index) }
            } catch {
                Glibc.close(descriptor)
                spindleWarning("TCPService: \(target) could not adopt a connection: \(error)")
            }
        }
        if !queued { Glibc.close(descriptor) }
    }

    private func serveAdopted(_ connection: TCPConnection, on index: Int) {
        service.opened(on: index)
        defer {
            connection.close()
            service.closed(on: index)
        }
        try? connection.setNoDelay(true)
        handler(connection)
    }
}
