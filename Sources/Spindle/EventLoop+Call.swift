import CSpindleSupport
import SpindleLoop

extension EventLoop {
    /// Runs `body` in a new fiber on this loop and returns its value to the calling fiber, which
    /// parks meanwhile: its thread keeps running its other fibers. For a fiber of one loop that
    /// needs what another loop owns (a shard's state, a connection pinned there).
    ///
    /// - The request and the answer each cross with one `uv_async_send` (coalesced with any
    ///   other work posted to the same loop); `body` may block as any fiber does.
    /// - Called from a fiber of this same loop, `body` runs in place.
    /// - Cancelling the caller (or its ``Fiber/withTimeout(_:_:)`` expiring) cancels the fiber
    ///   running `body`, cooperatively; the caller still waits for that fiber to end, so nothing
    ///   it produced is lost: a value it returned anyway is returned, its error is thrown (an
    ///   expired timeout throws ``FiberTimeoutError`` in place of the `CancellationError` it
    ///   caused).
    /// - Throws `LoopError.closed` if this loop is closed or closes before `body`
    ///   could start.
    ///
    /// Call it from a fiber; outside one it stops the process, saying so (from a plain thread,
    /// post work with `loop.post { }`).
    public func call<T: Sendable>(name: String? = nil, _ body: @escaping @Sendable () throws -> T) throws -> T {
        let me = Fiber.runningFiber("EventLoop.call")
        let callerLoop = Scheduler.of(me.pointee.sched).loop
        if callerLoop === self { return try body() }
        try Fiber.checkInterruption(me)
        return try CrossLoopCall(caller: me, callerLoop: callerLoop, target: self, name: name, body: body).run()
    }
}

/// The non-generic face of a cross-loop call, which the C callbacks of its three remote nodes
/// reach: the request (to the target loop), the cancel (to the target loop) and the reply (back
/// to the caller's loop). Each node, while queued, holds a reference to the call.
class RemoteCall: @unchecked Sendable {
    let nodes = UnsafeMutablePointer<spindle_remote_work_t>.allocate(capacity: 3)
    var request: UnsafeMutablePointer<spindle_remote_work_t> { nodes }
    var cancel: UnsafeMutablePointer<spindle_remote_work_t> { nodes + 1 }
    var reply: UnsafeMutablePointer<spindle_remote_work_t> { nodes + 2 }

    init() {
        for index in 0..<3 {
            nodes[index] = spindle_remote_work_t(next: nil, run: remoteCallNodeRan, context: nil)
        }
    }

    /// Queues `node` on `loop`, holding a reference to this call until it runs; false if the
    /// loop is closing.
    func post(_ node: UnsafeMutablePointer<spindle_remote_work_t>, to loop: EventLoop) -> Bool {
        node.pointee.context = Unmanaged.passRetained(self).toOpaque()
        if loop.post(remote: node) { return true }
        Unmanaged<RemoteCall>.fromOpaque(node.pointee.context!).release()
        return false
    }

    func requestArrived(closed: Bool) {}
    func cancelArrived(closed: Bool) {}
    func replyArrived() {}

    deinit { nodes.deallocate() }
}

private let remoteCallNodeRan: @convention(c) (UnsafeMutablePointer<spindle_remote_work_t>?, Int32) -> Void = {
    node, closed in
    let node = node.unsafelyUnwrapped
    let call = Unmanaged<RemoteCall>.fromOpaque(node.pointee.context.unsafelyUnwrapped).takeRetainedValue()
    switch node {
    case call.request: call.requestArrived(closed: closed != 0)
    case call.cancel: call.cancelArrived(closed: closed != 0)
    default: call.replyArrived()
    }
}

/// One `EventLoop.call(name:_:)`: the caller's fiber parks on its loop while a
/// fiber of the target loop runs the body.
///
/// Who touches what: `remote`, `remoteDone` and `cancelRequested` only the target's thread; `replied` only the
/// caller's; `outcome` is written on the target's thread before the reply is posted and read on
/// the caller's after it arrived (the inbox's release and acquire order the two).
final class CrossLoopCall<T>: RemoteCall, @unchecked Sendable {
    private let caller: FiberRef
    private unowned(unsafe) let callerLoop: EventLoop
    private let target: EventLoop
    private let name: String?
    private var body: (@Sendable () throws -> T)?
    private var outcome: Result<T, any Error>?
    private var remote: FiberRef?
    private var remoteDone = false
    private var cancelRequested = false
    private var replied = false

    init(
        caller: UnsafeMutablePointer<spindle_fiber_t>, callerLoop: EventLoop, target: EventLoop, name: String?,
        body: @escaping @Sendable () throws -> T
    ) {
        self.caller = FiberRef(caller)
        self.callerLoop = callerLoop
        self.target = target
        self.name = name
        self.body = body
    }

    /// On the caller's fiber: sends the request and parks until the reply.
    func run() throws -> T {
        guard post(request, to: target) else { throw LoopError.closed }
        callerLoop.beginRemoteWait()
        defer { callerLoop.endRemoteWait() }
        var interruption: Fiber.WakeReason?
        while !replied {
            let reason = Fiber.park(
                caller.fiber, .crossLoopCall, detail: target.id, cancellable: interruption == nil)
            if reason == .cancelled || reason == .timedOut, interruption == nil {
                interruption = reason
                _ = post(cancel, to: target)  // a closing target answers the request anyway
            }
        }
        switch outcome.unsafelyUnwrapped {
        case .success(let value):
            return value
        case .failure(let error):
            if interruption == .timedOut, error is CancellationError { throw FiberTimeoutError() }
            throw error
        }
    }

    /// On the target's thread: starts the body's fiber, or answers at once if the loop closed.
    override func requestArrived(closed: Bool) {
        guard !closed else { return finish(.failure(LoopError.closed)) }
        target.spawnDetached(name: name) { [self] in
            remote = Fiber.current
            if cancelRequested { Fiber.current.cancel() }
            let body = self.body.take().unsafelyUnwrapped
            let result = Result { try body() }
            finish(result)
        }
    }

    /// On the target's thread: cancels the body's fiber if it has not finished.
    override func cancelArrived(closed: Bool) {
        cancelRequested = true  // for a fiber spawned but not started yet
        if !remoteDone, let remote { remote.cancel() }
    }

    private func finish(_ result: Result<T, any Error>) {
        remoteDone = true
        remote = nil
        outcome = result
        if !post(reply, to: callerLoop) {
            fatalError("EventLoop.call: the caller's loop (\(callerLoop)) closed while its fiber waited for \(target)")
        }
    }

    /// On the caller's thread: wakes the caller if it is parked for the reply.
    override func replyArrived() {
        replied = true
        if caller.isParked { caller.wake(.ready) }
    }
}
