import Glibc
import SpindleLoop

extension Callbacks {
    /// A listening Unix-domain socket that calls `onConnection` with every connection; closing
    /// it removes the socket file.
    public final class PipeListener {
        /// The underlying libuv socket.
        public let socket: PipeSocket

        /// Binds to `path` and listens.
        public init(
            path: String, backlog: Int32 = 511, loop: EventLoop,
            _ onConnection: @escaping (Result<PipeConnection, UVError>) throws -> Void
        ) throws(UVError) {
            socket = PipeSocket(loop: loop)
            do {
                try socket.bind(path)
                try Callbacks.listen(
                    socket, backlog: backlog,
                    accept: { [socket] () throws(UVError) in
                        PipeConnection(socket: try socket.accept())
                    }, onConnection)
            } catch {
                socket.close()
                throw error
            }
        }

        /// Stops listening and removes the socket file.
        public func close() { socket.close() }
    }

    /// A Unix-domain stream connection with one closure per operation; see ``StreamConnection``.
    public final class PipeConnection: StreamConnection {
        /// The underlying libuv socket.
        public let socket: PipeSocket

        init(socket: PipeSocket) {
            self.socket = socket
            super.init(stream: socket)
        }

        /// Adopts an open descriptor (a `socketpair` end, a pipe).
        public convenience init(adopting descriptor: Int32, loop: EventLoop) throws(UVError) {
            self.init(socket: try PipeSocket(loop: loop, adopting: descriptor))
        }

        /// Connects to the socket at `path`; `completion` gets the connection or the error
        /// (`ENOENT`, `ECONNREFUSED`).
        public static func connect(
            to path: String, loop: EventLoop, _ completion: @escaping (Result<PipeConnection, UVError>) throws -> Void
        ) {
            Callbacks.connect(
                PipeSocket(loop: loop), { $0.connect(to: path, $1) }, make: PipeConnection.init, completion)
        }
    }
}
