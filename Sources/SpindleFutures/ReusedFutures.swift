import SpindleLoop

/// The futures a loop hands out again: the futures layer's per-loop state, kept on the loop as
/// its hot attachment (``/SpindleLoop/EventLoop``'s `madeHotAttachment`: a load and a test per
/// use, no lookup). Each slot holds one object, and only while the loop runs: a kept future
/// holds its loop, so they all go when ``/SpindleLoop/EventLoop/run(_:)`` returns.
@usableFromInline
final class ReusedFutures: EventLoopAttachment {
    /// One spent future of a flatMap chain, for the chain's next flatMap (see
    /// `Future.hand(_:to:)` and `Future.makeChained`).
    @exclusivity(unchecked) @usableFromInline var recycled = KeptObject()
    /// The succeeded `Future<Void>` that `makeSucceededFuture(())` hands out again and again.
    @exclusivity(unchecked) @usableFromInline var shared = KeptObject()
    /// The future of a timer's fire, a next-turn deferral or a read, once its callbacks have
    /// run, made ready again for the next such operation (see `Future.completeAndKeep`).
    @exclusivity(unchecked) @usableFromInline var spare = KeptObject()

    @usableFromInline init() {}

    @usableFromInline func stalledWaiters() -> [String] { [] }
    @usableFromInline func openItems() -> [String] { [] }
    @usableFromInline func loopWillClose() { loopDidStop() }

    @usableFromInline func loopDidStop() {
        recycled.object = nil
        shared.object = nil
        spare.object = nil
    }
}

extension ReusedFutures {
    /// The loop's reused futures, lent, if it made them: a take finds nothing in a loop that
    /// did not.
    /// The slot holds this type: the futures layer is the package's one user of the hot
    /// attachment (`hotAttachment` stops a second type); debug builds check it here too.
    @inlinable @inline(__always)
    static func ifMade(_ loop: Unmanaged<EventLoop>) -> Unmanaged<ReusedFutures>? {
        guard let address = loop._withUnsafeGuaranteedRef({ $0.madeHotAttachment }) else { return nil }
        assert(Unmanaged<AnyObject>.fromOpaque(address).takeUnretainedValue() is ReusedFutures)
        return Unmanaged.fromOpaque(address)
    }

    /// The loop's reused futures, lent, made on first use, while it runs; nil when it does not
    /// run (nothing is kept then).
    @inlinable @inline(__always)
    static func whileRunning(_ loop: Unmanaged<EventLoop>) -> Unmanaged<ReusedFutures>? {
        guard loop._withUnsafeGuaranteedRef({ $0.isRunning }) else { return nil }
        return ifMade(loop) ?? loop._withUnsafeGuaranteedRef { $0.makeReusedFutures() }
    }

    /// Moves the object in `slot` to where ``takeRecycled(on:as:)`` finds it (replacing any
    /// kept before) while the loop runs; otherwise leaves it in `slot`.
    @inlinable @inline(__always)
    static func keepRecycled(on loop: Unmanaged<EventLoop>, from slot: inout AnyObject?) {
        guard let reused = whileRunning(loop) else { return }
        reused._withUnsafeGuaranteedRef { $0.recycled.object.fill(with: slot.take()) }
    }

    /// The object kept by ``keepRecycled(on:from:)``, moved out, if it is exactly of class `T`.
    @inlinable @inline(__always)
    static func takeRecycled<T: AnyObject>(on loop: Unmanaged<EventLoop>, as _: T.Type) -> T? {
        ifMade(loop)?._withUnsafeGuaranteedRef { $0.recycled.take(as: T.self) }
    }

    /// Moves the object in `slot` to where ``takeSpare(on:as:)`` finds it (replacing any kept
    /// before) while the loop runs; otherwise leaves it in `slot`.
    @inlinable @inline(__always)
    static func keepSpare(on loop: Unmanaged<EventLoop>, from slot: inout AnyObject?) {
        guard let reused = whileRunning(loop) else { return }
        reused._withUnsafeGuaranteedRef { $0.spare.object.fill(with: slot.take()) }
    }

    /// The object kept by ``keepSpare(on:from:)``, moved out, if it is exactly of class `T`.
    @inlinable @inline(__always)
    static func takeSpare<T: AnyObject>(on loop: Unmanaged<EventLoop>, as _: T.Type) -> T? {
        ifMade(loop)?._withUnsafeGuaranteedRef { $0.spare.take(as: T.self) }
    }

    /// Keeps `object` for ``shared(on:as:)`` while the loop runs; otherwise lets it go.
    @inlinable
    static func keepShared(on loop: Unmanaged<EventLoop>, _ object: __owned AnyObject) {
        guard let reused = whileRunning(loop) else { return }
        reused._withUnsafeGuaranteedRef { $0.shared.object = object }
    }

    /// The object kept by ``keepShared(on:_:)`` (it stays kept), if it is exactly of class `T`.
    @inlinable
    static func shared<T: AnyObject>(on loop: Unmanaged<EventLoop>, as _: T.Type) -> T? {
        ifMade(loop)?._withUnsafeGuaranteedRef { $0.shared.object(as: T.self) }
    }
}

extension EventLoop {
    /// The first use on this loop: out of line, so that the hot paths inline a load and a test.
    @inline(never) @usableFromInline
    func makeReusedFutures() -> Unmanaged<ReusedFutures> { hotAttachment(ReusedFutures.self) { ReusedFutures() } }
}

/// One object kept for reuse.
@usableFromInline
struct KeptObject {
    @usableFromInline var object: AnyObject?

    @inlinable init() {}

    /// The object, if it is exactly of class `T` (it stays kept).
    @inlinable
    func object<T: AnyObject>(as _: T.Type) -> T? {
        guard let object, ObjectIdentifier(type(of: object)) == ObjectIdentifier(T.self) else { return nil }
        return unsafeDowncast(object, to: T.self)
    }

    /// The object, moved out, if it is exactly of class `T` (otherwise it stays kept).
    @inlinable
    mutating func take<T: AnyObject>(as _: T.Type) -> T? {
        guard let object = object(as: T.self) else { return nil }
        self.object = nil
        return object
    }
}
