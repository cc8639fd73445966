import Glibc
import Spindle
import SpindleLoop

/// A future's non-generic state (the header of its storage).
public struct FutureState {
    /// `linked`: this future's outcome will arrive in the future its `forward` slot holds
    /// (see `Future.cascade(to:)`); it reads and observes through that one.
    @usableFromInline enum State: UInt8 { case pending, succeeded, failed, linked }

    // Laid out so that a whole future (object header, this, a Void or Int value) stays within
    // 104-112 bytes, one 112- or 128-byte malloc chunk, with the fields a completion reads first.
    // `loop`, which other threads read while the loop's thread completes the future, is not the
    // first field: ThreadSanitizer marks a Swift access to the header (`core`) as a write of the
    // header's first byte, and a read of `loop` there was reported as a race now and then.
    @usableFromInline var state = State.pending
    /// Where the promise was made (`file` is a `StaticString`'s UTF-8, taken apart so that it
    /// packs with `line` and `state`).
    @usableFromInline var fileLength: UInt16 = 0
    @usableFromInline var line: UInt32 = 0
    @usableFromInline let loop: EventLoop
    @usableFromInline var firstCallback: Callback?
    /// The future the first callback completes, if any (kept apart from the callback so that
    /// it can be moved out and handed to it inout).
    @usableFromInline var firstTarget: AnyObject?
    /// The future (of the same value type) to complete after this one: see `cascade(to:)`.
    @usableFromInline var forward: AnyObject?
    @usableFromInline var error: (any Error)?
    @usableFromInline var moreCallbacks: [(callback: Callback, target: AnyObject?)]?
    @usableFromInline var file: UnsafeRawPointer

    /// The loop of the future whose header `state` is, lent (see `Future.lentLoop`).
    @inlinable
    static func lentLoop(_ state: UnsafeMutablePointer<FutureState>) -> Unmanaged<EventLoop> {
        UnsafeRawPointer(state).load(
            fromByteOffset: MemoryLayout<FutureState>.offset(of: \.loop)!, as: Unmanaged<EventLoop>.self)
    }

    @inlinable
    init(loop: EventLoop, file: StaticString, line: UInt) {
        self.loop = loop
        self.file = UnsafeRawPointer(("?" as StaticString).utf8Start)
        setOrigin(file: file, line: line)
    }

    /// Records where the promise was made.
    @inlinable
    mutating func setOrigin(file: StaticString, line: UInt) {
        if file.hasPointerRepresentation {
            self.file = UnsafeRawPointer(file.utf8Start)
            fileLength = UInt16(truncatingIfNeeded: min(file.utf8CodeUnitCount, Int(UInt16.max)))
        } else {
            self.file = UnsafeRawPointer(("?" as StaticString).utf8Start)
            fileLength = 1
        }
        self.line = UInt32(truncatingIfNeeded: line)
    }

    /// "file:line" where the promise was made.
    var origin: String {
        String(decoding: UnsafeRawBufferPointer(start: file, count: Int(fileLength)), as: UTF8.self) + ":\(line)"
    }

    /// A callback in a concrete struct: an Optional or Array of bare functions keeps them at
    /// the generic abstraction, and converting each one in and out allocates a thunk.
    ///
    /// `run` captures nothing (where the types are known, it is a bare function): it gets the
    /// completed future, the future it completes (`target`) and the closure that goes with it
    /// (`payload`: a flatMap's next step, a map's transform, a whenComplete's callback). A
    /// closure capturing those two would be one more object a callback.
    @usableFromInline struct Callback {
        @usableFromInline let run: (_ source: AnyObject, _ target: inout AnyObject?, _ payload: Words) -> Void
        @usableFromInline let payload: Words

        @inlinable
        init(
            run: __owned @escaping (_ source: AnyObject, _ target: inout AnyObject?, _ payload: Words) -> Void,
            payload: __owned Words
        ) {
            (self.run, self.payload) = (run, payload)
        }
    }

    /// A closure's two words (function and retained context), kept without its type: made
    /// from and read back as exactly the same one-closure struct (``Step``, ``VoidStep``,
    /// ``Transform``, ``Handler``). The struct keeps the closure at its declared abstraction;
    /// a bare closure cast through a generic parameter would be re-abstracted, and the thunk
    /// that does it is an allocation. Callers hand their `__owned` closure in with `consume`:
    /// a copy would retain its context and release the original.
    ///
    /// The two words are typed as a closure returning an object: a ``VoidStep``'s closure
    /// (`() -> Future<Output>`, a class returned directly) has exactly that calling convention,
    /// so a flatMap's callback calls it in place with ``runVoidStep(of:)``, and its context is not
    /// retained and released around the call as a closure read back with ``as(_:)`` is.
    @usableFromInline struct Words {
        @usableFromInline let closure: () -> AnyObject

        @inlinable init() { closure = { preconditionFailure("a future's callback ran a closure it does not have") } }

        @inlinable init<Closure>(_ closure: Closure) {
            self = unsafeBitCast(closure, to: Words.self)
        }

        @inlinable func `as`<Closure>(_: Closure.Type) -> Closure { unsafeBitCast(self, to: Closure.self) }

        // A combinator wraps the closure it is given in words first, then runs it through them
        // if its future has already completed, or keeps them. Run where it was given, the
        // optimiser sees the closure literal run on one path and kept on the other: it then
        // retains each of the literal's captures twice where the literal is made and releases
        // them once on the way to keeping it (two calls a capture a step of a flatMap chain).
        // The words hide the literal if they run it out of line (or, for a ``VoidStep``, as
        // the closure type they hold).
        //
        // Each names the struct the words were made from: inferred from the argument, an
        // `any Error` would be opened to its dynamic type, and the closure read back as one
        // of another type.

        /// Runs the `step` these words were made from with `input`; the future it returned.
        @inlinable @inline(never)
        func runStep<Input, Output>(_ step: Step<Input, Output>.Type, _ input: Input) -> Future<Output> {
            self.as(step).run(input)
        }

        /// Runs the `transform` these words were made from on `outcome`'s value.
        @inlinable @inline(never)
        func runTransform<Input, Output>(
            _ transform: Transform<Input, Output>.Type, _ outcome: Result<Input, any Error>
        ) -> Result<Output, any Error> {
            let transform = self.as(transform).run
            return Result { try transform(outcome.get()) }
        }

        /// Runs the `handler` these words were made from with `input`.
        @inlinable @inline(never)
        func runHandler<Input>(_ handler: Handler<Input>.Type, _ input: Input) {
            self.as(handler).run(input)
        }

        /// Runs the ``VoidStep`` these words were made from; the future it returned.
        @inlinable @inline(__always)
        func runVoidStep<Output>(of _: Output.Type) -> Future<Output> {
            unsafeDowncast(closure(), to: Future<Output>.self)
        }
    }

    /// Adds a callback (`run`, with the future it completes and its closure). The first goes
    /// in the header, inline where it is added (the common case: one callback a future); the
    /// others into an array, out of line.
    @inlinable @inline(__always)
    mutating func add(
        target: __owned AnyObject?, payload: __owned Words,
        _ run: __owned @escaping (_ source: AnyObject, _ target: inout AnyObject?, _ payload: Words) -> Void
    ) {
        let callback = Callback(run: run, payload: payload)
        if _fastPath(firstCallback == nil) {
            firstCallback = callback
            firstTarget.fill(with: target)
        } else {
            addAnother(callback, target: target)
        }
    }

    /// Whether the future whose header `state` points to is pending with no callback and no
    /// forward: one that can take over another's (see ``takeCallbacks(from:)``). Takes the
    /// header's address: a property read through `pointee` would copy the whole header.
    @inlinable @inline(__always)
    static func isBare(_ state: UnsafeMutablePointer<FutureState>) -> Bool {
        state.pointee.state == .pending && state.pointee.firstCallback == nil && state.pointee.forward == nil
    }

    /// Moves the callbacks and the forward of the pending future whose header `other` is into
    /// this bare one (see ``isBare(_:)``): they run when this one completes, in their order.
    /// `other` is left bare, as a new future.
    @inlinable @inline(__always)
    mutating func takeCallbacks(from other: UnsafeMutablePointer<FutureState>) {
        firstCallback = other.pointee.firstCallback.take()
        firstTarget.fill(with: other.pointee.firstTarget.take())
        // This one's own slot is empty (see ``isBare(_:)``): assigning it would release the nil.
        if other.pointee.moreCallbacks != nil { moreCallbacks = other.pointee.moreCallbacks.take() }
        forward.fill(with: other.pointee.forward.take())
    }

    @usableFromInline
    mutating func addAnother(_ callback: __owned Callback, target: __owned AnyObject?) {
        if moreCallbacks == nil {
            moreCallbacks = [(callback, target)]
        } else {
            moreCallbacks!.append((callback, target))
        }
    }

    @inline(never) @usableFromInline
    func completedTwice() -> Never {
        fatalError("a Promise was completed twice (made at \(origin))")
    }

    @usableFromInline
    func reportDropped() {
        spindleWarning(
            "a Future was dropped before its Promise was completed (made at \(origin)); "
                + "whatever waited for it will never run")
    }
}
