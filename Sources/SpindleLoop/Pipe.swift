import CLibUV
import Glibc

/// A Unix-domain stream socket (or an adopted pipe/socketpair descriptor) on the loop: binding
/// to a path, connecting to one, and — from ``StreamSocket`` — listening, accepting, reading and
/// writing. Wraps uv_pipe_t.
///
/// Binding creates the socket file and closing the handle removes it (libuv unlinks it); a
/// process that dies without closing leaves the file behind, and binding that path again fails
/// with `EADDRINUSE` until it is removed.
public final class PipeSocket: StreamSocket {
    /// Creates an unbound pipe. Wraps uv_pipe_init.
    public init(loop: EventLoop) {
        super.init(loop: loop, type: UV_NAMED_PIPE)
        UVError.mustSucceed(uv_pipe_init(loop.uv, pipe, 0), "uv_pipe_init")
        didInitialize()
    }

    /// Adopts an open descriptor (one end of a `socketpair`, a pipe), which the handle then
    /// owns and closes. Wraps uv_pipe_open.
    public init(loop: EventLoop, adopting descriptor: Int32) throws(UVError) {
        super.init(loop: loop, type: UV_NAMED_PIPE)
        UVError.mustSucceed(uv_pipe_init(loop.uv, pipe, 0), "uv_pipe_init")
        didInitialize()
        let status = uv_pipe_open(pipe, descriptor)
        if status < 0 {
            close()
            throw UVError(code: status, operation: "uv_pipe_open")
        }
    }

    var pipe: UnsafeMutablePointer<uv_pipe_t> {
        UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_pipe_t.self)
    }

    public override var handleDescription: String {
        var text = "Unix-domain socket"
        if let path = try? localPath, !path.isEmpty { text += " \(path)" }
        if let path = try? peerPath, !path.isEmpty { text += " to \(path)" }
        return text
    }

    /// Binds to the socket file at `path` (at most 107 bytes; the file must not exist:
    /// `EADDRINUSE` otherwise). Wraps uv_pipe_bind.
    public func bind(_ path: String) throws(UVError) {
        preconditionOnLoopThread("PipeSocket.bind")
        try Self.checkLength(path, "uv_pipe_bind")
        try UVError.check(uv_pipe_bind(pipe, path), "uv_pipe_bind \(path)")
    }

    /// Accepts a pending connection as a new socket. Throws `EAGAIN` when none is pending.
    /// Wraps uv_accept.
    public func accept() throws(UVError) -> PipeSocket {
        try accept(into: PipeSocket(loop: loop))
    }

    /// Connects to the socket file at `path`; `completion` gets nil or the error (`ENOENT` when
    /// there is no such file, `ECONNREFUSED` when nobody listens). Wraps uv_pipe_connect.
    public func connect(to path: String, _ completion: @escaping (UVError?) -> Void) {
        preconditionOnLoopThread("PipeSocket.connect")
        do {
            try Self.checkLength(path, "uv_pipe_connect")
        } catch {
            // Report on the next turn, as libuv does for its own connect errors.
            loop.deferToNextTurn { completion(error) }
            return
        }
        let request = Request<uv_connect_t>("uv_pipe_connect", completion)
        uv_pipe_connect(request.pointer, pipe, path) { req, status in Request<uv_connect_t>.finish(req, status: status)
        }
    }

    /// The path this socket is bound to ("" for an unbound or adopted one).
    /// Wraps uv_pipe_getsockname.
    public var localPath: String {
        get throws(UVError) { try name(uv_pipe_getsockname, "uv_pipe_getsockname") }
    }

    /// The path of the socket this one is connected to. Wraps uv_pipe_getpeername.
    public var peerPath: String {
        get throws(UVError) { try name(uv_pipe_getpeername, "uv_pipe_getpeername") }
    }

    private func name(
        _ query: (UnsafePointer<uv_pipe_t>?, UnsafeMutablePointer<CChar>?, UnsafeMutablePointer<Int>?) -> Int32,
        _ operation: String
    ) throws(UVError) -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        var length = buffer.count
        let status = query(pipe, &buffer, &length)
        try UVError.check(status, operation)
        return String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func checkLength(_ path: String, _ operation: String) throws(UVError) {
        // sun_path holds 108 bytes with the terminating NUL; libuv would truncate silently.
        if path.utf8.count > 107 || path.isEmpty {
            throw UVError(
                code: UV_EINVAL.rawValue,
                operation: "\(operation): a socket path must be 1 to 107 bytes (got \(path.utf8.count))")
        }
    }
}
