extension EventLoop {
    /// Runs `work` on this loop's thread at the end of the next loop iteration (after the I/O
    /// poll), in the order deferred. Work deferred while deferred work runs waits for the turn
    /// after. The loop does not block in the poll while deferred work is pending.
    ///
    /// Call it on the loop's thread; from another thread use ``post(_:)``.
    public func deferToNextTurn(_ work: @escaping () -> Void) {
        preconditionOnLoopThread("EventLoop.deferToNextTurn()")
        precondition(state != .closed, "deferToNextTurn on a closed EventLoop")
        if nextTurn == nil { nextTurn = NextTurnQueue(loop: self) }
        nextTurn!.append(work)
    }
}

/// The queue behind ``EventLoop/deferToNextTurn(_:)``: a check watcher drains it; an idle
/// watcher is active only while it is non-empty, so an empty queue never makes the loop spin.
final class NextTurnQueue {
    /// A closure in a concrete struct: an `Array<() -> Void>` would keep its functions at the
    /// generic (maximal) abstraction, and converting each one in and out allocates a thunk.
    struct Work {
        let run: () -> Void
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
        pending.append(Work(run: work))
        idle.resume()
    }

    private func runPending() {
        guard !pending.isEmpty else { return }
        swap(&pending, &running)
        idle.stop()
        for work in running { work.run() }
        running.removeAll(keepingCapacity: true)
        if !pending.isEmpty { idle.resume() }
    }

    func closeHandles() {
        check.close()
        idle.close()
    }
}
