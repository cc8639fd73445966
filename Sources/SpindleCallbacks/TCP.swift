import Glibc
import SpindleLoop

extension Callbacks {
    /// A listening TCP socket that calls `onConnection` with every connection it accepts.
    ///
    /// ```swift
    /// let listener = try Callbacks.TCPListener(address: SocketAddress(ip: "127.0.0.1", port: 7007), loop: loop) { result in
    ///     let connection = try result.get()
    ///     echo(connection)
    /// }
    /// ```
    public final class TCPListener {
        /// The underlying libuv socket.
        public let socket: TCPSocket

        /// Binds to `address` and listens (`reusePort`: several listeners share the port).
        public init(
            address: SocketAddress, backlog: Int32 = 511, reusePort: Bool = false, loop: EventLoop,
            _ onConnection: @escaping (Result<TCPConnection, UVError>) throws -> Void
        ) throws(UVError) {
            socket = reusePort ? try TCPSocket(loop: loop, familyOf: address) : TCPSocket(loop: loop)
            do {
                try socket.bind(address, reusePort: reusePort)
                try Callbacks.listen(
                    socket, backlog: backlog,
                    accept: { [socket] () throws(UVError) in
                        TCPConnection(socket: try socket.accept())
                    }, onConnection)
            } catch {
                socket.close()
                throw error
            }
        }

        /// The bound address (with the real port when asked for port 0).
        public var localAddress: SocketAddress { get throws(UVError) { try socket.localAddress } }

        /// Stops listening.
        public func close() { socket.close() }
    }

    /// A TCP connection with one closure per operation; see ``StreamConnection``.
    public final class TCPConnection: StreamConnection {
        /// The underlying libuv socket.
        public let socket: TCPSocket

        init(socket: TCPSocket) {
            self.socket = socket
            super.init(stream: socket)
        }

        /// Adopts a connected stream socket (one end of a `socketpair`, say).
        public convenience init(adopting descriptor: Int32, loop: EventLoop) throws(UVError) {
            self.init(socket: try TCPSocket(loop: loop, adopting: descriptor))
        }

        /// Connects to `address`; `completion` gets the connection or the error
        /// (`ECONNREFUSED: connection refused`).
        public static func connect(
            to address: SocketAddress, loop: EventLoop,
            _ completion: @escaping (Result<TCPConnection, UVError>) throws -> Void
        ) {
            Callbacks.connect(
                TCPSocket(loop: loop), { $0.connect(to: address, $1) }, make: TCPConnection.init, completion)
        }

        /// Sets TCP_NODELAY.
        public func setNoDelay(_ enabled: Bool) throws(UVError) { try socket.setNoDelay(enabled) }

        /// Turns TCP keep-alive on or off.
        public func setKeepAlive(_ enabled: Bool, delay: UInt32 = 60) throws(UVError) {
            try socket.setKeepAlive(enabled, delay: delay)
        }

        /// This side's address.
        public var localAddress: SocketAddress { get throws(UVError) { try socket.localAddress } }

        /// The peer's address.
        public var peerAddress: SocketAddress { get throws(UVError) { try socket.peerAddress } }
    }
}
