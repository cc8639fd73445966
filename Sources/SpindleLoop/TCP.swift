import CLibUV
import Glibc

/// A TCP socket on the loop: binding, connecting, options and addresses; listening, accepting,
/// reading and writing come from ``StreamSocket``. Wraps uv_tcp_t.
public final class TCPSocket: StreamSocket {

    /// Creates an unbound socket. Wraps uv_tcp_init.
    public init(loop: EventLoop) {
        super.init(loop: loop, type: UV_TCP)
        UVError.mustSucceed(uv_tcp_init(loop.uv, tcp), "uv_tcp_init")
        didInitialize()
    }

    /// Creates a socket of the address family of `address` right away (needed to set socket
    /// options such as `SO_REUSEPORT` before binding). Wraps uv_tcp_init_ex.
    public init(loop: EventLoop, familyOf address: SocketAddress) throws(UVError) {
        super.init(loop: loop, type: UV_TCP)
        let family = address.isIPv6 ? AF_INET6 : AF_INET
        let status = uv_tcp_init_ex(loop.uv, tcp, UInt32(family))
        if status < 0 {
            abandonUninitialized()
            throw UVError(code: status, operation: "uv_tcp_init_ex")
        }
        didInitialize()
    }

    /// Adopts an open stream socket (a TCP socket, or one end of a `socketpair`), which the
    /// handle then owns and closes. Wraps uv_tcp_open.
    public init(loop: EventLoop, adopting descriptor: Int32) throws(UVError) {
        super.init(loop: loop, type: UV_TCP)
        UVError.mustSucceed(uv_tcp_init(loop.uv, tcp), "uv_tcp_init")
        didInitialize()
        let status = uv_tcp_open(tcp, descriptor)
        if status < 0 {
            close()
            throw UVError(code: status, operation: "uv_tcp_open")
        }
    }

    var tcp: UnsafeMutablePointer<uv_tcp_t> { UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_tcp_t.self) }

    public override var handleDescription: String {
        var text = "TCP socket"
        if let local = try? localAddress { text += " \(local)" }
        if let peer = try? peerAddress { text += " to \(peer)" }
        return text
    }

    // MARK: Server side

    /// Binds to `address`; with `reusePort`, several sockets (one per loop) may bind the same
    /// port and the kernel spreads connections across them. Wraps uv_tcp_bind.
    public func bind(_ address: SocketAddress, reusePort: Bool = false) throws(UVError) {
        preconditionOnLoopThread("TCPSocket.bind")
        if reusePort {
            var fd: uv_os_fd_t = -1
            try UVError.check(
                uv_fileno(handle, &fd), "uv_fileno (the socket must be made with familyOf: to set SO_REUSEPORT)")
            var one: Int32 = 1
            if setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size)) != 0 {
                throw UVError(code: -errno, operation: "setsockopt(SO_REUSEPORT)")
            }
        }
        let status = address.withSockaddr { uv_tcp_bind(tcp, $0, 0) }
        try UVError.check(status, "uv_tcp_bind \(address)")
    }

    /// Accepts a pending connection as a new socket. Throws `EAGAIN` when none is pending.
    /// Wraps uv_accept.
    public func accept() throws(UVError) -> TCPSocket {
        try accept(into: TCPSocket(loop: loop))
    }

    /// A new descriptor for this socket's connection (close-on-exec), for handing it to
    /// another loop, which adopts it with ``init(loop:adopting:)``; the caller then closes this
    /// handle. Wraps uv_fileno and fcntl(F_DUPFD_CLOEXEC).
    public func duplicateDescriptor() throws(UVError) -> Int32 {
        preconditionOnLoopThread("TCPSocket.duplicateDescriptor")
        var fd: uv_os_fd_t = -1
        try UVError.check(uv_fileno(handle, &fd), "uv_fileno")
        let copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        if copy < 0 { throw UVError(code: -errno, operation: "fcntl(F_DUPFD_CLOEXEC)") }
        return copy
    }

    // MARK: Client side

    /// Connects to `address`; `completion` gets nil or the error (`ECONNREFUSED`, ...).
    /// Wraps uv_tcp_connect.
    public func connect(to address: SocketAddress, _ completion: @escaping (UVError?) -> Void) {
        preconditionOnLoopThread("TCPSocket.connect")
        let request = Request<uv_connect_t>("uv_tcp_connect", completion)
        let status = address.withSockaddr { sockaddr in
            uv_tcp_connect(request.pointer, tcp, sockaddr) { req, status in
                Request<uv_connect_t>.finish(req, status: status)
            }
        }
        if status < 0 { request.fail(status, operation: "uv_tcp_connect \(address)") }
    }

    // MARK: Options and addresses

    /// Sets TCP_NODELAY (disables Nagle's algorithm). Wraps uv_tcp_nodelay.
    public func setNoDelay(_ enabled: Bool) throws(UVError) {
        try UVError.check(uv_tcp_nodelay(tcp, enabled ? 1 : 0), "uv_tcp_nodelay")
    }

    /// Turns TCP keep-alive on (first probe after `delay` seconds of idleness) or off.
    /// Wraps uv_tcp_keepalive.
    public func setKeepAlive(_ enabled: Bool, delay: UInt32 = 60) throws(UVError) {
        try UVError.check(uv_tcp_keepalive(tcp, enabled ? 1 : 0, delay), "uv_tcp_keepalive")
    }

    /// The address this socket is bound to. Wraps uv_tcp_getsockname.
    public var localAddress: SocketAddress {
        get throws(UVError) { try address(uv_tcp_getsockname, "uv_tcp_getsockname") }
    }

    /// The address of the connected peer. Wraps uv_tcp_getpeername.
    public var peerAddress: SocketAddress {
        get throws(UVError) { try address(uv_tcp_getpeername, "uv_tcp_getpeername") }
    }

    private func address(
        _ query: (UnsafePointer<uv_tcp_t>?, UnsafeMutablePointer<sockaddr>?, UnsafeMutablePointer<Int32>?) -> Int32,
        _ operation: String
    ) throws(UVError) -> SocketAddress {
        var storage = sockaddr_storage()
        var length = Int32(MemoryLayout<sockaddr_storage>.size)
        let status = withUnsafeMutableBytes(of: &storage) {
            query(tcp, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length)
        }
        try UVError.check(status, operation)
        return SocketAddress(storage: storage)
    }
}
