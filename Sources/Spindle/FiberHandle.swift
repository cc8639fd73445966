import CSpindleSupport
import Glibc
import SpindleLoop

/// A fiber's body and the outcome it leaves: what the entry function runs.
///
/// Nothing stored here depends on the fiber's result type: generic fields (`Result<T, Error>?`,
/// an `Any` to cast back) make the runtime look up generic metadata or run a dynamic cast on
/// every spawn and join, which cost more than the rest of the spawn put together. Instead the
/// closure is kept as its two words, the value in raw storage inside the body (32 bytes; a
/// larger value gets a buffer of its own), and the typed code — run the closure and keep its
/// value, destroy a kept value — is two thin functions made where the spawn is specialised.
/// Bodies whose handle was dropped are reused by the scheduler, so a fire-and-forget spawn
/// allocates only the closure's own context.
@usableFromInline
final class FiberBody {
    /// The fiber's id (set when it is started).
    @exclusivity(unchecked) @usableFromInline var id: UInt64 = 0
    /// The control block while the fiber is live; nil once it has finished.
    @exclusivity(unchecked) var fiber: UnsafeMutablePointer<spindle_fiber_t>?
    /// Fibers parked in ``FiberHandle/join()`` on this one.
    @exclusivity(unchecked) var joiners = WaitList()
    /// Whether the body has returned or thrown.
    @exclusivity(unchecked) @usableFromInline var isFinished = false
    /// The body's error once it threw.
    @exclusivity(unchecked) @usableFromInline var error: (any Error)?
    /// The body closure, taken apart into its function and context.
    @exclusivity(unchecked) @usableFromInline var bodyFunction: UnsafeRawPointer?
    @exclusivity(unchecked) @usableFromInline var bodyContext: AnyObject?
    /// Runs the body with its real type and keeps its value: a `(FiberBody) -> Void` made by
    /// ``setBody(_:)``, kept as its two words. Where `T` is known it is a bare function with no
    /// context, so storing it allocates nothing and calling it retains nothing.
    @exclusivity(unchecked) @usableFromInline var runnerFunction: UnsafeRawPointer?
    @exclusivity(unchecked) @usableFromInline var runnerContext: AnyObject?
    /// The result type the runner was made for.
    @exclusivity(unchecked) @usableFromInline var runnerType: ObjectIdentifier?
    /// Destroys the kept value (nil when there is none, or its type needs no destroying).
    @exclusivity(unchecked) @usableFromInline var valueDestroyer: TypedStep?

    /// A function of the body's result type, in a concrete struct: a bare function in an
    /// Optional sits at the generic abstraction, and taking it out allocated a thunk.
    @usableFromInline struct TypedStep {
        @usableFromInline let run: (FiberBody) -> Void
        @inlinable init(_ run: @escaping (FiberBody) -> Void) { self.run = run }
    }
    /// The body's value once it returned, when it fits here; else it is in `valueBuffer`.
    @exclusivity(unchecked) @usableFromInline var inlineValue: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    @exclusivity(unchecked) @usableFromInline var valueBuffer: UnsafeMutableRawPointer?

    @usableFromInline init() {}

    deinit { discardValue() }

    @inlinable
    func setBody<T>(_ body: @escaping () throws -> T) {
        // A thick function is exactly these two words; the cast keeps the context retained.
        let words = unsafeBitCast(body, to: ClosureWords.self)
        bodyFunction = words.function
        // A pooled body's context was moved out when it ran: storing a context-free closure
        // then needs no release of the old one (a call on nil, every spawn).
        if words.context != nil || bodyContext != nil { bodyContext = words.context }
        // The runner depends only on `T`: a body reused for the same type keeps its own.
        let type = ObjectIdentifier(T.self)
        if runnerType != type {
            // Cast inside a concrete struct: a bare closure passed to the generic cast is
            // reabstracted, and calling it back went through a thunk.
            let words = unsafeBitCast(TypedStep { $0.invokeTyped(T.self) }, to: ClosureWords.self)
            runnerFunction = words.function
            runnerContext = words.context
            runnerType = type
        }
    }

    @inlinable @inline(__always)
    func invokeTyped<T>(_: T.Type) {
        // Move the context out (no retain): the captures go with the closure, before the fiber
        // ends. Without one, the closure is made with a literal nil context, so that no retain
        // and release of it are called.
        let function = bodyFunction.unsafelyUnwrapped
        bodyFunction = nil
        if let context = bodyContext.take() {
            invoke(ClosureWords(function: function, context: context), as: T.self)
        } else {
            invoke(ClosureWords(function: function, context: nil), as: T.self)
        }
    }

    @inlinable @inline(__always)
    func invoke<T>(_ words: __owned ClosureWords, as _: T.Type) {
        let body = unsafeBitCast(words, to: (() throws -> T).self)
        do {
            let value = try body()
            withValueStorage(of: T.self, making: true) { $0.initialize(to: value) }
            if !_isPOD(T.self) { valueDestroyer = TypedStep { $0.destroyValue(T.self) } }
        } catch {
            self.error = error
        }
    }

    /// Whether a value of `T` is kept in the body itself rather than in a buffer.
    @inlinable
    static func fitsInline<T>(_: T.Type) -> Bool {
        MemoryLayout<T>.size <= MemoryLayout<(UInt64, UInt64, UInt64, UInt64)>.size && MemoryLayout<T>.alignment <= 8
    }

    /// Runs `body` with the address of the kept value of type `T` (making its buffer first
    /// when `making` and the value does not fit inline).
    @inlinable
    func withValueStorage<T, R>(
        of _: T.Type, making: Bool = false, _ body: (UnsafeMutablePointer<T>) throws -> R
    ) rethrows -> R {
        if Self.fitsInline(T.self) {
            return try withUnsafeMutableBytes(of: &inlineValue) { raw in
                try body(raw.baseAddress.unsafelyUnwrapped.assumingMemoryBound(to: T.self))
            }
        }
        if making {
            valueBuffer = UnsafeMutableRawPointer.allocate(
                byteCount: MemoryLayout<T>.size, alignment: MemoryLayout<T>.alignment)
        }
        return try body(valueBuffer.unsafelyUnwrapped.assumingMemoryBound(to: T.self))
    }

    @inlinable
    func destroyValue<T>(_: T.Type) {
        withValueStorage(of: T.self) { _ = $0.deinitialize(count: 1) }
    }

    /// The body's value or error, once finished (the value is copied: every join gets it).
    @inlinable
    func outcome<T>(_: T.Type) throws -> T {
        if let error { throw error }
        return withValueStorage(of: T.self) { $0.pointee }
    }

    /// Destroys the kept value and frees its buffer, if any.
    func discardValue() {
        if let destroy = valueDestroyer {
            valueDestroyer = nil
            destroy.run(self)
        }
        if let buffer = valueBuffer {
            valueBuffer = nil
            buffer.deallocate()
        }
    }

    /// Runs the body, then wakes every joiner.
    @inline(__always)
    func run() {
        // The runner stays until a `setBody` for another type replaces it: where the body's type
        // is known it is a bare function, holding nothing, and is called with a literal nil
        // context (no retain and release of it).
        let function = runnerFunction.unsafelyUnwrapped
        if let context = runnerContext {
            unsafeBitCast(ClosureWords(function: function, context: context), to: TypedStep.self).run(self)
        } else {
            unsafeBitCast(ClosureWords(function: function, context: nil), to: TypedStep.self).run(self)
        }
        isFinished = true
        fiber = nil
        while let joiner = joiners.popFirst() {
            FiberRef(joiner).wake(.ready)
        }
    }

    /// Whether the finished body keeps nothing whose lifetime a program could observe: no
    /// value that needs destroying, no buffer, no error.
    var hasNothingToDestroy: Bool { valueDestroyer == nil && valueBuffer == nil && error == nil }

    /// Makes a finished body ready for another spawn.
    func reset() {
        discardValue()
        error = nil
        resetFinished()
    }

    /// ``reset()`` for a body known to have nothing to destroy (``hasNothingToDestroy``).
    func resetFinished() {
        isFinished = false
        id = 0
    }

    /// The outcome as a `Result`, once finished.
    func result<T>(as _: T.Type) -> Result<T, any Error>? {
        guard isFinished else { return nil }
        return Result { try outcome(T.self) }
    }
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
    @inlinable public var id: UInt64 { task.id }

    /// Whether the fiber's body has returned or thrown.
    @inlinable public var isFinished: Bool { task.isFinished }

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
    @inlinable
    public func join() throws -> T {
        // A finished fiber's value is read where `T` is known (no generic value witness calls).
        if task.isFinished { return try task.outcome(T.self) }
        return try waitAndJoin()
    }

    /// ``join()`` for a fiber that has not finished yet.
    @usableFromInline
    func waitAndJoin() throws -> T {
        guard let me = spindle_current_fiber() else {
            fatalError(
                "FiberHandle.join() called outside a fiber while fiber #\(task.id) is still \(state): "
                    + "joining would block the loop's thread; join from inside a fiber, or read `result` "
                    + "after loop.run() returns")
        }
        if let target = task.fiber, target.pointee.sched != me.pointee.sched {
            fatalError(
                "FiberHandle.join(): fiber #\(task.id) belongs to \(Scheduler.of(target.pointee.sched).loop), "
                    + "but the joining fiber runs on \(Scheduler.of(me.pointee.sched).loop); fibers never migrate, so "
                    + "join it from a fiber of its own loop (from another loop, use loop.call { } or a CrossLoopChannel)"
            )
        }
        precondition(task.fiber != me, "FiberHandle.join(): fiber #\(task.id) joined itself")
        try Fiber.checkInterruption(me)
        task.joiners.append(me)
        let reason = Fiber.park(me, .join, detail: task.id, cancellable: true)
        if reason != .ready {
            task.joiners.remove(me)
            try Fiber.throwIfInterrupted(reason)
        }
        return try task.outcome(T.self)
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

/// A ring of fiber bodies (the scheduler's pooled bodies), used as a stack with a bottom: reclaim
/// appends at the back, a spawn takes the most recent from the back and puts one whose handle
/// lives on at the front. Each slot holds a +1 reference as a raw pointer: no array uniqueness
/// checks and no reference counting beyond the one the ring owns. Grows by doubling; the
/// scheduler frees it (``removeAll()``) when it closes.
struct BodyRing {
    private var slots: UnsafeMutablePointer<UnsafeMutableRawPointer>?
    private var capacity = 0
    private var head = 0
    private(set) var count = 0

    mutating func append(_ body: __owned FiberBody) {
        append(retained: Unmanaged.passRetained(body).toOpaque())
    }

    /// Appends a body whose +1 the caller hands over as a raw pointer (a control block's).
    mutating func append(retained raw: UnsafeMutableRawPointer) {
        if _slowPath(count == capacity) { grow() }
        slots.unsafelyUnwrapped[(head &+ count) & (capacity &- 1)] = raw
        count &+= 1
    }

    mutating func popLast() -> FiberBody? {
        guard count > 0 else { return nil }
        count &-= 1
        let raw = slots.unsafelyUnwrapped[(head &+ count) & (capacity &- 1)]
        return Unmanaged<FiberBody>.fromOpaque(raw).takeRetainedValue()
    }

    mutating func prepend(_ body: __owned FiberBody) {
        if _slowPath(count == capacity) { grow() }
        head = (head &- 1) & (capacity &- 1)
        slots.unsafelyUnwrapped[head] = Unmanaged.passRetained(body).toOpaque()
        count &+= 1
    }

    /// Releases every body and frees the slots.
    mutating func removeAll() {
        while popLast() != nil {}
        slots?.deallocate()
        slots = nil
        capacity = 0
        head = 0
    }

    @inline(never)
    private mutating func grow() {
        let larger = max(16, capacity * 2)  // a power of two: indices wrap with a mask
        let new = UnsafeMutablePointer<UnsafeMutableRawPointer>.allocate(capacity: larger)
        for index in 0..<count { new[index] = slots.unsafelyUnwrapped[(head + index) & (capacity - 1)] }
        slots?.deallocate()
        slots = new
        capacity = larger
        head = 0
    }
}
