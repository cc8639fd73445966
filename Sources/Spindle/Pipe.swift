import CSpindleSupport
import Glibc
import SpindleLoop

/// A listening Unix-domain socket for fibers: ``accept()`` parks the calling fiber until a
/// connection arrives.
///
/// The socket file is created by the listener and removed by ``close()``. A stale file left by
/// a crashed process makes binding fail with `EADDRINUSE`; pass `replacingStale: true` to
/// remove such a file (a socket, never anything else) first.
public final class PipeListener {
    /// The underlying libuv socket.
    public let socket: PipeSocket
    /// The socket file's path.
    public let path: String
    private let queue: AcceptQueue<PipeSocket>

    /// Binds to `path` and listens, on the running fiber's loop (or `loop`).
    public init(path: String, backlog: Int32 = 511, replacingStale: Bool = false, loop: EventLoop? = nil) throws {
        let socket = PipeSocket(loop: Fiber.loop(loop, "PipeListener.init"))
        self.socket = socket
        self.path = path
        // Unowned: the socket holds this callback, and calls it only while it is open.
        queue = AcceptQueue { [unowned(unsafe) socket] () throws(UVError) in try socket.accept() }
        do {
            if replacingStale { try Self.removeStaleSocket(at: path) }
            try socket.bind(path)
            try socket.listen(backlog: backlog) { [queue] error in queue.arrived(error) }
        } catch {
            socket.close()
            throw error
        }
    }

    /// Removes the socket file at `path` if it is one (and nothing else: a regular file there
    /// is an error, `EEXIST`).
    private static func removeStaleSocket(at path: String) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw UVError(code: -EEXIST, operation: "PipeListener: \(path) exists and is not a socket")
        }
        unlink(path)
    }

    /// Waits for the next connection. Throws the listen error, `ECANCELED` once the listener is
    /// closed, `CancellationError` if the fiber is cancelled.
    public func accept() throws -> PipeConnection {
        PipeConnection(socket: try queue.accept("PipeListener.accept()", closed: { socket.isClosed }))
    }

    /// Stops listening and removes the socket file; fibers waiting in ``accept()`` get
    /// `ECANCELED`.
    public func close() {
        guard !socket.isClosed else { return }
        socket.close()  // libuv unlinks the socket file
        queue.wakeAll()
    }
}

/// A Unix-domain stream connection for fibers; reading and writing come from
/// ``StreamConnection``.
public final class PipeConnection: StreamConnection {
    /// The underlying libuv socket.
    public let socket: PipeSocket

    init(socket: PipeSocket) {
        self.socket = socket
        super.init(stream: socket)
    }

    /// A connection over an open descriptor (one end of a `socketpair`, a pipe), which it takes
    /// over.
    public convenience init(adopting descriptor: Int32, loop: EventLoop? = nil) throws {
        self.init(socket: try PipeSocket(loop: Fiber.loop(loop, "PipeConnection(adopting:)"), adopting: descriptor))
    }

    /// Connects to the Unix-domain socket at `path`, parking the fiber until connected. Throws
    /// `ENOENT` (no such socket file), `ECONNREFUSED` (nobody listens) or `EINVAL` (path too long).
    public static func connect(to path: String) throws -> PipeConnection {
        let socket = PipeSocket(loop: Fiber.loop(nil, "PipeConnection.connect(to:)"))
        return PipeConnection(socket: try connecting(socket) { $0.connect(to: path, $1) })
    }

    /// The path of the socket this one is connected to.
    public var peerPath: String { get throws { try socket.peerPath } }
}
