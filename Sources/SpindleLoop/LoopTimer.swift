import CLibUV

/// A one-shot or repeating timer on the loop. Millisecond resolution, as libuv's.
///
/// A started timer keeps itself alive until it fires (one-shot), is stopped, or is closed, so
/// `loop.schedule(after:)` needs no reference kept. A timer whose delay is zero fires on the next
/// loop iteration. Wraps uv_timer_t.
public final class LoopTimer: LoopHandle {
    @exclusivity(unchecked) private var callback: (LoopTimer) -> Void
    /// Whether the timer is started and has not fired (one-shot) or been stopped.
    @exclusivity(unchecked) public private(set) var isActive = false
    @exclusivity(unchecked) private var repeatInterval: UInt64 = 0
    /// An object for the callback to find on the timer (the futures layer keeps the pending
    /// future here, so that a non-capturing callback serves every fire without an allocation).
    @exclusivity(unchecked) @usableFromInline var payload: AnyObject?
    /// What the layer that set the payload does with it when the timer is stopped or closed,
    /// or its callback replaced, before the callback could take it (see ``setPayloadCanceller(_:)``).
    @exclusivity(unchecked) private var payloadCanceller: PayloadCanceller?

    /// Gets the payload and why it will never reach the timer's callback.
    package typealias PayloadCanceller = (_ payload: AnyObject, _ reason: PayloadCancelReason) -> Void

    /// Why a timer's payload will never reach its callback.
    package enum PayloadCancelReason {
        case stopped, closed, callbackReplaced

        /// "the timer was stopped", ...
        package var description: String {
            switch self {
            case .stopped: "the timer was stopped"
            case .closed: "the timer was closed"
            case .callbackReplaced: "the timer's callback was replaced"
            }
        }
    }

    /// Keeps `object` on the timer for its callback (see ``takePayload()``). A method, not the
    /// property itself: another module's access to the property would pay a dynamic
    /// exclusivity check.
    @inlinable package func setPayload(_ object: __owned AnyObject?) { payload.fill(with: object) }

    /// The object kept by ``setPayload(_:)``, moved out (the timer no longer holds it).
    @inlinable package func takePayload() -> AnyObject? { payload.take() }

    /// Sets what happens to a payload that will never reach the callback: `canceller` gets it
    /// when the timer is stopped or closed, or its callback replaced, while one is kept.
    package func setPayloadCanceller(_ canceller: @escaping PayloadCanceller) { payloadCanceller = canceller }

    /// A kept payload, moved out, with its canceller, to be run with ``cancel(_:_:)``. Stop and
    /// close run it once done with the timer: the canceller runs the layer's code, which may
    /// start the timer again, and their release of the active retain may free it.
    private func takePayloadToCancel() -> (object: AnyObject, canceller: PayloadCanceller?)? {
        payload.take().map { ($0, payloadCanceller) }
    }

    private static func cancel(
        _ taken: (object: AnyObject, canceller: PayloadCanceller?)?, _ reason: PayloadCancelReason
    ) {
        if let (object, canceller) = taken { canceller?(object, reason) }
    }

    /// Creates a stopped timer that will call `callback` on the loop's thread each time it fires.
    /// Wraps uv_timer_init.
    public init(loop: EventLoop, _ callback: @escaping (LoopTimer) -> Void) {
        self.callback = callback
        super.init(loop: loop, type: UV_TIMER)
        UVError.mustSucceed(uv_timer_init(loop.uv, timerHandle), "uv_timer_init")
        didInitialize()
    }

    private var timerHandle: UnsafeMutablePointer<uv_timer_t> {
        UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_timer_t.self)
    }

    /// Starts (or restarts) the timer: first fire after `delay`, then every `interval` if given.
    /// Durations are rounded up to whole milliseconds. Wraps uv_timer_start.
    public func start(after delay: Duration, repeating interval: Duration? = nil) {
        preconditionOnLoopThread("LoopTimer.start")
        precondition(!isClosed, "cannot start a closed LoopTimer")
        repeatInterval = interval.map(Self.milliseconds) ?? 0
        precondition(interval == nil || repeatInterval > 0, "a repeating LoopTimer needs an interval of at least 1 ms")
        isActive = true
        retainWhileActive()
        UVError.mustSucceed(
            uv_timer_start(timerHandle, timerFired, Self.milliseconds(delay), repeatInterval), "uv_timer_start")
    }

    /// Starts the timer with a delay in milliseconds (the cheap path: no Duration arithmetic).
    @inline(__always)
    public func start(afterMilliseconds delay: UInt64) {
        preconditionOnLoopThread("LoopTimer.start")
        precondition(!isClosed, "cannot start a closed LoopTimer")
        repeatInterval = 0
        isActive = true
        retainWhileActive()
        UVError.mustSucceed(uv_timer_start(timerHandle, timerFired, delay, 0), "uv_timer_start")
    }

    /// Stops the timer; it can be started again. Wraps uv_timer_stop.
    public func stop() {
        preconditionOnLoopThread("LoopTimer.stop")
        guard isActive else { return }
        isActive = false
        uv_timer_stop(timerHandle)
        guard payload != nil else { return releaseActiveRetain() }
        let taken = takePayloadToCancel()
        releaseActiveRetain()
        Self.cancel(taken, .stopped)
    }

    /// Replaces the callback (for pooled timers that serve many waiters).
    public func setCallback(_ callback: @escaping (LoopTimer) -> Void) {
        self.callback = callback
        if callbackTag != 0 { Self.cancel(takePayloadToCancel(), .callbackReplaced) }
        callbackTag = 0
    }

    /// A nonzero number naming the callback a layer above set with ``setCallback(_:tag:)``; 0
    /// when the callback is the one given to `init` or `setCallback(_:)`.
    @exclusivity(unchecked) @usableFromInline var callbackTag = 0

    /// Replaces the callback, naming it with `tag` (nonzero): a layer that sets the same
    /// callback on every start (the futures layer's `fire(after:)`) checks ``hasCallback(tag:)``
    /// and skips setting it again.
    package func setCallback(_ callback: @escaping (LoopTimer) -> Void, tag: Int) {
        self.callback = callback
        if callbackTag != tag { Self.cancel(takePayloadToCancel(), .callbackReplaced) }
        callbackTag = tag
    }

    /// Whether the callback is the one last set with `tag`.
    @inlinable package func hasCallback(tag: Int) -> Bool { callbackTag == tag }

    public override func close() {
        isActive = false
        guard payload != nil, !isClosed else { return super.close() }
        let taken = takePayloadToCancel()
        super.close()
        Self.cancel(taken, .closed)
    }

    fileprivate func fire() {
        if repeatInterval == 0 {
            isActive = false
            // The active retain stays across the callback and goes after it, unless the callback
            // started the timer again: a one-shot timer restarted from its own callback (a step
            // of a timer loop, a future's fire) keeps the retain it has, and pays no release and
            // retain. (The C callback's reference keeps self alive if the callback closes it.)
            callback(self)
            if !isActive { releaseActiveRetain() }
        } else {
            callback(self)
        }
    }

    public override var handleDescription: String {
        repeatInterval > 0 ? "timer (repeating every \(repeatInterval) ms)" : "timer"
    }

    /// `duration` in whole milliseconds, rounded up (what libuv timers take).
    @inline(__always)
    package static func milliseconds(_ duration: Duration) -> UInt64 {
        // Zero (the "next loop iteration" delay) is common; `components` costs 128-bit maths,
        // and `Duration.zero` and `==` are calls into the standard library. A Duration is two
        // words (frozen layout), both zero for zero.
        if unsafeBitCast(duration, to: (UInt64, UInt64).self) == (0, 0) { return 0 }
        let (seconds, attoseconds) = duration.components
        precondition(seconds >= 0 && attoseconds >= 0, "timer durations cannot be negative: \(duration)")
        let wholeMs = UInt64(seconds) * 1000 + UInt64(attoseconds / 1_000_000_000_000_000)
        let remainder = attoseconds % 1_000_000_000_000_000
        return remainder > 0 ? wholeMs + 1 : wholeMs
    }
}

extension EventLoop {
    /// Calls `callback` once on the loop's thread after `delay`. Returns the timer, which may be
    /// stopped before it fires; it need not be kept.
    @discardableResult
    public func schedule(after delay: Duration, _ callback: @escaping () -> Void) -> LoopTimer {
        let timer = LoopTimer(loop: self) { timer in
            callback()
            timer.close()
        }
        timer.start(after: delay)
        return timer
    }
}

private let timerFired: @convention(c) (UnsafeMutablePointer<uv_timer_t>?) -> Void = { timer in
    guard let data = timer?.pointee.data else { return }
    LoopHandle.object(data, as: LoopTimer.self).fire()
}
