import CSpindleSupport
import Glibc
import SpindleLoop

/// A fiber parked until an operation's outcome arrives: Spindle's one pending-operation type.
/// It is used two ways:
/// - A socket keeps one for its reads (a stream read, a UDP receive): ``wait(_:closed:start:stop:)``
///   points the socket at the fiber's buffer and parks, cancellably; the socket's read handler
///   hands the outcome to ``finish(_:)``, which resumes the fiber from the completion itself.
/// - ``await(_:_:)`` makes one per call, for an operation that completes through a closure
///   (connect, shutdown, the file system, the resolver): not cancellable, and the outcome may
///   arrive before the fiber parks.
///
/// A write or a send that has to wait needs neither: its request and outcome stay on the fiber's
/// stack (``Fiber/awaitRequest(_:issue:)``).
final class Pending<Outcome> {
    @exclusivity(unchecked) private var reader: FiberRef?
    @exclusivity(unchecked) private var outcome: Result<Outcome, UVError>?

    /// Parks the running fiber until ``finish(_:)`` delivers. `start` points the socket at the
    /// fiber's buffer and turns reading on; `stop` points it away and turns reading off when
    /// the wait is interrupted (cancelled or timed out), which is then thrown. `what` names the
    /// operation in misuse messages.
    func wait(
        _ what: StaticString, closed: Bool, start: () throws -> Void, stop: () -> Void
    ) throws -> Outcome {
        let me = Fiber.runningFiber(what)
        try Fiber.checkInterruption(me)
        precondition(reader == nil, "\(what): another fiber is already waiting on this socket")
        if closed { throw UVError(code: -ECANCELED, operation: "\(what) on a closed socket") }
        outcome = nil
        try start()
        reader = FiberRef(me)
        let reason = Fiber.park(me, .read, detail: 0, cancellable: true)
        reader = nil
        if reason == .cancelled || reason == .timedOut {
            stop()
            try Fiber.throwIfInterrupted(reason)
        }
        return try outcome.unsafelyUnwrapped.get()
    }

    /// Delivers a read's outcome to the waiting fiber (the caller has pointed the socket away
    /// from its buffer).
    func finish(_ result: Result<Outcome, UVError>) {
        outcome = result
        if let reader, reader.isParked { reader.wakeFromCompletion(.ready) }
    }

    /// Starts an operation whose completion gives a `Result`, and parks the running fiber until
    /// it does. Not cancellable: the operation may own memory on this fiber's stack until then.
    static func await(
        _ reason: Fiber.ParkReason, _ start: (@escaping (Result<Outcome, UVError>) -> Void) -> Void
    ) throws -> Outcome {
        let me = Fiber.runningFiber("a blocking call")
        try Fiber.checkInterruption(me)
        let pending = Pending<Outcome>()
        start { result in
            pending.outcome = result
            if let waiter = pending.reader { waiter.wake(.ready) }
        }
        if pending.outcome == nil {
            pending.reader = FiberRef(me)
            _ = Fiber.park(me, reason, detail: 0)
        }
        return try pending.outcome.unsafelyUnwrapped.get()
    }
}
