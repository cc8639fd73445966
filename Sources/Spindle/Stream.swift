import CSpindleSupport
import Glibc
import SpindleLoop

/// A connected stream for fibers — TCP (``TCPConnection``) or Unix-domain
/// (``PipeConnection``): straight-line reads and writes that park the calling fiber.
///
/// Reads go straight into the caller's buffer (libuv reads into it; nothing is copied). One
/// fiber reads at a time; any fiber of the loop may write. Neither a read that parks nor a
/// write allocates: what the kernel takes at once is written without parking, and the rest
/// waits in a libuv request on the writing fiber's own stack.
public class StreamConnection {
    /// The underlying libuv stream.
    public let stream: StreamSocket
    private let pending = Pending<Int>()

    init(stream: StreamSocket) {
        self.stream = stream
        // The handler holds the pending read, not this connection: a reader runs at once from
        // inside the read's callback (see `FiberRef.wakeFromCompletion`), and a connection it
        // drops there must close there, not when the callback returns.
        stream.setReadHandler { [unowned(unsafe) stream = self.stream, pending = self.pending] result in
            StreamConnection.readFinished(result, stream: stream, pending: pending)
        }
    }

    /// Reads what is available (at least one byte, up to `buffer.count`) into `buffer`, parking
    /// the fiber until data arrives. Returns 0 at end of stream. Throws the read error (a reset
    /// peer: `ECONNRESET`; a connection closed meanwhile: `ECANCELED`), `CancellationError` or
    /// ``FiberTimeoutError``.
    public final func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard buffer.count > 0 else { return 0 }
        return try pending.wait(
            "read(into:)", closed: stream.isClosed,
            start: {
                stream.readTarget = buffer
                try stream.startReading()
            },
            stop: {
                stream.readTarget = UnsafeMutableRawBufferPointer(start: nil, count: 0)
                stream.stopReading()
            })
    }

    /// Reads into an array's storage; see ``read(into:)-(UnsafeMutableRawBufferPointer)``.
    public final func read(into bytes: inout [UInt8]) throws -> Int {
        try bytes.withUnsafeMutableBytes { try read(into: $0) }
    }

    /// Reads until `buffer` is full; returns fewer bytes only at end of stream.
    public final func read(exactly buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        var filled = 0
        while filled < buffer.count {
            let count = try read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled...]))
            if count == 0 { break }
            filled += count
        }
        return filled
    }

    private static func readFinished(_ result: Result<Int, UVError>, stream: StreamSocket, pending: Pending<Int>) {
        // Reading stays on after a read, so a fiber that reads again soon costs no epoll
        // re-registration; data arriving meanwhile finds no buffer and pauses reading.
        stream.readTarget = UnsafeMutableRawBufferPointer(start: nil, count: 0)  // later data waits for the next read
        if case .failure = result { stream.stopReading() } else if case .success(0) = result { stream.stopReading() }
        pending.finish(result)
    }

    /// Writes all of `bytes`, parking the fiber until the kernel has taken them. Throws the
    /// write error (`EPIPE` after the peer closed, `ECANCELED` if the connection is closed
    /// meanwhile). Not interrupted by cancellation or a timeout: libuv owns the bytes until the
    /// write ends, so close the connection to end it early.
    public final func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard bytes.count > 0 else { return }
        let written = try stream.tryWrite(bytes)
        if written == bytes.count { return }
        try writeQueued(UnsafeRawBufferPointer(rebasing: bytes[written...]))
    }

    /// What the kernel did not take at once, written through a libuv request while the fiber
    /// waits. Out of line, so that `write`'s common path (the kernel takes every byte) keeps a
    /// small frame: a wider one pushed the frames below it onto other stack lines.
    @inline(never)
    final func writeQueued(_ rest: UnsafeRawBufferPointer) throws {
        try Fiber.awaitRequest("uv_write") { completion, inFlight in
            stream.write(rest, completion: completion, inFlight: inFlight)
        }
    }

    /// Writes all of `bytes`.
    public final func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Writes the UTF-8 of `text`.
    public final func write(_ text: String) throws {
        var text = text
        try text.withUTF8 { try write(UnsafeRawBufferPointer($0)) }
    }

    /// Half-closes: the peer reads end of stream; this side can still read.
    public final func shutdown() throws {
        try Fiber.awaitCompletion(.write) { done in stream.shutdown(done) }
    }

    /// Closes the connection; a fiber reading it gets `ECANCELED`.
    public final func close() { stream.close() }

    deinit {
        // Nobody can use this stream any more: close it, so that data arriving later (reading
        // stays on between reads) does not look for a reader that is gone.
        // Stop reading first: closing a reading stream reports ECANCELED to its read handler,
        // which points back at this object.
        if stream.loop.isOnLoopThread {
            stream.stopReading()
            stream.close()
        }
    }

    /// Connects `socket` with `start` (libuv's connect for its kind), parking the running fiber;
    /// closes the socket and throws if the connection fails.
    static func connecting<Socket: StreamSocket>(
        _ socket: Socket, _ start: (Socket, @escaping (UVError?) -> Void) -> Void
    ) throws -> Socket {
        do {
            try Fiber.awaitCompletion(.connect) { done in start(socket, done) }
        } catch {
            socket.close()
            throw error
        }
        return socket
    }
}

extension Fiber {
    /// The outcome of a libuv request that a fiber waits for, next to the request on the
    /// fiber's stack.
    struct RequestWaiter {
        var fiber: UnsafeMutablePointer<spindle_fiber_t>
        var status: Int32 = 0
    }

    /// Issues a libuv request and parks until it completes; throws its error. `issue` starts
    /// it (through SpindleLoop, which keeps the request in its own frame on this fiber's stack,
    /// so nothing is allocated) with the completion given, then calls the `inFlight` given with
    /// libuv's status and returns its result. Not cancellable: the request and its bytes must
    /// stay put until libuv is done.
    static func awaitRequest(
        _ operation: @autoclosure () -> String,
        issue: (RawCompletion, _ inFlight: (Int32) -> Int32) -> Int32
    ) throws {
        let me = runningFiber("a blocking I/O call")
        var waiter = RequestWaiter(fiber: me)
        let status = withUnsafeMutablePointer(to: &waiter) { waiter in
            issue(RawCompletion(context: UnsafeMutableRawPointer(waiter), callback: requestFinished)) { started in
                if started < 0 { return started }
                _ = park(me, .write, detail: 0, cancellable: false)
                return waiter.pointee.status
            }
        }
        if status < 0 { throw UVError(code: status, operation: operation()) }
    }
}

/// The callback of a request issued by ``Fiber/awaitRequest(_:issue:)``: records the status
/// and wakes the fiber.
private let requestFinished: RawCompletion.Callback = { request, status in
    let waiter = RawCompletion.context(of: request).assumingMemoryBound(to: Fiber.RequestWaiter.self)
    waiter.pointee.status = status
    FiberRef(waiter.pointee.fiber).wake(.ready)
}

/// The connections that arrived at a listening stream and the fibers waiting for them.
///
/// Connections are accepted as they arrive, from libuv's connection callback, and queued: a
/// listener whose connection callback leaves a connection unaccepted stops being polled until
/// it is accepted, so accepting later, in the fiber, took one connection per loop turn. During a
/// burst of new clients the kernel's accept queue (the backlog) then filled, and the clients
/// whose handshakes it dropped waited a second or more for their retransmit. Past
/// ``eagerLimit`` accepted connections that no fiber has taken, the queue stops accepting
/// eagerly, and the kernel's backlog holds the rest again.
final class AcceptQueue<Socket: StreamSocket> {
    /// Connections accepted and not yet taken, with an accept error in their place if one
    /// failed; taken from `head`.
    @exclusivity(unchecked) private var ready: [Result<Socket, UVError>] = []
    @exclusivity(unchecked) private var head = 0
    /// libuv holds an arrived connection that was not accepted (the queue was full): listening
    /// is paused until it is.
    @exclusivity(unchecked) private var deferred = false
    @exclusivity(unchecked) private var listenError: UVError?
    @exclusivity(unchecked) private var waiters = WaitList()
    private let acceptOne: () throws(UVError) -> Socket

    /// Accepted connections that no fiber has taken, past which the kernel's backlog holds the
    /// rest.
    static var eagerLimit: Int { 4_096 }

    /// `acceptOne` accepts one connection from the listening socket (its `accept()`).
    init(_ acceptOne: @escaping () throws(UVError) -> Socket) { self.acceptOne = acceptOne }

    /// Waits for a connection and returns it. Throws the listen error, `ECANCELED` once
    /// `closed()` is true, `CancellationError`, ``FiberTimeoutError``.
    func accept(_ what: StaticString, closed: () -> Bool) throws -> Socket {
        let me = Fiber.runningFiber(what)
        while true {
            try Fiber.checkInterruption(me)
            if let listenError { throw listenError }
            if closed() { throw UVError(code: -ECANCELED, operation: "accept on a closed listener") }
            if deferred, ready.count - head < Self.eagerLimit {
                // Room again: take the connection libuv held, which resumes listening.
                deferred = false
                acceptNow()
            }
            if head < ready.count {
                let next = ready[head]
                head += 1
                if head == ready.count {
                    ready.removeAll(keepingCapacity: true)
                    head = 0
                }
                return try next.get()
            }
            waiters.append(me)
            let reason = Fiber.park(me, .accept, detail: 0, cancellable: true)
            if reason == .cancelled || reason == .timedOut {
                waiters.remove(me)
                try Fiber.throwIfInterrupted(reason)
            }
        }
    }

    /// The listening socket's connection callback: accepts the connection now, unless
    /// ``eagerLimit`` connections are already waiting to be taken.
    func arrived(_ error: UVError?) {
        if let error {
            listenError = error
        } else if ready.count - head < Self.eagerLimit {
            acceptNow()
        } else {
            deferred = true
        }
        if let waiter = waiters.popFirst() { FiberRef(waiter).wake(.ready) }
    }

    /// Accepts one connection into the queue (a failed accept is queued as its error, for the
    /// fiber that takes it).
    private func acceptNow() { ready.append(Result { () throws(UVError) in try acceptOne() }) }

    /// The listener closed: the connections no fiber took are closed, and every waiting fiber
    /// wakes (and throws `ECANCELED`).
    func wakeAll() {
        for case .success(let socket) in ready[head...] { socket.close() }
        ready.removeAll()
        head = 0
        while let waiter = waiters.popFirst() { FiberRef(waiter).wake(.closed) }
    }
}
