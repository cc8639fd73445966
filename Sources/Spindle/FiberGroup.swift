import CSpindleSupport
import SpindleLoop

/// Children spawned in ``withFiberGroup(_:)``: they all finish before it returns, and the first
/// one to fail cancels the rest.
public final class FiberGroup {
    @exclusivity(unchecked) private var children: [FiberHandle<Void>] = []
    @exclusivity(unchecked) private var running = 0
    @exclusivity(unchecked) private var waiter: FiberRef?
    @exclusivity(unchecked) private(set) var firstError: (any Error)?

    fileprivate init() {}

    /// Spawns a child on the running fiber's loop. If it throws, every other child is cancelled
    /// and ``withFiberGroup(_:)`` rethrows its error once all children are done.
    public func spawn(name: String? = nil, stackSize: Int? = nil, _ body: @escaping () throws -> Void) {
        running += 1
        let child = Fiber.spawn(name: name, stackSize: stackSize) { [self] in
            do {
                try body()
            } catch {
                childFailed(error)
            }
            childFinished()
        }
        children.append(child)
    }

    /// Cancels every child that is still running.
    public func cancelAll() {
        for child in children where !child.isFinished { child.cancel() }
    }

    private func childFailed(_ error: any Error) {
        guard firstError == nil else { return }
        firstError = error
        cancelAll()
    }

    private func childFinished() {
        running -= 1
        if running == 0, let waiter, waiter.isParked {
            self.waiter = nil
            waiter.wake(.ready)
        }
    }

    /// Parks until every child has finished. Cancelling the waiting fiber cancels the children;
    /// it still waits for them (children never outlive their group).
    fileprivate func waitForAll() {
        let me = Fiber.runningFiber("withFiberGroup")
        if me.pointee.cancelled != 0 || me.pointee.deadline_passed != 0 { cancelAll() }
        while running > 0 {
            waiter = FiberRef(me)
            if Fiber.park(me, .join, detail: 0, cancellable: true) == .cancelled { cancelAll() }
        }
        waiter = nil
    }
}

/// Runs `body` with a group for spawning child fibers, and returns when `body` and every child
/// have finished. The first child that throws cancels the others and its error is rethrown
/// (unless `body` itself threw, whose error wins); if `body` throws, the children are cancelled
/// and awaited first. Cancellation is cooperative: a cancelled child stops at its next blocking
/// call.
public func withFiberGroup<T>(_ body: (FiberGroup) throws -> T) throws -> T {
    _ = Fiber.runningFiber("withFiberGroup")
    let group = FiberGroup()
    let result = Result { try body(group) }
    if case .failure = result { group.cancelAll() }
    group.waitForAll()
    if case .success = result, let error = group.firstError { throw error }
    return try result.get()
}
