import CLibUV
import Glibc

/// A TCP socket on the loop: listening, accepting, connecting, reading and writing with
/// callbacks on the loop's thread. Wraps uv_tcp_t.
///
/// Reading follows libuv's model: ``setReadHandlers(buffer:onRead:)`` once, then
/// ``startReading()`` / ``stopReading()``; libuv reads straight into the buffer the handler
/// returns (no copy). Each write names bytes that must stay valid until its completion runs.
/// Closing fails what is pending: the read handler gets `ECANCELED`, and libuv completes pending
/// writes, connects and shutdowns with `ECANCELED`.
public final class TCPSocket: LoopHandle {
    private var onConnection: ((UVError?) -> Void)?
    private var bufferProvider: (() -> UnsafeMutableRawBufferPointer)?
    private var onRead: ((Result<Int, UVError>) -> Void)?
    /// Whether reading is started.
    public private(set) var isReading = false

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
    var stream: UnsafeMutablePointer<uv_stream_t> {
        UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_stream_t.self)
    }

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
        loop.preconditionOnLoopThread("TCPSocket.bind")
        if reusePort {
            var fd: uv_os_fd_t = -1
            try UVError.check(uv_fileno(handle, &fd), "uv_fileno (the socket must be made with familyOf: to set SO_REUSEPORT)")
            var one: Int32 = 1
            if setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size)) != 0 {
                throw UVError(code: -errno, operation: "setsockopt(SO_REUSEPORT)")
            }
        }
        let status = address.withSockaddr { uv_tcp_bind(tcp, $0, 0) }
        try UVError.check(status, "uv_tcp_bind \(address)")
    }

    /// Starts listening; `onConnection` runs once per incoming connection (call ``accept()``
    /// from it, or later). Wraps uv_listen.
    public func listen(backlog: Int32 = 511, _ onConnection: @escaping (UVError?) -> Void) throws(UVError) {
        loop.preconditionOnLoopThread("TCPSocket.listen")
        self.onConnection = onConnection
        retainWhileActive()
        let status = uv_listen(stream, backlog) { server, status in
            guard let data = server?.pointee.data else { return }
            let socket = LoopHandle.object(data, as: TCPSocket.self)
            socket.onConnection?(status < 0 ? UVError(code: status, operation: "uv_listen") : nil)
        }
        if status < 0 {
            releaseActiveRetain()
            throw UVError(code: status, operation: "uv_listen")
        }
    }

    /// Accepts a pending connection as a new socket. Throws `EAGAIN` when none is pending.
    /// Wraps uv_accept.
    public func accept() throws(UVError) -> TCPSocket {
        loop.preconditionOnLoopThread("TCPSocket.accept")
        let client = TCPSocket(loop: loop)
        let status = uv_accept(stream, client.stream)
        if status < 0 {
            client.close()
            throw UVError(code: status, operation: "uv_accept")
        }
        return client
    }

    // MARK: Client side

    /// Connects to `address`; `completion` gets nil or the error (`ECONNREFUSED`, ...).
    /// Wraps uv_tcp_connect.
    public func connect(to address: SocketAddress, _ completion: @escaping (UVError?) -> Void) {
        loop.preconditionOnLoopThread("TCPSocket.connect")
        let request = Request<uv_connect_t>(completion)
        let status = address.withSockaddr { sockaddr in
            uv_tcp_connect(request.pointer, tcp, sockaddr) { req, status in
                Request<uv_connect_t>.complete(req, status: status, operation: "uv_tcp_connect")
            }
        }
        if status < 0 { request.fail(status, operation: "uv_tcp_connect \(address)") }
    }

    // MARK: Reading

    /// Sets where reads go and who hears about them: `buffer` is asked for memory before each
    /// read; `onRead` gets the byte count (0 at end of stream) or the error. When `buffer`
    /// returns an empty buffer (nobody wants data now), reading pauses until ``startReading()``
    /// is called again, and the data waits in the kernel.
    public func setReadHandlers(
        buffer: @escaping () -> UnsafeMutableRawBufferPointer, onRead: @escaping (Result<Int, UVError>) -> Void
    ) {
        bufferProvider = buffer
        self.onRead = onRead
    }

    /// Starts reading (the read handlers must be set). Wraps uv_read_start.
    public func startReading() throws(UVError) {
        loop.preconditionOnLoopThread("TCPSocket.startReading")
        precondition(onRead != nil, "TCPSocket.startReading() before setReadHandlers")
        if isReading { return }
        let status = uv_read_start(stream, { handle, _, buf in
            guard let data = handle?.pointee.data, let buf else { return }
            let socket = LoopHandle.object(data, as: TCPSocket.self)
            let target = socket.bufferProvider?() ?? UnsafeMutableRawBufferPointer(start: nil, count: 0)
            buf.pointee = uv_buf_init(target.baseAddress?.assumingMemoryBound(to: CChar.self), UInt32(target.count))
        }, { stream, nread, _ in
            guard let data = stream?.pointee.data else { return }
            let socket = LoopHandle.object(data, as: TCPSocket.self)
            if nread == 0 { return }  // EAGAIN: nothing this time
            if nread == Int(UV_ENOBUFS.rawValue) {
                // The buffer provider had no room: nobody is reading now, so pause until they are.
                socket.stopReading()
                return
            }
            if nread == Int(UV_EOF.rawValue) {
                socket.onRead?(.success(0))
            } else if nread < 0 {
                socket.onRead?(.failure(UVError(code: Int32(nread), operation: "uv_read")))
            } else {
                socket.onRead?(.success(nread))
            }
        })
        try UVError.check(status, "uv_read_start")
        isReading = true
        retainWhileActive()
    }

    /// Stops reading. Wraps uv_read_stop.
    public func stopReading() {
        guard isReading else { return }
        isReading = false
        uv_read_stop(stream)
        if onConnection == nil { releaseActiveRetain() }
    }

    // MARK: Writing

    /// Writes all of `bytes`; `completion` gets nil or the error. The bytes must stay valid and
    /// unchanged until `completion` runs. Wraps uv_write.
    public func write(_ bytes: UnsafeRawBufferPointer, _ completion: @escaping (UVError?) -> Void) {
        loop.preconditionOnLoopThread("TCPSocket.write")
        let request = Request<uv_write_t>(completion)
        var buffer = uv_buf_init(UnsafeMutablePointer(mutating: bytes.baseAddress?.assumingMemoryBound(to: CChar.self)), UInt32(bytes.count))
        let status = uv_write(request.pointer, stream, &buffer, 1) { req, status in
            Request<uv_write_t>.complete(req, status: status, operation: "uv_write")
        }
        if status < 0 { request.fail(status, operation: "uv_write") }
    }

    /// Writes what the kernel takes right now, without queueing; returns the byte count (0 when
    /// the socket buffer is full or earlier writes are still queued). Wraps uv_try_write.
    public func tryWrite(_ bytes: UnsafeRawBufferPointer) throws(UVError) -> Int {
        loop.preconditionOnLoopThread("TCPSocket.tryWrite")
        var buffer = uv_buf_init(UnsafeMutablePointer(mutating: bytes.baseAddress?.assumingMemoryBound(to: CChar.self)), UInt32(bytes.count))
        let written = uv_try_write(stream, &buffer, 1)
        if written == UV_EAGAIN.rawValue { return 0 }
        try UVError.check(written, "uv_try_write")
        return Int(written)
    }

    /// Shuts down the sending side after pending writes (the peer reads end of stream).
    /// Wraps uv_shutdown.
    public func shutdown(_ completion: @escaping (UVError?) -> Void) {
        loop.preconditionOnLoopThread("TCPSocket.shutdown")
        let request = Request<uv_shutdown_t>(completion)
        let status = uv_shutdown(request.pointer, stream) { req, status in
            Request<uv_shutdown_t>.complete(req, status: status, operation: "uv_shutdown")
        }
        if status < 0 { request.fail(status, operation: "uv_shutdown") }
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

    /// Closes the socket. A pending read hears `ECANCELED` now; pending writes, connects and
    /// shutdowns complete with `ECANCELED` from libuv.
    public override func close() {
        if isClosed { return }
        let reader = isReading ? onRead : nil
        isReading = false
        onConnection = nil
        onRead = nil
        bufferProvider = nil
        super.close()
        reader?(.failure(UVError(code: UV_ECANCELED.rawValue, operation: "uv_read")))
    }
}

/// A libuv request (`uv_connect_t`, `uv_write_t`, `uv_shutdown_t`) with its completion: the
/// memory is calloc'ed, `data` holds the retained completion, and both go when it completes.
struct Request<R> {
    let pointer: UnsafeMutablePointer<R>

    final class Completion {
        let body: (UVError?) -> Void
        init(_ body: @escaping (UVError?) -> Void) { self.body = body }
    }

    init(_ completion: @escaping (UVError?) -> Void) {
        guard let memory = calloc(1, MemoryLayout<R>.size) else { fatalError("out of memory allocating a libuv request") }
        pointer = memory.bindMemory(to: R.self, capacity: 1)
        UnsafeMutableRawPointer(pointer).assumingMemoryBound(to: uv_req_t.self).pointee.data =
            Unmanaged.passRetained(Completion(completion)).toOpaque()
    }

    /// The request could not start: report `status` through the completion and free it.
    func fail(_ status: Int32, operation: String) {
        let req = UnsafeMutableRawPointer(pointer).assumingMemoryBound(to: uv_req_t.self)
        let completion = Unmanaged<Completion>.fromOpaque(req.pointee.data!).takeRetainedValue()
        free(pointer)
        completion.body(UVError(code: status, operation: operation))
    }

    /// libuv finished the request.
    static func complete(_ raw: UnsafeMutablePointer<R>?, status: Int32, operation: StaticString) {
        guard let raw else { return }
        let req = UnsafeMutableRawPointer(raw).assumingMemoryBound(to: uv_req_t.self)
        let completion = Unmanaged<Completion>.fromOpaque(req.pointee.data!).takeRetainedValue()
        free(raw)
        completion.body(status < 0 ? UVError(code: status, operation: "\(operation)") : nil)
    }
}
