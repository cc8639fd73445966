import CSpindleSupport
import Glibc
import SpindleLoop

/// A fiber's body and the outcome it leaves: what the entry function runs.
///
/// Nothing stored here depends on the fiber's result type. Generic fields such as
/// `Result<T, Error>?` make the runtime look up generic metadata on every run and deinit, which
/// costs more than the whole switch path; instead the closure is kept as its two words, the
/// value as `Any` (inline for small values), and `invoke` is a thin function made where the
/// spawn is specialised. Bodies whose handle was dropped are reused by the scheduler, so a
/// fire-and-forget spawn allocates only the closure's own context.
@usableFromInline
final class FiberBody {
    /// The fiber's id (set when it is started).
    @exclusivity(unchecked) var id: UInt64 = 0
    /// The control block while the fiber is live; nil once it has finished.
    @exclusivity(unchecked) var fiber: UnsafeMutablePointer<spindle_fiber_t>?
    /// Fibers parked in ``FiberHandle/join()`` on this one.
    @exclusivity(unchecked) var joiners = WaitList()
    /// Whether the body has returned or thrown.
    @exclusivity(unchecked) var isFinished = false
    /// Whether `value` or `error` holds something (so `reset()` must clear it).
    @exclusivity(unchecked) @usableFromInline var hasOutcome = false
    /// The body's return value once it returned.
    @exclusivity(unchecked) @usableFromInline var value: Any?
    /// The body's error once it threw.
    @exclusivity(unchecked) @usableFromInline var error: (any Error)?
    /// The body closure, taken apart into its function and context.
    @exclusivity(unchecked) @usableFromInline var bodyFunction: UnsafeRawPointer?
    @exclusivity(unchecked) @usableFromInline var bodyContext: AnyObject?
    /// Calls the body with its real type; set by ``setBody(_:)``. A metatype, not a closure:
    /// storing it allocates nothing.
    @exclusivity(unchecked) @usableFromInline var invoker: (any FiberInvoker.Type)?

    @usableFromInline init() {}

    @inlinable
    func setBody<T>(_ body: @escaping () throws -> T) {
        // A thick function is exactly these two words; the cast keeps the context retained.
        let words = unsafeBitCast(body, to: ClosureWords.self)
        bodyFunction = words.function
        bodyContext = words.context
        invoker = TypedInvoker<T>.self
    }

    @inlinable
    func invokeTyped<T>(_: T.Type) {
        // Move the context out (no retain): the captures go with `body`, before the fiber ends.
        let words = ClosureWords(function: bodyFunction.unsafelyUnwrapped, context: bodyContext.take())
        bodyFunction = nil
        let body = unsafeBitCast(words, to: (() throws -> T).self)
        do {
            if T.self == Void.self {
                // Nothing to keep: skip boxing `()` into an existential.
                _ = try body()
            } else {
                value = try body()
                hasOutcome = true
            }
        } catch {
            self.error = error
            hasOutcome = true
        }
    }

    /// Runs the body, then wakes every joiner.
    func run() {
        let invoker = self.invoker.take().unsafelyUnwrapped
        invoker.invoke(self)
        isFinished = true
        fiber = nil
        while let joiner = joiners.popFirst() {
            FiberRef(joiner).wake(.ready)
        }
    }

    /// Makes a finished body ready for another spawn.
    func reset() {
        if hasOutcome {
            value = nil
            error = nil
            hasOutcome = false
        }
        isFinished = false
        id = 0
    }

    /// The outcome as a `Result`, once finished.
    func result<T>(as _: T.Type) -> Result<T, any Error>? {
        guard isFinished else { return nil }
        if let error { return .failure(error) }
        if T.self == Void.self { return .success(() as! T) }
        return .success(value as! T)
    }
}

/// Runs a ``FiberBody`` whose closure returns some type, chosen when the fiber is spawned.
@usableFromInline
protocol FiberInvoker {
    static func invoke(_ body: FiberBody)
}

@usableFromInline
enum TypedInvoker<T>: FiberInvoker {
    @usableFromInline
    static func invoke(_ body: FiberBody) { body.invokeTyped(T.self) }
}

/// The two words of a Swift closure value: its function and its (reference-counted) context.
@usableFromInline
struct ClosureWords {
    @usableFromInline var function: UnsafeRawPointer
    @usableFromInline var context: AnyObject?

    @inlinable init(function: UnsafeRawPointer, context: AnyObject?) {
        self.function = function
        self.context = context
    }
}

/// The handle returned by `spawn`: join the fiber, cancel it, or read its result.
///
/// Handles are values; copies refer to the same fiber. Use them on the fiber's loop thread.
public struct FiberHandle<T> {
    @usableFromInline let task: FiberBody

    @usableFromInline init(task: FiberBody) { self.task = task }

    /// The fiber's id, unique on its loop.
    public var id: UInt64 { task.id }

    /// Whether the fiber's body has returned or thrown.
    public var isFinished: Bool { task.isFinished }

    /// The body's outcome once finished; nil while it runs. Never blocks.
    public var result: Result<T, any Error>? { task.result(as: T.self) }

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
        if let result = task.result(as: T.self) { return try result.get() }
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
        try Fiber.checkInterruption(me)
        task.joiners.append(me)
        let reason = Fiber.park(me, .join, detail: task.id, cancellable: true)
        if reason != .ready {
            task.joiners.remove(me)
            try Fiber.throwIfInterrupted(reason)
        }
        return try task.result(as: T.self)!.get()
    }

    /// Asks the fiber to stop: its current or next blocking call throws `CancellationError`.
    /// Cancellation is cooperative — a fiber is never unwound by force, and a fiber parked in a
    /// wait that is not cancellable (a raw ``Fiber/park(_:detail:cancellable:)``) is only marked.
    /// Cancelling a finished fiber does nothing.
    public func cancel() {
        guard let fiber = task.fiber else { return }
        FiberRef(fiber).cancel()
    }
}
