import CSpindleSupport
import SpindleLoop

/// Thrown by a fiber's blocking call when an enclosing ``Fiber/withTimeout(_:_:)`` or
/// ``Fiber/withDeadline(_:_:)`` has expired.
public struct FiberTimeoutError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The error a blocking call throws when its fiber's deadline has passed.
    @inlinable public init() {}
    public var description: String { "the fiber's deadline passed before the blocking call completed" }
}

extension Fiber {
    /// Runs `body` in the running fiber with a time limit: once `duration` has passed, the
    /// blocking call `body` is in (or its next one) throws ``FiberTimeoutError``, which
    /// propagates out of `withTimeout` unless `body` catches it. Code that computes without
    /// blocking is not interrupted (cooperative, like cancellation). Nested limits: the inner
    /// one applies inside it, and an expired outer one still applies after it.
    public static func withTimeout<T>(_ duration: Duration, _ body: () throws -> T) throws -> T {
        let fiber = runningFiber("Fiber.withTimeout")
        try checkInterruption(fiber)
        let scheduler = Scheduler.of(fiber.pointee.sched)
        precondition(fiber.pointee.deadline_depth < 255, "Fiber.withTimeout nested more than 255 deep")
        fiber.pointee.deadline_depth += 1
        let depth = fiber.pointee.deadline_depth
        let timer = scheduler.takeTimer()
        timer.action = .deadline(FiberRef(fiber), depth: depth)
        timer.timer.start(after: duration)
        defer {
            timer.timer.stop()
            scheduler.returnTimer(timer)
            // This scope ends; an outer scope that expired (even while this one ran) still applies.
            fiber.pointee.deadline_depth = depth - 1
            if fiber.pointee.deadline_expired >= depth { fiber.pointee.deadline_expired = 0 }
            fiber.pointee.deadline_passed = fiber.pointee.deadline_expired != 0 ? 1 : 0
        }
        return try body()
    }

    /// Runs `body` with a deadline on the loop's clock; see ``withTimeout(_:_:)``.
    public static func withDeadline<T>(_ deadline: ContinuousClock.Instant, _ body: () throws -> T) throws -> T {
        let remaining = deadline - ContinuousClock.now
        return try withTimeout(remaining > .zero ? remaining : .zero, body)
    }
}

extension Fiber {
    /// Parks the running fiber until the process receives one of `signals` (for example
    /// `[SIGINT, SIGTERM]`) and returns the one that came. Cancellable.
    public static func waitForSignal(_ signals: [Int32]) throws -> Int32 {
        let me = runningFiber("Fiber.waitForSignal")
        try checkInterruption(me)
        let loop = Scheduler.of(me.pointee.sched).loop
        let ref = FiberRef(me)
        var received: Int32 = 0
        let watchers = try signals.map { number in
            let watcher = SignalWatcher(loop: loop)
            try watcher.start(number) { signum in
                if received == 0 { received = signum }
                if ref.isParked { ref.wake(.ready) }
            }
            return watcher
        }
        defer { for watcher in watchers { watcher.close() } }
        let reason = park(me, .signal, detail: 0, cancellable: true)
        try throwIfInterrupted(reason)
        return received
    }
}
