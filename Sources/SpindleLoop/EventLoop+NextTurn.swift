extension EventLoop {
    /// Runs `work` on this loop's thread at the end of the next loop iteration (after the I/O
    /// poll), in the order deferred. Work deferred while deferred work runs waits for the turn
    /// after. The loop does not block in the poll while deferred work is pending.
    ///
    /// Call it on the loop's thread; from another thread use ``post(_:)``.
    public func deferToNextTurn(_ work: @escaping () -> Void) {
        prepareDeferral()
        nextTurn.unsafelyUnwrapped.append(work)
    }

    /// ``deferToNextTurn(_:)`` for a layer above that has an object to act on and a function
    /// that captures nothing: the loop keeps `object` (retained) and calls `function` with it
    /// (+1: the function takes the reference over), with no closure to build or call through.
    /// (The futures layer completes `nextTurnFuture()`'s future this way.)
    @usableFromInline
    package func deferToNextTurn(_ object: AnyObject, _ function: @convention(c) (UnsafeMutableRawPointer) -> Void) {
        prepareDeferral()
        nextTurn.unsafelyUnwrapped.append(object, function)
    }

    /// Checks that a deferral may be made here and now, and makes the queue on the first one.
    @inline(__always)
    private func prepareDeferral() {
        preconditionOnLoopThread("EventLoop.deferToNextTurn()")
        precondition(state != .closed, "deferToNextTurn on a closed EventLoop")
        if nextTurn == nil { nextTurn = NextTurnQueue(loop: self) }
    }
}

/// The queue behind ``EventLoop/deferToNextTurn(_:)``: a check watcher drains it; an idle
/// watcher is active only while it is non-empty, so an empty queue never makes the loop spin.
final class NextTurnQueue {
    /// A closure in a concrete struct: an `Array<() -> Void>` would keep its functions at the
    /// generic (maximal) abstraction, and converting each one in and out allocates a thunk.
    ///
    /// An entry is either a closure or an object (retained) and a C function that takes it
    /// over.
    struct Work {
        let run: () -> Void
        let object: UnsafeMutableRawPointer?
        let function: (@convention(c) (UnsafeMutableRawPointer) -> Void)?

        func callAsFunction() {
            if let function { function(object.unsafelyUnwrapped) } else { run() }
        }
    }

    // Loop-thread only, one call at a time: no dynamic exclusivity check per deferral.
    @exclusivity(unchecked) private var pending: [Work] = []
    @exclusivity(unchecked) private var running: [Work] = []
    private let check: LoopWatcher
    private let idle: LoopWatcher

    init(loop: EventLoop) {
        check = LoopWatcher(internalFor: loop, kind: .check)
        idle = LoopWatcher(internalFor: loop, kind: .idle)
        check.keepsLoopAlive = false
        check.start { [unowned self] in self.runPending() }
        idle.start {}
        idle.stop()
    }

    var pendingCount: Int { pending.count }

    func append(_ work: @escaping () -> Void) {
        pending.append(Work(run: work, object: nil, function: nil))
        idle.resume()
    }

    func append(_ object: AnyObject, _ function: @convention(c) (UnsafeMutableRawPointer) -> Void) {
        pending.append(Work(run: {}, object: Unmanaged.passRetained(object).toOpaque(), function: function))
        idle.resume()
    }

    private func runPending() {
        guard !pending.isEmpty else { return }
        swap(&pending, &running)
        idle.stop()
        for work in running { work() }
        running.removeAll(keepingCapacity: true)
        if !pending.isEmpty { idle.resume() }
    }

    func closeHandles() {
        check.close()
        idle.close()
    }
}
