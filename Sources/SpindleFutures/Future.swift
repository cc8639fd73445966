import Glibc
import Spindle
@_exported import SpindleCallbacks
@_exported import SpindleLoop

/// A value that arrives later, bound to one loop: callbacks run on that loop's thread, in the
/// order they were added, once the value (or error) is there.
///
/// Futures are made by a ``Promise`` (``SpindleLoop/EventLoop/makePromise(of:file:line:)``), by
/// ``SpindleLoop/EventLoop/makeSucceededFuture(_:file:line:)`` / ``SpindleLoop/EventLoop/makeFailedFuture(_:of:file:line:)``,
/// by the I/O adapters (`connection.read(into:) -> Future<Int>`), and by combining others with
/// ``map(file:line:_:)``, ``flatMap(file:line:_:)-(_,_,(Value)->Future<NewValue>)``, ``flatMapError(file:line:_:)``, ``and(_:file:line:)``, ``fold(_:with:)`` and
/// ``SpindleLoop/EventLoop/all(_:file:line:)``.
///
/// - Everything happens on the loop's thread: no lock. Completing a promise from another thread
///   hops to the loop through its wakeup (``/SpindleLoop/EventLoop/post(_:)``). Observing a
///   future or chaining onto one still pending (`whenComplete`, `map`, `flatMap`,
///   `flatMapError`) from another thread stops the process, saying so.
/// - A recursive flatMap loop (`step(n) = op().flatMap { step(n - 1) }`) keeps one chained
///   future alive whatever its depth (the last step's, which takes over the callbacks of the
///   levels above it), and while the loop runs it reuses the one a step has finished with
///   instead of allocating the next step's.
/// - A `flatMap` or `flatMapError` closure may return a future of another loop: the chained
///   future still completes on its own loop's thread (the other future is observed on its
///   loop's thread, and its outcome hops back through the wakeup).
/// - A callback added to a completed future runs at once; one added before completion runs when
///   the promise completes (nested inside the completing call).
/// - A fiber can wait for a future with ``wait()``: the fiber parks, the thread does not.
/// - A future dropped while still pending — its promise was never completed — is reported on
///   standard error, naming where the promise was made.
public final class Future<Value>: ManagedBuffer<FutureState, Value> {
    // Storage: the non-generic header (state, error, callbacks, loop) and one tail-allocated
    // element for the value. Neither making nor freeing a future then needs generic metadata
    // (a `Result<Value, Error>?` field cost four metadata lookups a future, ~1,300
    // instructions, in the unspecialisable deinit); callbacks are non-generic closures that
    // read the outcome back from the future, as SwiftNIO's are.

    /// The loop whose thread runs this future's callbacks.
    ///
    /// Safe from any thread (a promise completed from another thread reads it, as does `wait()`
    /// on a plain thread), so it is read through the header's address computed from the
    /// object's: `core` takes `&header`, an exclusive access to the whole header, and a read
    /// through it while the loop's thread completes the future was a data race to
    /// ThreadSanitizer's Swift access checks, though the two touch different fields and the loop
    /// never changes (and `loop` is not the header's first field, which those checks mark).
    @inlinable public var loop: EventLoop {
        (UnsafeRawPointer(Unmanaged.passUnretained(self).toOpaque()) + Self.headerOffset)
            .assumingMemoryBound(to: FutureState.self).pointee.loop
    }

    /// Where the header starts in the object: after its metadata pointer and reference counts
    /// (two words), aligned. `make` checks it against `withUnsafeMutablePointerToHeader`.
    @inlinable static var headerOffset: Int {
        let objectHeader = 2 * MemoryLayout<UnsafeRawPointer>.size
        let alignment = MemoryLayout<FutureState>.alignment
        return (objectHeader + alignment - 1) / alignment * alignment
    }

    /// The loop, lent: read as a reference, it would be retained and released around its use.
    /// The future holds the loop, so it lives as long as the future does.
    @inlinable
    var lentLoop: Unmanaged<EventLoop> { FutureState.lentLoop(core) }

    /// The header, reached through its address: the `header` property is a class's stored
    /// property, and each access to it paid a dynamic exclusivity check. Everything here runs on the loop's thread, one call at a time.
    @inlinable var core: UnsafeMutablePointer<FutureState> { withUnsafeMutablePointerToHeader { $0 } }

    @inlinable
    static func make(loop: EventLoop, file: StaticString, line: UInt) -> Future<Value> {
        // No element for a value of no size (Void): a byte of tail would round the object up
        // to the next malloc size.
        let buffer = Self.create(minimumCapacity: MemoryLayout<Value>.size == 0 ? 0 : 1) { _ in
            FutureState(loop: loop, file: file, line: line)
        }
        let future = unsafeDowncast(buffer, to: Future<Value>.self)
        assert(
            UnsafeMutableRawPointer(Unmanaged.passUnretained(future).toOpaque()) + headerOffset
                == UnsafeMutableRawPointer(future.core), "Future's header is not where `loop` reads it")
        return future
    }

    /// A pending future for a flatMap or flatMapError to return: the loop's recycled one (see
    /// ``hand(_:to:)``) if it has one of this type, otherwise a new one. On the loop's thread.
    ///
    /// The loop comes lent (see ``lentLoop``): only a new future takes a reference to it.
    @inlinable @inline(__always)
    static func makeChained(loop: Unmanaged<EventLoop>, file: StaticString, line: UInt) -> Future<Value> {
        // Always inlined, with the check and the take lent the loop one at a time: one closure
        // doing both was called, not inlined.
        loop._withUnsafeGuaranteedRef {
            $0.preconditionOnLoopThread("chaining a pending Future (map, flatMap, flatMapError)")
        }
        let recycled = ReusedFutures.takeRecycled(on: loop, as: Future<Value>.self)
        guard let spare = recycled else {
            return make(loop: loop.takeUnretainedValue(), file: file, line: line)
        }
        let state = spare.core
        state.pointee.state = .pending
        state.pointee.setOrigin(file: file, line: line)
        return spare
    }

    /// A pending future for an operation that completes it with a value (a next-turn deferral,
    /// a read): the loop's spare one (see ``completeAndKeep(_:_:)``) if it has one of this type,
    /// otherwise a new one.
    /// The loop comes lent, as to ``makeChained(loop:file:line:)``.
    @inlinable @inline(__always)
    static func makeSpareOrNew(loop: Unmanaged<EventLoop>, file: StaticString, line: UInt) -> Future<Value> {
        guard let spare = ReusedFutures.takeSpare(on: loop, as: Future<Value>.self) else {
            return make(loop: loop.takeUnretainedValue(), file: file, line: line)
        }
        spare.rearm(file: file, line: line)
        return spare
    }

    /// Completes `future` (an operation's own reference to it, moved out of the operation)
    /// with `outcome`, then gives it to the loop as its spare if it succeeded and no one else
    /// holds it: its callbacks have run and let it go, so the next
    /// ``makeSpareOrNew(loop:file:line:)`` can hand it out again, pending. Otherwise lets it
    /// go. Only for a trivial value (``rearm(file:line:)``).
    ///
    /// Kept after the completion, not before: a future handed out again while it was still
    /// completing had to be retained for the loop while its completer held it too, and
    /// released after.
    @inlinable
    static func completeAndKeep(_ future: __owned AnyObject, _ outcome: Result<Value, any Error>) {
        var slot: AnyObject? = consume future
        // Lent from the slot, which holds it while it completes.
        let lent = withUnsafeBytes(of: &slot) { $0.load(as: Unmanaged<Future<Value>>.self) }
        lent._withUnsafeGuaranteedRef { $0.completeOnLoopThread(outcome) }
        if _isPOD(Value.self), isKnownUniquelyReferenced(&slot) {
            let state = lent._withUnsafeGuaranteedRef { $0.core }
            if state.pointee.state == .succeeded {
                ReusedFutures.keepSpare(on: FutureState.lentLoop(state), from: &slot)
            }
        }
        // Usually kept: a release of the nil left would still be a call.
        if slot != nil { slot = nil }
    }

    /// The future a callback completes (its `target`), as this type.
    @inlinable
    static func target(_ slot: AnyObject?) -> Future<Value> {
        unsafeDowncast(slot.unsafelyUnwrapped, to: Future<Value>.self)
    }

    /// Hands the job of the future in `slot`, which a flatMap's or flatMapError's callback
    /// completes, to `next`, the future its closure returned; moves the target out of `slot` to
    /// the loop, for the next ``makeChained(loop:file:line:)``, once its part is over.
    ///
    /// When nothing else holds the target and `next` is pending with no callback and no
    /// forward of its own, `next` takes over the target's callbacks and forward, and the
    /// target is recycled at once: a recursive flatMap loop (`step(n) = op().flatMap {
    /// step(n - 1) }`) then keeps one future alive whatever its depth, the one its last step
    /// made. Otherwise `next` cascades to the target (see ``cascade(to:)``), and a target that
    /// became a link no one else holds is recycled.
    @inlinable
    static func hand(_ slot: inout AnyObject?, to next: Future<Value>) {
        // The target stays in its slot until the loop takes it: moved out into a variable, it
        // would be retained for the closure that reaches the loop, and released after.
        let target = withUnsafeBytes(of: &slot) { $0.load(as: Unmanaged<Future<Value>>.self) }
        let targetState = target._withUnsafeGuaranteedRef { $0.core }, nextState = next.core
        if _slowPath(FutureState.lentLoop(nextState).toOpaque() != FutureState.lentLoop(targetState).toOpaque()) {
            return handAcrossLoops(
                target: unsafeDowncast(slot.take().unsafelyUnwrapped, to: Future<Value>.self), next: next)
        }
        if isKnownUniquelyReferenced(&slot), targetState.pointee.state == .pending, FutureState.isBare(nextState) {
            nextState.pointee.takeCallbacks(from: targetState)
            // Its job done, the target is no longer pending (if the loop does not take it, it
            // goes with its slot, and a pending future reports itself dropped). It is a link
            // that no one can follow: nothing else holds it.
            targetState.pointee.state = .linked
        } else {
            target._withUnsafeGuaranteedRef { next.cascade(to: $0) }
            guard targetState.pointee.state == .linked, isKnownUniquelyReferenced(&slot) else { return }
            targetState.pointee.forward = nil
        }
        ReusedFutures.keepRecycled(on: FutureState.lentLoop(targetState), from: &slot)
    }

    /// `hand(_:to:)` for a `next` of another loop (a flatMap's closure returned a future of
    /// another loop): observed on its own loop's thread, it completes `target` on this one's
    /// (``complete(_:)`` hops there). Neither future's state is touched from the wrong thread.
    @usableFromInline
    static func handAcrossLoops(target: Future<Value>, next: Future<Value>) {
        let transfer = UncheckedTransfer((target, next))
        next.loop.post {
            let (target, next) = transfer.value
            next.whenComplete { target.complete($0) }
        }
    }

    @inlinable
    static func make(loop: EventLoop, outcome: Result<Value, any Error>, file: StaticString, line: UInt) -> Future<
        Value
    > {
        let future = make(loop: loop, file: file, line: line)
        future.store(outcome)
        return future
    }

    /// The outcome, if the future has completed.
    @inlinable
    public var result: Result<Value, any Error>? {
        switch core.pointee.state {
        case .pending: return nil
        case .succeeded: return .success(withUnsafeMutablePointerToElements { $0.pointee })
        case .failed: return .failure(core.pointee.error!)
        case .linked: return root.result
        }
    }

    /// Whether the future has completed.
    @inlinable public var isComplete: Bool {
        let state = core.pointee.state
        if _fastPath(state == .pending) { return false }
        return state != .linked || root.core.pointee.state != .pending
    }

    /// The outcome of `source`, a completed future of this type (the argument callbacks get).
    @inlinable @inline(__always)
    static func completed(_ source: AnyObject) -> Result<Value, any Error> {
        let future = unsafeDowncast(source, to: Future<Value>.self)
        // Callbacks run on the future that completed, never a link: read its slots directly.
        // Success first, by a test rather than a switch's jump table.
        let state = future.core.pointee.state
        if _fastPath(state == .succeeded) { return .success(future.withUnsafeMutablePointerToElements { $0.pointee }) }
        switch state {
        case .failed: return .failure(future.core.pointee.error.unsafelyUnwrapped)
        case .linked: return future.result.unsafelyUnwrapped
        case .pending: preconditionFailure("a Future's callback ran before the future completed")
        case .succeeded: preconditionFailure("unreachable: a success is read above")
        }
    }

    /// The future that stands for this one: itself, or for a linked future (see
    /// `cascade(to:)`) the one its outcome will arrive in.
    /// The header of ``root``, found without a reference count change: the root of a linked
    /// future is kept alive by the link (this future holds it).
    @inlinable
    var rootCore: UnsafeMutablePointer<FutureState> {
        if _fastPath(core.pointee.state != .linked) { return core }
        return root.core
    }

    @inlinable
    var root: Future<Value> {
        var current = self
        while _slowPath(current.core.pointee.state == .linked) {
            current = unsafeDowncast(current.core.pointee.forward.unsafelyUnwrapped, to: Future<Value>.self)
        }
        return current
    }

    /// Makes a completed future pending again, as if just made at `file`:`line`. Only for a
    /// succeeded future of a trivial value that nothing else references and whose callbacks
    /// have read its outcome.
    @inlinable
    func rearm(file: StaticString, line: UInt) {
        let state = core
        assert(
            _isPOD(Value.self) && state.pointee.state == .succeeded && state.pointee.firstCallback == nil
                && state.pointee.forward == nil && state.pointee.moreCallbacks == nil, "rearm of a future still in use")
        state.pointee.state = .pending
        state.pointee.setOrigin(file: file, line: line)
    }

    @inlinable
    func store(_ outcome: Result<Value, any Error>) {
        switch outcome {
        case .success(let value):
            withUnsafeMutablePointerToElements { $0.initialize(to: value) }
            core.pointee.state = .succeeded
        case .failure(let error):
            core.pointee.error = error
            core.pointee.state = .failed
        }
    }

    // MARK: Observing

    /// Runs `callback` with the outcome, on the loop's thread (at once if already complete).
    @inlinable
    public func whenComplete(_ callback: __owned @escaping (Result<Value, any Error>) -> Void) {
        loop.preconditionOnLoopThread("Future.whenComplete")
        let handler = FutureState.Words(Handler(run: consume callback))
        if let outcome = result {
            handler.runHandler(Handler<Result<Value, any Error>>.self, outcome)
        } else {
            rootCore.pointee.add(target: nil, payload: handler) { source, _, payload in
                payload.as(Handler<Result<Value, any Error>>.self).run(Self.completed(source))
            }
        }
    }

    /// Runs `callback` with the value if the future succeeds (on the loop's thread; at once if
    /// it already has). Costs no more than ``whenComplete(_:)``: the callback is kept as it
    /// is, not wrapped in a closure that tests the outcome.
    @inlinable
    public func whenSuccess(_ callback: __owned @escaping (Value) -> Void) {
        loop.preconditionOnLoopThread("Future.whenSuccess")
        let handler = FutureState.Words(Handler(run: consume callback))
        if let outcome = result {
            if case .success(let value) = outcome { handler.runHandler(Handler<Value>.self, value) }
        } else {
            rootCore.pointee.add(target: nil, payload: handler) { source, _, payload in
                if case .success(let value) = Self.completed(source) { payload.as(Handler<Value>.self).run(value) }
            }
        }
    }

    /// Runs `callback` with the error if the future fails (on the loop's thread; at once if it
    /// already has). Like ``whenSuccess(_:)``, the callback is kept as it is.
    @inlinable
    public func whenFailure(_ callback: __owned @escaping (any Error) -> Void) {
        loop.preconditionOnLoopThread("Future.whenFailure")
        let handler = FutureState.Words(Handler(run: consume callback))
        if let outcome = result {
            if case .failure(let error) = outcome { handler.runHandler(Handler<any Error>.self, error) }
        } else {
            rootCore.pointee.add(target: nil, payload: handler) { source, _, payload in
                if case .failure(let error) = Self.completed(source) { payload.as(Handler<any Error>.self).run(error) }
            }
        }
    }

    // MARK: Completing (through a Promise)

    @inlinable
    func complete(_ outcome: Result<Value, any Error>) {
        guard loop.isOnLoopThread else { return completeFromAnotherThread(outcome) }
        completeOnLoopThread(outcome)
    }

    /// ``complete(_:)`` where the caller runs on the loop's thread for certain: in a libuv
    /// callback (a timer's fire, a next turn, a read) or in a future's callback.
    @inlinable
    func completeOnLoopThread(_ outcome: Result<Value, any Error>) {
        // A chain of flatMaps forwards each future's outcome to the next one up: that walk is a
        // loop here, not recursion, so a chain of a million steps cannot overflow the stack.
        // This future is the caller's to keep alive; each one further up is held by the slot it
        // was moved out of (no reference count changes on the way).
        var forward = _slowPath(core.pointee.state == .linked) ? root.completeOne(outcome) : completeOne(outcome)
        while let next = forward {
            forward = unsafeDowncast(next, to: Future<Value>.self).completeOne(outcome)
        }
    }

    /// Completes this future alone and runs its callbacks; the future to complete next, moved
    /// out of its forward slot.
    @inlinable
    func completeOne(_ outcome: Result<Value, any Error>) -> AnyObject? {
        let state = core
        if _slowPath(state.pointee.state != .pending) { state.pointee.completedTwice() }
        store(outcome)
        let forward = state.pointee.forward.take()
        runCallbacks()
        return forward
    }

    /// Runs the callbacks of a future that has just completed, in the order they were added.
    @inlinable
    func runCallbacks() {
        // Moved out first (no retain): the callbacks read this future's header.
        // The target goes to the callback inout: a flatMap's callback can then recycle it.
        let state = core
        guard let first = state.pointee.firstCallback.take() else { return }
        var target = state.pointee.firstTarget.take()
        let rest = state.pointee.moreCallbacks.take()
        first.run(self, &target, first.payload)
        // A flatMap's callback has moved its target out: a release of the nil left would still
        // be a call.
        if target != nil { target = nil }
        if let rest {
            for (callback, target) in rest {
                var target = target
                callback.run(self, &target, callback.payload)
            }
        }
    }

    /// Completes `target` with this future's outcome when it arrives (at once if it is here).
    /// The first cascade of a future with no callbacks yet costs no allocation: the target is
    /// kept in the header and completed after this future's callbacks have run.
    ///
    /// Called only by `target`'s one completer (the callback of the flatMap or flatMapError that
    /// made it), which hands its job to this future. When `target` has no callbacks and already
    /// forwards to a future further up, this one takes over that forward and `target` becomes a
    /// link to this one (it reads and observes through it: the outcome is the same). A
    /// recursive flatMap loop whose levels someone holds (`step(n) = op().flatMap {
    /// step(n-1) }`) then keeps the held levels and two futures alive whatever its depth, not
    /// one per step, and its last step completes the top future at once instead of walking
    /// back down the whole chain. (A level no one holds is not cascaded to: see
    /// ``hand(_:to:)``.)
    @inlinable
    func cascade(to target: Future<Value>) {
        switch core.pointee.state {
        case .pending: break
        case .linked: return root.cascade(to: target)  // the root is never linked
        case .succeeded, .failed: return target.completeOnLoopThread(result.unsafelyUnwrapped)
        }
        let state = core
        if state.pointee.forward == nil && state.pointee.firstCallback == nil {
            let targetState = target.core
            if targetState.pointee.state == .pending && targetState.pointee.firstCallback == nil,
                targetState.pointee.forward != nil
            {
                // The forward slot moves, rather than being copied: no reference count of the
                // future further up changes, so it stays out of the cache until the chain
                // ends. `target` now reads and observes through this future (same outcome).
                state.pointee.forward.fill(with: targetState.pointee.forward.take())
                targetState.pointee.state = .linked
                targetState.pointee.forward = self
            } else {
                state.pointee.forward.fill(with: target)
            }
        } else {
            state.pointee.add(target: target, payload: FutureState.Words()) { source, target, _ in
                Self.target(target).completeOnLoopThread(Self.completed(source))
            }
        }
    }

    @usableFromInline
    func completeFromAnotherThread(_ outcome: Result<Value, any Error>, loop: EventLoop? = nil) {
        let transfer = UncheckedTransfer((self, outcome))
        (loop ?? self.loop).post {
            let (future, outcome) = transfer.value
            future.complete(outcome)
        }
    }

    // MARK: Combining

    /// A future of `transform` applied to this one's value (an error, or what `transform`
    /// throws, fails it).
    @inlinable
    public func map<NewValue>(
        file: StaticString = #fileID, line: UInt = #line, _ transform: __owned @escaping (Value) throws -> NewValue
    ) -> Future<NewValue> {
        let transform = FutureState.Words(Transform(run: consume transform))
        if let outcome = result {  // already complete: no promise, no callback
            let transformed = transform.runTransform(Transform<Value, NewValue>.self, outcome)
            return Future<NewValue>.make(loop: loop, outcome: transformed, file: file, line: line)
        }
        let next = Future<NewValue>.makeChained(loop: lentLoop, file: file, line: line)
        rootCore.pointee.add(target: next, payload: transform) { source, next, payload in
            let transform = payload.as(Transform<Value, NewValue>.self).run
            Future<NewValue>.target(next).completeOnLoopThread(Result { try transform(Self.completed(source).get()) })
        }
        return next
    }

    /// A future that completes with the future `next` returns for this one's value.
    @inlinable @inline(__always)
    public func flatMap<NewValue>(
        file: StaticString = #fileID, line: UInt = #line, _ next: __owned @escaping (Value) -> Future<NewValue>
    ) -> Future<NewValue> {
        // Always inlined, and the closure goes into its words first: see the `Void` flatMap.
        let step = FutureState.Words(Step(run: consume next))
        if _slowPath(core.pointee.state != .pending), isComplete {
            switch result.unsafelyUnwrapped {
            case .success(let value): return step.runStep(Step<Value, NewValue>.self, value)
            case .failure(let error):
                return Future<NewValue>.make(loop: loop, outcome: .failure(error), file: file, line: line)
            }
        }
        let chained = Future<NewValue>.makeChained(loop: lentLoop, file: file, line: line)
        rootCore.pointee.add(target: chained, payload: step) { source, chained, payload in
            switch Self.completed(source) {
            case .success(let value):
                let next = payload.as(Step<Value, NewValue>.self).run(value)
                Future<NewValue>.hand(&chained, to: next)
            case .failure(let error): Future<NewValue>.target(chained).completeOnLoopThread(.failure(error))
            }
        }
        return chained
    }

    /// `flatMap` for a future of `Void`, taking a closure without a parameter.
    @inlinable @inline(__always)
    public func flatMap<NewValue>(
        file: StaticString = #fileID, line: UInt = #line, _ next: __owned @escaping () -> Future<NewValue>
    ) -> Future<NewValue> where Value == Void {
        // Not a call to the general flatMap: the optimiser specialises a combinator for the
        // closure literal it is given, rebuilds the closure in its natural calling convention
        // and wraps it in a thunk to the generic `(Value) -> …` one, an allocation a step. A
        // `() -> Future` closure has only the one convention.
        // Always inlined, as the general flatMap: out of line, it paid the call, its frame and a
        // call to record its origin.
        // The closure goes into its words before anything else: see `FutureState.Words`.
        let step = FutureState.Words(VoidStep(run: consume next))
        if _slowPath(core.pointee.state != .pending), isComplete {
            switch result.unsafelyUnwrapped {
            case .success: return step.runVoidStep(of: NewValue.self)
            case .failure(let error):
                return Future<NewValue>.make(loop: loop, outcome: .failure(error), file: file, line: line)
            }
        }
        let chained = Future<NewValue>.makeChained(loop: lentLoop, file: file, line: line)
        rootCore.pointee.add(target: chained, payload: step) { source, chained, payload in
            switch Self.completed(source) {
            case .success:
                let next = payload.runVoidStep(of: NewValue.self)
                Future<NewValue>.hand(&chained, to: next)
            case .failure(let error): Future<NewValue>.target(chained).completeOnLoopThread(.failure(error))
            }
        }
        return chained
    }

    /// A future that recovers from this one's error with the future `recover` returns.
    @inlinable
    public func flatMapError(
        file: StaticString = #fileID, line: UInt = #line, _ recover: __owned @escaping (any Error) -> Future<Value>
    ) -> Future<Value> {
        let step = FutureState.Words(Step(run: consume recover))
        switch result {
        case .success(let value)?: return Future.make(loop: loop, outcome: .success(value), file: file, line: line)
        case .failure(let error)?: return step.runStep(Step<any Error, Value>.self, error)
        case nil: break
        }
        let recovered = Future<Value>.makeChained(loop: lentLoop, file: file, line: line)
        rootCore.pointee.add(target: recovered, payload: step) { source, recovered, payload in
            switch Self.completed(source) {
            case .success(let value): Self.target(recovered).completeOnLoopThread(.success(value))
            case .failure(let error):
                let next = payload.as(Step<any Error, Value>.self).run(error)
                Self.hand(&recovered, to: next)
            }
        }
        return recovered
    }

    /// A future of both values, failing with the first error.
    public func and<Other>(_ other: Future<Other>, file: StaticString = #fileID, line: UInt = #line) -> Future<
        (Value, Other)
    > {
        flatMap(file: file, line: line) { mine in other.map { (mine, $0) } }
    }

    /// Folds `futures` into this one's value with `combine`, in order, failing with the first error.
    public func fold<Other>(
        _ futures: [Future<Other>], with combine: @escaping (Value, Other) -> Future<Value>
    ) -> Future<Value> {
        futures.reduce(self) { accumulated, next in
            accumulated.flatMap { value in next.flatMap { combine(value, $0) } }
        }
    }

    // MARK: Fibers

    /// Waits for the outcome and returns the value or throws the error.
    ///
    /// - In a fiber of the future's loop, it parks the fiber, not the thread. Cancellable: a
    ///   cancelled fiber throws `CancellationError` (the future itself carries on).
    /// - On a thread that runs no loop (the main thread, a plain thread), it blocks the thread
    ///   until the loop completes the future, as SwiftNIO's `wait()` does; the loop must be
    ///   running (a `LoopGroup`'s loops always are). Throws `LoopError.closed` if the loop is
    ///   closed.
    /// - On a loop's thread outside a fiber, it would block that loop: it stops the process,
    ///   saying so.
    public func wait() throws -> Value {
        if !Fiber.isInFiber, !loop.isOnLoopThread { return try waitBlockingThread() }
        if let outcome = result { return try outcome.get() }
        let me = Fiber.current
        if me.loop !== loop {
            fatalError(
                "Future.wait(): the future belongs to \(loop), but the waiting fiber runs on \(me.loop); "
                    + "wait for it from a fiber of its own loop, or get it there with loop.submit { }")
        }
        try Fiber.checkCancellation()
        whenComplete { [unowned(unsafe) self] _ in if me.isParked(waitingFor: self) { me.wake(.ready) } }
        while !isComplete {
            let reason = Fiber.park(waitingFor: self, .future)
            if reason == .cancelled { throw CancellationError() }
            if reason == .timedOut { throw FiberTimeoutError() }
        }
        return try result.unsafelyUnwrapped.get()
    }

    /// ``wait()`` on a thread outside every loop: blocks it on a semaphore that a callback on
    /// the future's loop posts.
    private func waitBlockingThread() throws -> Value {
        if let current = EventLoop.current {
            fatalError(
                "Future.wait() called on \(current)'s thread outside a fiber: it would block that loop; "
                    + "wait in a fiber, or chain with whenComplete")
        }
        let waiter = BlockedThread<Value>()
        let future = UncheckedTransfer(self)
        let queued = loop.tryPost {
            future.value.whenComplete { outcome in
                waiter.outcome = outcome
                sem_post(&waiter.semaphore)
            }
        }
        if !queued { throw LoopError.closed }
        while sem_wait(&waiter.semaphore) != 0 {}
        return try waiter.outcome.unsafelyUnwrapped.get()
    }

    deinit {
        // The header frees itself (it is not generic); the value is this class's to destroy.
        // A trivial value (Void, Int, …) needs nothing: deinitialize would still call the
        // runtime's generic array destroy.
        if !_isPOD(Value.self), core.pointee.state == .succeeded {
            _ = withUnsafeMutablePointerToElements { $0.deinitialize(count: 1) }
        }
        if core.pointee.state == .pending { core.pointee.reportDropped() }
    }
}

/// The writing end of a ``Future``: complete it once, from any thread.
public struct Promise<Value>: @unchecked Sendable {
    /// The future this promise completes.
    public let futureResult: Future<Value>
    /// The future's loop, kept here so that a completion from another thread picks its way
    /// (complete here, or hop to the loop) without reading the future, which the loop's thread
    /// may be changing meanwhile. Unretained: the future holds the loop.
    @usableFromInline unowned(unsafe) let loop: EventLoop

    @usableFromInline init(_ future: Future<Value>, loop: EventLoop) {
        futureResult = future
        self.loop = loop
    }

    /// Completes the future with `value`.
    @inlinable public func succeed(_ value: Value) { complete(.success(value)) }

    /// Completes the future with `error`.
    @inlinable public func fail(_ error: any Error) { complete(.failure(error)) }

    /// Completes the future with `outcome`.
    @inlinable public func complete(_ outcome: Result<Value, any Error>) {
        if loop.isOnLoopThread {
            futureResult.completeOnLoopThread(outcome)
        } else {
            futureResult.completeFromAnotherThread(outcome, loop: loop)
        }
    }

    /// Completes the future with a UVError-or-value result, as the callback layer delivers them.
    @inlinable public func complete<Failure: Error>(_ outcome: Result<Value, Failure>) {
        complete(outcome.mapError { $0 as any Error })
    }
}

extension EventLoop {
    /// A promise whose future belongs to this loop. `file` and `line` name it if it is dropped
    /// without being completed.
    @inlinable
    public func makePromise<Value>(
        of type: Value.Type = Value.self, file: StaticString = #fileID, line: UInt = #line
    ) -> Promise<Value> {
        Promise(Future.make(loop: self, file: file, line: line), loop: self)
    }

    /// A future that has already succeeded with `value`.
    ///
    /// On the loop's thread while it runs, a succeeded `Future<Void>` is made once and handed
    /// out again (as SwiftNIO's `makeSucceededVoidFuture()` is): a completed future never
    /// changes, so its identity is all that is shared.
    @inlinable
    public func makeSucceededFuture<Value>(_ value: Value, file: StaticString = #fileID, line: UInt = #line) -> Future<
        Value
    > {
        let sharing = Value.self == Void.self && isOnLoopThread
        if sharing, let shared = ReusedFutures.shared(on: Unmanaged.passUnretained(self), as: Future<Value>.self) {
            return shared
        }
        let future = Future.make(loop: self, outcome: .success(value), file: file, line: line)
        if sharing { ReusedFutures.keepShared(on: Unmanaged.passUnretained(self), future) }
        return future
    }

    /// A future that has already failed with `error`.
    @inlinable
    public func makeFailedFuture<Value>(
        _ error: any Error, of type: Value.Type = Value.self, file: StaticString = #fileID, line: UInt = #line
    ) -> Future<Value> {
        Future.make(loop: self, outcome: .failure(error), file: file, line: line)
    }

    /// A future of every value of `futures`, in their order; fails with the first error to arrive.
    public func all<Value>(_ futures: [Future<Value>], file: StaticString = #fileID, line: UInt = #line) -> Future<
        [Value]
    > {
        let promise = makePromise(of: [Value].self, file: file, line: line)
        var values = [Value?](repeating: nil, count: futures.count)
        var remaining = futures.count
        if remaining == 0 { promise.succeed([]) }
        for (index, future) in futures.enumerated() {
            future.whenComplete { outcome in
                guard !promise.futureResult.isComplete else { return }
                switch outcome {
                case .success(let value):
                    values[index] = value
                    remaining -= 1
                    if remaining == 0 { promise.succeed(values.map { $0! }) }
                case .failure(let error):
                    promise.fail(error)
                }
            }
        }
        return promise.futureResult
    }
}

/// A thread blocked in `Future.wait()` and the outcome its loop hands it (the semaphore's post
/// and wait order the write and the read).
final class BlockedThread<Value>: @unchecked Sendable {
    var semaphore = sem_t()
    var outcome: Result<Value, any Error>?
    init() { sem_init(&semaphore, 0, 0) }
    deinit { sem_destroy(&semaphore) }
}

/// Carries a non-Sendable value to the loop's thread, where it is used alone.
struct UncheckedTransfer<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

// The closures a callback carries as its payload, each in a struct that spells its type (see
// `FutureState.Words`).

/// A flatMap's next step or a flatMapError's recovery.
@usableFromInline struct Step<Input, Output> {
    @usableFromInline let run: (Input) -> Future<Output>
    @inlinable init(run: @escaping (Input) -> Future<Output>) { self.run = run }
}

/// The next step of a flatMap on a `Void` future.
@usableFromInline struct VoidStep<Output> {
    @usableFromInline let run: () -> Future<Output>
    @inlinable init(run: @escaping () -> Future<Output>) { self.run = run }
}

/// A map's transform.
@usableFromInline struct Transform<Input, Output> {
    @usableFromInline let run: (Input) throws -> Output
    @inlinable init(run: @escaping (Input) throws -> Output) { self.run = run }
}

/// A whenComplete, whenSuccess or whenFailure callback (of the outcome, the value or the error).
@usableFromInline struct Handler<Input> {
    @usableFromInline let run: (Input) -> Void
    @inlinable init(run: @escaping (Input) -> Void) { self.run = run }
}
