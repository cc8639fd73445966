import CLibUV
import Glibc

/// A stream socket on the loop — TCP (``TCPSocket``) or Unix-domain (``PipeSocket``) — with
/// callbacks on the loop's thread: listening, accepting, reading, writing, half-closing.
/// Wraps uv_stream_t; the subclasses add what belongs to their kind (addresses, options).
///
/// Reading follows libuv's model: ``setReadHandler(_:)`` once, then ``startReading()`` /
/// ``stopReading()``; libuv reads straight into ``readTarget``, the reader's own buffer (no
/// copy). Each write names bytes that must stay valid until its completion runs.
/// Closing fails what is pending: the read handler gets `ECANCELED`, and libuv completes pending
/// writes, connects and shutdowns with `ECANCELED`.
public class StreamSocket: LoopHandle {
    // All of this is confined to the loop's thread (every entry checks it): no dynamic
    // exclusivity checks on the read path.
    @exclusivity(unchecked) private var onConnection: ((UVError?) -> Void)?
    @exclusivity(unchecked) private var onRead: ((Result<Int, UVError>) -> Void)?
    /// Where libuv reads next: the waiting reader's buffer. Empty while nobody wants data: data
    /// that arrives then waits in the kernel (reading pauses).
    @exclusivity(unchecked) public var readTarget = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    /// Whether reading is started.
    @exclusivity(unchecked) public private(set) var isReading = false
    /// A read was delivered in the current libuv read cycle: libuv asks for the next buffer at
    /// once, before the reader (a fiber woken, not yet run) can supply one. That "no buffer" is
    /// expected and must not pause reading — pausing and resuming cost two epoll_ctl calls a read.
    @exclusivity(unchecked) private var deliveredThisCycle = false
    /// Reading is on but nobody waits for it, so the handle does not keep the loop running.
    @exclusivity(unchecked) private var idleUnreferenced = false

    var stream: UnsafeMutablePointer<uv_stream_t> {
        UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_stream_t.self)
    }

    // MARK: Server side

    /// Starts listening; `onConnection` runs once per incoming connection (call `accept()`
    /// from it, or later). Wraps uv_listen.
    public final func listen(backlog: Int32 = 511, _ onConnection: @escaping (UVError?) -> Void) throws(UVError) {
        preconditionOnLoopThread("listen")
        self.onConnection = onConnection
        retainWhileActive()
        let status = uv_listen(stream, backlog) { server, status in
            guard let data = server?.pointee.data else { return }
            let socket = LoopHandle.object(data, as: StreamSocket.self)
            socket.onConnection?(status < 0 ? UVError(code: status, operation: "uv_listen") : nil)
        }
        if status < 0 {
            self.onConnection = nil
            releaseActiveRetain()
            throw UVError(code: status, operation: "uv_listen")
        }
    }

    /// Moves a pending connection into `client` (a fresh socket of the same kind), closing
    /// `client` if there is none. Wraps uv_accept.
    final func accept<Client: StreamSocket>(into client: Client) throws(UVError) -> Client {
        preconditionOnLoopThread("accept")
        let status = uv_accept(stream, client.stream)
        if status < 0 {
            client.close()
            throw UVError(code: status, operation: "uv_accept")
        }
        return client
    }

    // MARK: Reading

    /// Sets who hears about reads: `onRead` gets the byte count (0 at end of stream) or the
    /// error. Reads go into ``readTarget``; while it is empty, reading pauses until
    /// ``startReading()`` is called again, and the data waits in the kernel.
    public final func setReadHandler(_ onRead: @escaping (Result<Int, UVError>) -> Void) {
        self.onRead = onRead
    }

    /// Starts reading (the read handlers must be set). Wraps uv_read_start.
    public final func startReading() throws(UVError) {
        preconditionOnLoopThread("startReading")
        precondition(onRead != nil, "startReading() before setReadHandler")
        if isReading {
            referenceAgain()
            return
        }
        // The socket is lent to both callbacks, not retained: libuv calls them only while the
        // handle is open, and a reading socket keeps itself alive (`retainWhileActive()`).
        // Retained, it cost a retain and a release in each callback, two pairs a read (124
        // instructions a fanout io step under callgrind).
        let status = uv_read_start(
            stream,
            { handle, _, buf in
                guard let data = handle?.pointee.data, let buf else { return }
                let target = Unmanaged<StreamSocket>.fromOpaque(data)._withUnsafeGuaranteedRef { $0.readTarget }
                buf.pointee = uv_buf_init(target.baseAddress?.assumingMemoryBound(to: CChar.self), UInt32(target.count))
            },
            { stream, nread, _ in
                guard let data = stream?.pointee.data, nread != 0 else { return }  // 0: EAGAIN, nothing this time
                Unmanaged<StreamSocket>.fromOpaque(data)._withUnsafeGuaranteedRef { $0.didRead(nread) }
            })
        try UVError.check(status, "uv_read_start")
        isReading = true
        retainWhileActive()
    }

    /// What a read delivered (`nread`: a byte count, `UV_EOF`, `UV_ENOBUFS` or another error;
    /// never 0). Touches nothing of this socket after the read handler runs or reading stops:
    /// either may close it and let it go.
    private final func didRead(_ nread: Int) {
        if nread == Int(UV_ENOBUFS.rawValue) {
            // No buffer. Right after a delivery that is the reader not having run yet; data
            // arriving for nobody is not: pause until someone reads (the kernel keeps it).
            if deliveredThisCycle {
                deliveredThisCycle = false
                // Reading stays on, but it must not keep the loop alive by itself: if the
                // reader never reads again (its work is done), run() still ends.
                if !idleUnreferenced {
                    idleUnreferenced = true
                    uv_unref(handle)
                }
            } else {
                stopReading()
            }
            return
        }
        deliveredThisCycle = nread > 0
        if nread == Int(UV_EOF.rawValue) {
            onRead?(.success(0))
        } else if nread < 0 {
            onRead?(.failure(UVError(code: Int32(nread), operation: "uv_read")))
        } else {
            onRead?(.success(nread))
        }
    }

    private func referenceAgain() {
        if idleUnreferenced {
            idleUnreferenced = false
            uv_ref(handle)
        }
    }

    /// Stops reading. Wraps uv_read_stop.
    public final func stopReading() {
        guard isReading else { return }
        referenceAgain()
        isReading = false
        uv_read_stop(stream)
        if onConnection == nil { releaseActiveRetain() }
    }

    // MARK: Writing

    /// Writes all of `bytes`; `completion` gets nil or the error. The bytes must stay valid and
    /// unchanged until `completion` runs. Wraps uv_write.
    public final func write(_ bytes: UnsafeRawBufferPointer, _ completion: @escaping (UVError?) -> Void) {
        preconditionOnLoopThread("write")
        let request = Request<uv_write_t>("uv_write", completion)
        var buffer = uv_buf_init(
            UnsafeMutablePointer(mutating: bytes.baseAddress?.assumingMemoryBound(to: CChar.self)), UInt32(bytes.count))
        let status = uv_write(request.pointer, stream, &buffer, 1) { req, status in
            Request<uv_write_t>.finish(req, status: status)
        }
        if status < 0 { request.fail(status, operation: "uv_write") }
    }

    /// Writes what the kernel takes right now, without queueing; returns the byte count (0 when
    /// the socket buffer is full or earlier writes are still queued). Wraps uv_try_write.
    public final func tryWrite(_ bytes: UnsafeRawBufferPointer) throws(UVError) -> Int {
        preconditionOnLoopThread("tryWrite")
        var buffer = uv_buf_init(
            UnsafeMutablePointer(mutating: bytes.baseAddress?.assumingMemoryBound(to: CChar.self)), UInt32(bytes.count))
        let written = uv_try_write(stream, &buffer, 1)
        if written == UV_EAGAIN.rawValue { return 0 }
        try UVError.check(written, "uv_try_write")
        return Int(written)
    }

    /// Shuts down the sending side after pending writes (the peer reads end of stream).
    /// Wraps uv_shutdown.
    public final func shutdown(_ completion: @escaping (UVError?) -> Void) {
        preconditionOnLoopThread("shutdown")
        let request = Request<uv_shutdown_t>("uv_shutdown", completion)
        let status = uv_shutdown(request.pointer, stream) { req, status in
            Request<uv_shutdown_t>.finish(req, status: status)
        }
        if status < 0 { request.fail(status, operation: "uv_shutdown") }
    }

    /// Closes the socket. A pending read hears `ECANCELED` now; pending writes, connects and
    /// shutdowns complete with `ECANCELED` from libuv.
    public override func close() {
        if isClosed { return }
        let reader = isReading ? onRead : nil
        isReading = false
        onConnection = nil
        onRead = nil
        readTarget = UnsafeMutableRawBufferPointer(start: nil, count: 0)
        super.close()
        reader?(.failure(UVError(code: UV_ECANCELED.rawValue, operation: "uv_read")))
    }
}
