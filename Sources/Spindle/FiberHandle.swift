import CSpindleSupport
import Glibc
import SpindleLoop

/// The type-erased part of a fiber's body: what the entry function runs.
class FiberBody {
    let id: UInt64
    /// The control block while the fiber is live; nil once it has finished.
    var fiber: UnsafeMutablePointer<spindle_fiber_t>?
    /// Fibers parked in ``FiberHandle/join()`` on this one.
    var joiners = WaitList()

    init(id: UInt64) { self.id = id }

    func run() { fatalError("abstract") }
}

/// A fiber's body and its result.
final class FiberTask<T>: FiberBody {
    private var body: (() throws -> T)?
    var result: Result<T, any Error>?

    init(body: @escaping () throws -> T, id: UInt64) {
        self.body = body
        super.init(id: id)
    }

    override func run() {
        let body = self.body.take()!
        do {
            result = .success(try body())
        } catch {
            result = .failure(error)
        }
        fiber = nil
        while let joiner = joiners.popFirst() {
            FiberRef(joiner).wake(.ready)
        }
    }
}

/// The handle returned by `spawn`: join the fiber, cancel it, or read its result.
///
/// Handles are values; copies refer to the same fiber. Use them on the fiber's loop thread.
public struct FiberHandle<T> {
    let task: FiberTask<T>

    /// The fiber's id, unique on its loop.
    public var id: UInt64 { task.id }

    /// Whether the fiber's body has returned or thrown.
    public var isFinished: Bool { task.result != nil }

    /// The body's outcome once finished; nil while it runs. Never blocks.
    public var result: Result<T, any Error>? { task.result }

    /// The fiber's state right now.
    public var state: Fiber.State {
        guard let fiber = task.fiber else { return .finished }
        return Fiber.State(fiber)
    }

    /// Waits for the fiber to finish and returns its value or rethrows its error.
    ///
    /// Inside a fiber it parks the caller until the target finishes. Outside a fiber it returns
    /// the result if the target has already finished (after `loop.run()` returned, say) and
    /// otherwise stops the process with a clear message, since blocking the loop's thread would
    /// deadlock it. Called from a thread other than the loop's, it stops the process too.
    /// Throws `CancellationError` if the *calling* fiber is cancelled while it waits.
    public func join() throws -> T {
        if let result = task.result { return try result.get() }
        guard let me = spindle_current_fiber() else {
            fatalError("FiberHandle.join() called outside a fiber while fiber #\(task.id) is still \(state): "
                + "joining would block the loop's thread; join from inside a fiber, or read `result` "
                + "after loop.run() returns")
        }
        if let target = task.fiber, target.pointee.sched != me.pointee.sched {
            fatalError("FiberHandle.join(): fiber #\(task.id) belongs to another loop; fibers never migrate, "
                + "so join it from a fiber of its own loop")
        }
        precondition(task.fiber != me, "FiberHandle.join(): fiber #\(task.id) joined itself")
        if me.pointee.cancelled != 0 { throw CancellationError() }
        task.joiners.append(me)
        let reason = Fiber.park(me, .join, detail: task.id)
        if reason != .ready {
            if task.joiners.contains(me) { task.joiners.remove(me) }
            if reason == .cancelled { throw CancellationError() }
        }
        return try task.result!.get()
    }

    /// Asks the fiber to stop: its current or next blocking call throws `CancellationError`.
    /// Cancellation is cooperative — a fiber is never unwound by force. Cancelling a finished
    /// fiber does nothing.
    public func cancel() {
        guard let fiber = task.fiber else { return }
        fiber.pointee.cancelled = 1
        let ref = FiberRef(fiber)
        if ref.isParked { ref.wake(.cancelled) }
    }
}
