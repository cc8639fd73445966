import CSpindleSupport
import Glibc
import SpindleLoop

/// The state of one fiber waiting for data to land in its own buffer: a TCP read, a UDP
/// receive. libuv asks ``target`` for memory before each read (empty: nobody is reading, so
/// reading pauses), and the socket's read handler hands its outcome to ``finish(_:)``.
final class PendingRead<Outcome> {
    /// Where the next read goes; empty while no fiber waits.
    @exclusivity(unchecked) private(set) var target = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    @exclusivity(unchecked) private var reader: FiberRef?
    @exclusivity(unchecked) private var outcome: Result<Outcome, UVError>?

    /// Parks the running fiber until ``finish(_:)`` delivers, with `buffer` as the target.
    /// `start` turns reading on; `stop` turns it off when the wait is interrupted (cancelled or
    /// timed out), which is then thrown. `what` names the operation in misuse messages.
    func wait(
        into buffer: UnsafeMutableRawBufferPointer, _ what: StaticString, closed: Bool,
        start: () throws -> Void, stop: () -> Void
    ) throws -> Outcome {
        let me = Fiber.runningFiber(what)
        try Fiber.checkInterruption(me)
        precondition(reader == nil, "\(what): another fiber is already waiting on this socket")
        if closed { throw UVError(code: -ECANCELED, operation: "\(what) on a closed socket") }
        target = buffer
        outcome = nil
        try start()
        reader = FiberRef(me)
        let reason = Fiber.park(me, .read, detail: 0, cancellable: true)
        reader = nil
        target = UnsafeMutableRawBufferPointer(start: nil, count: 0)
        if reason == .cancelled || reason == .timedOut {
            stop()
            try Fiber.throwIfInterrupted(reason)
        }
        return try outcome.unsafelyUnwrapped.get()
    }

    /// Delivers a read's outcome to the waiting fiber. Later data finds no target.
    func finish(_ result: Result<Outcome, UVError>) {
        target = UnsafeMutableRawBufferPointer(start: nil, count: 0)
        outcome = result
        if let reader, reader.isParked { reader.wake(.ready) }
    }
}
