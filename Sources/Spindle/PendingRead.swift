import CSpindleSupport
import Glibc
import SpindleLoop

/// The state of one fiber waiting for data to land in its own buffer: a stream read, a UDP
/// receive. The socket reads into the buffer the caller points it at (and points it away when
/// the read is delivered); the socket's read handler hands the outcome to ``finish(_:)``.
final class PendingRead<Outcome> {
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
}
