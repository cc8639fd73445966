import Glibc
import SpindleCallbacks
import SpindleLoop

// Future-returning forms of the callback layer's operations: each completes a promise from the
// operation's one callback, so a future costs what the callback costs plus the future itself.

extension Callbacks.StreamConnection {
    /// Reads what is available into `buffer` (which must stay valid until the future
    /// completes): the byte count, 0 at end of stream.
    ///
    /// Allocates nothing while the loop runs, once reads have succeeded: the future of a read
    /// that its caller dropped is kept by the loop after the read's callbacks have run, and
    /// handed out again, pending, by a later read (of any connection).
    @inlinable @inline(__always)
    public func read(into buffer: UnsafeMutableRawBufferPointer, file: StaticString = #fileID, line: UInt = #line)
        -> Future<Int>
    {
        // Inlined into the caller, as `LoopTimer.fire(after:)` is. The thread is checked before
        // the loop's spare future is taken.
        stream.preconditionOnLoopThread("StreamConnection.read(into:)")
        let future = Future<Int>.makeSpareOrNew(loop: stream.lentLoop, file: file, line: line)
        read(into: buffer, holding: future) { slot, result in
            Future<Int>.completeAndKeep(slot.take().unsafelyUnwrapped, result.mapError { $0 as any Error })
        }
        return future
    }

    /// Writes all of `bytes` (which must stay valid until the future completes).
    ///
    /// When the kernel takes all the bytes at once, the future comes back already succeeded:
    /// on the loop's thread while it runs, the loop's one succeeded `Future<Void>` (see
    /// ``SpindleLoop/EventLoop/makeSucceededFuture(_:file:line:)``), so such a write allocates
    /// nothing.
    public func write(_ bytes: UnsafeRawBufferPointer, file: StaticString = #fileID, line: UInt = #line) -> Future<Void>
    {
        let written: Int
        do {
            written = try stream.tryWrite(bytes)
        } catch {
            return stream.loop.makeFailedFuture(error, file: file, line: line)
        }
        if written == bytes.count { return stream.loop.makeSucceededFuture((), file: file, line: line) }
        let rest = UnsafeRawBufferPointer(rebasing: bytes[written...])
        return stream.loop.future(file: file, line: line) { promise in write(rest) { promise.complete($0) } }
    }

    /// Writes all of `bytes`.
    public func write(_ bytes: [UInt8], file: StaticString = #fileID, line: UInt = #line) -> Future<Void> {
        stream.loop.future(file: file, line: line) { promise in write(bytes) { promise.complete($0) } }
    }

    /// Half-closes after pending writes.
    public func shutdown(file: StaticString = #fileID, line: UInt = #line) -> Future<Void> {
        stream.loop.future(file: file, line: line) { promise in shutdown { promise.complete($0) } }
    }
}

extension Callbacks.TCPConnection {
    /// Connects to `address`.
    public static func connect(
        to address: SocketAddress, loop: EventLoop, file: StaticString = #fileID, line: UInt = #line
    ) -> Future<Callbacks.TCPConnection> {
        loop.future(file: file, line: line) { promise in connect(to: address, loop: loop) { promise.complete($0) } }
    }
}

extension Callbacks.PipeConnection {
    /// Connects to the Unix-domain socket at `path`.
    public static func connect(
        to path: String, loop: EventLoop, file: StaticString = #fileID, line: UInt = #line
    ) -> Future<Callbacks.PipeConnection> {
        loop.future(file: file, line: line) { promise in connect(to: path, loop: loop) { promise.complete($0) } }
    }
}

extension Callbacks.DatagramSocket {
    /// Receives the next datagram into `buffer`: its length and sender.
    public func receive(
        into buffer: UnsafeMutableRawBufferPointer, file: StaticString = #fileID, line: UInt = #line
    ) -> Future<(count: Int, from: SocketAddress)> {
        socket.loop.future(file: file, line: line) { promise in receive(into: buffer) { promise.complete($0) } }
    }

    /// Sends one datagram.
    public func send(
        _ bytes: [UInt8], to address: SocketAddress, file: StaticString = #fileID, line: UInt = #line
    ) -> Future<Void> {
        socket.loop.future(file: file, line: line) { promise in send(bytes, to: address) { promise.complete($0) } }
    }
}

extension EventLoop {
    /// A future that succeeds after `delay` (a one-shot loop timer).
    public func scheduleFuture(after delay: Duration, file: StaticString = #fileID, line: UInt = #line) -> Future<Void>
    {
        future(file: file, line: line) { promise in _ = schedule(after: delay) { promise.succeed(()) } }
    }

    /// A future that succeeds at the end of the next loop iteration (``/SpindleLoop/EventLoop/deferToNextTurn(_:)``).
    ///
    /// Allocates nothing while the loop runs, once deferrals have completed: the future of a
    /// deferral that its caller dropped (it is held only by the loop) is kept by the loop after
    /// its callbacks have run, and handed out again, pending, by a later `nextTurnFuture()` (as
    /// ``SpindleLoop/LoopTimer/fire(after:file:line:)`` reuses its own).
    @inlinable @inline(__always)
    public func nextTurnFuture(file: StaticString = #fileID, line: UInt = #line) -> Future<Void> {
        // Inlined into the caller, as `fire(after:)` is. The loop holds the future itself until
        // the turn and calls a C function with it: no closure to call through (cheaper than
        // `{ promise.succeed(()) }`, which Swift already made without an allocation, the
        // future being its one capture). The thread is checked before the
        // loop's spare future is taken.
        preconditionOnLoopThread("EventLoop.nextTurnFuture()")
        let future = Future<Void>.makeSpareOrNew(loop: Unmanaged.passUnretained(self), file: file, line: line)
        deferToNextTurn(future) { raw in
            Future<Void>.completeAndKeep(Unmanaged<Future<Void>>.fromOpaque(raw).takeRetainedValue(), .success(()))
        }
        return future
    }

    /// Resolves `host` to its addresses (with `port`).
    public func resolve(_ host: String, port: Int, file: StaticString = #fileID, line: UInt = #line) -> Future<
        [SocketAddress]
    > {
        future(file: file, line: line) { promise in
            Resolver.resolve(host, port: port, on: self) { promise.complete($0) }
        }
    }
}

extension LoopTimer {
    /// Starts this timer once (replacing its callback) and returns a future that succeeds when
    /// it fires: a repeated delay on one handle, without a new timer each time.
    ///
    /// A fire allocates nothing while the loop runs, once fires have completed: the future of a
    /// fire that its caller dropped (it is held only by the timer) is kept by the loop after its
    /// callbacks have run, and handed out again, pending, by a later fire (as
    /// ``SpindleLoop/EventLoop/nextTurnFuture(file:line:)`` and a read reuse theirs).
    ///
    /// A fire that cannot happen any more fails its future with `ECANCELED`, saying why: the
    /// timer was stopped or closed, its callback was replaced (`setCallback(_:)`),
    /// or `fire(after:)` was called again before it fired (the timer then fires once, for the
    /// new future).
    @inlinable @inline(__always)
    public func fire(after delay: Duration, file: StaticString = #fileID, line: UInt = #line) -> Future<Void> {
        // The future waits in the timer's payload and the callback captures nothing. Inlined
        // into the caller (where the origin is a constant); the first fire sets the callback
        // out of line. The thread is checked before the timer's payload or the loop's spare
        // future is touched.
        preconditionOnLoopThread("LoopTimer.fire(after:)")
        if _fastPath(hasCallback(tag: Self.fireTag)) {
            if let earlier = takePayload() {
                Self.cancelFire(earlier, "fire(after:) was called again before the timer fired")
            }
        } else {
            setFireCallback()
        }
        let future = Future<Void>.makeSpareOrNew(loop: lentLoop, file: file, line: line)
        setPayload(future)
        start(after: delay)
        return future
    }

    /// Sets ``fireCallback`` as the callback, and a canceller that fails a fire's future.
    @usableFromInline
    func setFireCallback() {
        setCallback(Self.fireCallback, tag: Self.fireTag)
        setPayloadCanceller { payload, reason in LoopTimer.cancelFire(payload, reason.description) }
    }

    /// Fails the pending future of a fire that will not happen, saying why.
    @usableFromInline
    static func cancelFire(_ payload: AnyObject, _ reason: String) {
        let future = unsafeDowncast(payload, to: Future<Void>.self)
        guard !future.isComplete else { return }
        future.complete(.failure(UVError(code: -ECANCELED, operation: "LoopTimer.fire(after:): \(reason)")))
    }

    /// Names ``fireCallback`` on a timer (see `hasCallback(tag:)`).
    @inlinable static var fireTag: Int { 1 }

    /// The callback of a timer started by ``fire(after:file:line:)``: completes the future it
    /// finds in the timer's payload. Set once, not on every fire.
    static func fireCallback(_ timer: LoopTimer) {
        // Moved out of the slot: this reference keeps the future alive while it completes.
        guard let fired = timer.takePayload() else { return }
        Future<Void>.completeAndKeep(fired, .success(()))
    }
}

extension FileSystem {
    /// Opens `path` (`flags` as for open(2)); the descriptor.
    public static func open(
        _ path: String, flags: Int32, mode: Int32 = 0o644, on loop: EventLoop, file: StaticString = #fileID,
        line: UInt = #line
    ) -> Future<Int32> {
        loop.future(file: file, line: line) { promise in
            open(path, flags: flags, mode: mode, on: loop) { promise.complete($0) }
        }
    }

    /// Reads up to `buffer.count` bytes at `offset` (-1: the current position); the count.
    public static func read(
        _ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int64 = -1, on loop: EventLoop,
        file: StaticString = #fileID, line: UInt = #line
    ) -> Future<Int> {
        loop.future(file: file, line: line) { promise in
            read(fd, into: buffer, at: offset, on: loop) { promise.complete($0) }
        }
    }

    /// Writes `bytes` at `offset` (-1: the current position); the count written.
    public static func write(
        _ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int64 = -1, on loop: EventLoop,
        file: StaticString = #fileID, line: UInt = #line
    ) -> Future<Int> {
        loop.future(file: file, line: line) { promise in write(fd, bytes, at: offset, on: loop) { promise.complete($0) }
        }
    }

    /// Flushes `fd`'s data and metadata to the device.
    public static func fsync(_ fd: Int32, on loop: EventLoop, file: StaticString = #fileID, line: UInt = #line)
        -> Future<Void>
    {
        loop.future(file: file, line: line) { promise in fsync(fd, on: loop) { promise.complete($0) } }
    }

    /// Closes `fd`.
    public static func close(_ fd: Int32, on loop: EventLoop, file: StaticString = #fileID, line: UInt = #line)
        -> Future<Void>
    {
        loop.future(file: file, line: line) { promise in close(fd, on: loop) { promise.complete($0) } }
    }

    /// The status of `path`.
    public static func stat(_ path: String, on loop: EventLoop, file: StaticString = #fileID, line: UInt = #line)
        -> Future<Status>
    {
        loop.future(file: file, line: line) { promise in stat(path, on: loop) { promise.complete($0) } }
    }
}

extension EventLoop {
    /// A future completed by what `start` does with its promise, made at `file`:`line` (the
    /// adapter's caller: a dropped promise names the caller's line, not the adapter's).
    @inlinable
    func future<Value>(
        file: StaticString, line: UInt, _ start: (Promise<Value>) -> Void
    ) -> Future<Value> {
        let promise = makePromise(of: Value.self, file: file, line: line)
        start(promise)
        return promise.futureResult
    }
}

extension Promise where Value == Void {
    /// Completes the future with `error`, or with success when it is nil (as the callback
    /// layer reports writes and shutdowns).
    @inlinable public func complete(_ error: UVError?) {
        if let error { fail(error) } else { succeed(()) }
    }
}
