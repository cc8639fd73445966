import CSpindleSupport
import Glibc
import SpindleLoop

/// Stackful, cooperative fibers on a libuv loop.
///
/// A fiber runs straight-line code on its own stack and gives the loop's thread back only where
/// it blocks: ``yield()``, ``sleep(for:)``, ``FiberHandle/join()``, or I/O and synchronisation
/// built on ``park(_:detail:cancellable:)``. Fibers are pinned to the loop that spawned them and never migrate.
///
/// ```swift
/// let loop = EventLoop()
/// let worker = loop.spawn(name: "worker") { () -> Int in
///     try Fiber.sleep(for: .milliseconds(10))
///     return 42
/// }
/// loop.spawn(name: "main") {
///     print(try worker.join())    // 42
/// }
/// try loop.run()
/// ```
public enum Fiber {
    // MARK: The current fiber

    /// Whether the caller runs inside a fiber.
    @inline(__always)
    public static var isInFiber: Bool { spindle_current_fiber() != nil }

    /// The running fiber. Stops the process with a clear message outside a fiber.
    public static var current: FiberRef {
        FiberRef(runningFiber("Fiber.current"))
    }

    @inlinable @inline(__always)
    static func runningFiber(_ what: StaticString) -> UnsafeMutablePointer<spindle_fiber_t> {
        guard let fiber = spindle_current_fiber() else { notInFiber(what) }
        return fiber
    }

    @inline(never) @usableFromInline
    static func notInFiber(_ what: StaticString) -> Never {
        fatalError(
            "\(what) called outside a fiber: no fiber is running on this thread "
                + "(spawn one with loop.spawn { } and call it from there)")
    }

    // MARK: Spawning

    /// Spawns a fiber on the running fiber's loop. It starts on a later turn of the scheduler;
    /// the caller keeps running.
    ///
    /// - Parameters:
    ///   - name: shown in traces, deadlock reports and stack-overflow messages (first 47 bytes).
    ///   - stackSize: usable stack bytes, rounded up to pages (default 64 KiB, minimum 16 KiB).
    ///   - body: what the fiber runs; its value or error is the handle's to join.
    @discardableResult @inlinable
    public static func spawn<T>(
        name: String? = nil, stackSize: Int? = nil, _ body: @escaping () throws -> T
    ) -> FiberHandle<T> {
        guard let fiber = spindle_current_fiber() else { notInFiber("Fiber.spawn") }
        // Lent: the running fiber's loop holds its scheduler (no retain and release a spawn).
        return Scheduler.lent(fiber.pointee.sched)._withUnsafeGuaranteedRef {
            $0.spawn(name: name, stackSize: stackSize, body)
        }
    }

    /// Spawns a detached fiber on the running fiber's loop: no handle, nothing to join, and
    /// nothing of Spindle's own allocated (its closure lives in the fiber's control block). For
    /// fire-and-forget work, such as one fiber per connection.
    @inlinable
    public static func spawnDetached(name: String? = nil, stackSize: Int? = nil, _ body: @escaping () -> Void) {
        guard let fiber = spindle_current_fiber() else { notInFiber("Fiber.spawnDetached") }
        Scheduler.lent(fiber.pointee.sched)._withUnsafeGuaranteedRef {
            $0.startDetached(body, name: name, stackSize: stackSize)
        }
    }

    // MARK: Giving way

    /// Lets every other runnable fiber run, then continues. Costs two context switches and no
    /// allocation. Stops the process with a clear message outside a fiber.
    @inlinable @inline(__always)
    public static func yield() {
        guard let fiber = spindle_current_fiber() else { notInFiber("Fiber.yield()") }
        let core = fiber.pointee.sched.unsafelyUnwrapped
        core.pointee.yields &+= 1
        // The state stays "runnable" while a fiber runs, so a yield need not store it.
        Scheduler.requeue(fiber, on: core)
        Scheduler.suspend(fiber, core: core)
    }

    /// Parks the running fiber until a waker calls ``FiberRef/wake(_:)`` on it, and returns why it
    /// was woken. This is the primitive that I/O and synchronisation are built on: record
    /// ``current`` where the waker will find it, then park.
    ///
    /// - Parameters:
    ///   - reason: what the fiber waits for; deadlock reports, traces and the doctor print it.
    ///   - detail: a number that goes with the reason (for ``ParkReason/join``, the fiber id).
    ///   - cancellable: whether ``FiberHandle/cancel()`` and an expiring ``withTimeout(_:_:)``
    ///     may wake the fiber (with ``WakeReason/cancelled`` or ``WakeReason/timedOut``). The
    ///     caller must then take the fiber off whatever it waits on itself, since its waker will
    ///     not. A fiber parked without it is woken only by its waker.
    @discardableResult @inlinable
    public static func park(_ reason: ParkReason, detail: UInt64 = 0, cancellable: Bool = false) -> WakeReason {
        guard let fiber = spindle_current_fiber() else { notInFiber("Fiber.park()") }
        return park(fiber, reason, detail: detail, cancellable: cancellable)
    }

    /// Parks the running fiber, cancellably, recording `object` as what it waits for (see
    /// ``FiberRef/isParked(waitingFor:)``).
    package static func park(waitingFor object: AnyObject, _ reason: ParkReason) -> WakeReason {
        let fiber = runningFiber("a blocking wait")
        fiber.pointee.park_object = Unmanaged.passUnretained(object).toOpaque()
        defer { fiber.pointee.park_object = nil }
        return park(fiber, reason, detail: 0, cancellable: true)
    }

    @inlinable @inline(__always)
    static func park(
        _ fiber: UnsafeMutablePointer<spindle_fiber_t>, _ reason: ParkReason, detail: UInt64, cancellable: Bool = false
    ) -> WakeReason {
        let core = fiber.pointee.sched!
        fiber.pointee.state = UInt8(SPINDLE_FIBER_PARKED)
        fiber.pointee.park_reason = reason.rawValue
        fiber.pointee.park_detail = detail
        fiber.pointee.wake_status = 0
        fiber.pointee.park_cancellable = cancellable ? 1 : 0
        spindle_count_park(core, reason.rawValue)
        core.pointee.parked &+= 1
        Scheduler.suspend(fiber, core: core)
        return WakeReason(rawValue: fiber.pointee.wake_status) ?? .ready
    }

    /// Suspends the running fiber for at least `duration` (millisecond resolution, on a loop
    /// timer). Throws `CancellationError` if the fiber is cancelled, or ``FiberTimeoutError`` if
    /// an enclosing ``withTimeout(_:_:)`` expires, before or while it sleeps.
    public static func sleep(for duration: Duration) throws {
        let fiber = runningFiber("Fiber.sleep(for:)")
        try checkInterruption(fiber)
        // A bare libuv timer whose data is this fiber, fired into a C callback: no Swift object,
        // no closure and no reference counting between the sleep and the wake. The scheduler is
        // lent to each call (held across the park, it was retained and released every sleep).
        let scheduler = Scheduler.lent(fiber.pointee.sched.unsafelyUnwrapped)
        let milliseconds = LoopTimer.milliseconds(duration)
        if milliseconds == 0 { fiber.pointee.sched.unsafelyUnwrapped.pointee.zero_sleeps &+= 1 }
        let timer = scheduler._withUnsafeGuaranteedRef {
            $0.startSleepTimer(for: fiber, milliseconds: milliseconds)
        }
        let reason = park(fiber, .sleep, detail: 0, cancellable: true)
        scheduler._withUnsafeGuaranteedRef { $0.finishSleepTimer(timer, fired: reason == .ready) }
        try throwIfInterrupted(reason)
    }

    /// Whether the running fiber has been cancelled (blocking calls then throw
    /// `CancellationError`). Code that computes for long stretches can poll it.
    public static var isCancelled: Bool {
        runningFiber("Fiber.isCancelled").pointee.cancelled != 0
    }

    /// Throws `CancellationError` if the running fiber has been cancelled, or
    /// ``FiberTimeoutError`` if an enclosing ``withTimeout(_:_:)`` has expired.
    public static func checkCancellation() throws {
        try checkInterruption(runningFiber("Fiber.checkCancellation()"))
    }

    /// Throws if the fiber was cancelled or its deadline passed: called before a blocking wait.
    @inlinable @inline(__always)
    static func checkInterruption(_ fiber: UnsafeMutablePointer<spindle_fiber_t>) throws {
        if _slowPath(fiber.pointee.cancelled != 0) { throw CancellationError() }
        if _slowPath(fiber.pointee.deadline_passed != 0) { throw FiberTimeoutError() }
    }

    /// Throws for a wake that interrupted a cancellable wait.
    @inlinable @inline(__always)
    static func throwIfInterrupted(_ reason: WakeReason) throws {
        switch reason {
        case .ready: return
        case .cancelled: throw CancellationError()
        case .timedOut: throw FiberTimeoutError()
        case .closed: return
        }
    }
}

/// A reference to a live fiber, for waking it from a loop callback or another fiber.
///
/// It is a plain value (a pointer and the fiber's id): copying it costs nothing. Use it only on
/// the fiber's loop thread, and only while the fiber is live; the id check turns a stale
/// reference into a clear error instead of waking a stranger.
public struct FiberRef: Hashable, @unchecked Sendable, CustomStringConvertible {
    @usableFromInline let fiber: UnsafeMutablePointer<spindle_fiber_t>
    /// The fiber's id, unique on its loop.
    public let id: UInt64

    @inlinable @inline(__always)
    init(_ fiber: UnsafeMutablePointer<spindle_fiber_t>) {
        self.fiber = fiber
        self.id = fiber.pointee.id
    }

    /// The fiber's name ("" when spawned without one).
    public var name: String {
        precondition(fiber.pointee.id == id, "FiberRef used after fiber #\(id) finished")
        return Scheduler.name(of: fiber)
    }

    /// The fiber's state right now.
    public var state: Fiber.State {
        fiber.pointee.id == id ? Fiber.State(fiber) : .finished
    }

    /// How deep this fiber's stack has gone so far (its high-water mark), against the stack's
    /// size — when it was spawned in painting mode (``StackPool/paintsStacks``); nil otherwise,
    /// and once it has finished (the deepest finished fiber is ``Scheduler/stackHighWater``).
    /// Scans the stack: a debugging aid. Call it on the fiber's loop thread.
    public var stackHighWater: Scheduler.StackHighWater? {
        guard fiber.pointee.id == id, fiber.pointee.painted != 0,
            fiber.pointee.state != UInt8(SPINDLE_FIBER_FINISHED)
        else { return nil }
        return Scheduler.of(fiber.pointee.sched).highWater(of: fiber)
    }

    /// Makes a parked fiber runnable; ``Fiber/park(_:detail:cancellable:)`` returns `reason` in it.
    ///
    /// Must be called on the fiber's loop thread, for a fiber that is parked. Waking a fiber that
    /// is not parked (or has finished) is a bug in the waker and stops the process with a message
    /// naming the fiber and its state.
    @inlinable @inline(__always)
    public func wake(_ reason: Fiber.WakeReason = .ready) {
        let core = markWoken(reason)
        Scheduler.enqueue(fiber, on: core)
        if core.pointee.draining == 0, core.pointee.idle_active == 0 { Scheduler.of(core).startIdle() }
    }

    /// Checks the wake is legal and makes the fiber runnable (not yet queued); its scheduler.
    @inlinable @inline(__always)
    func markWoken(_ reason: Fiber.WakeReason) -> UnsafeMutablePointer<spindle_sched_t> {
        let core = fiber.pointee.sched!
        if _slowPath(
            fiber.pointee.id != id || fiber.pointee.state != UInt8(SPINDLE_FIBER_PARKED)
                || spindle_thread_id_or_zero() != core.pointee.owner_thread_id)
        {
            badWake()
        }
        fiber.pointee.state = UInt8(SPINDLE_FIBER_RUNNABLE)
        fiber.pointee.wake_status = reason.rawValue
        core.pointee.parked &-= 1
        core.pointee.wakes &+= 1
        spindle_trace_record(core, UInt32(SPINDLE_TRACE_WAKE), id, UInt32(reason.rawValue))
        return core
    }

    /// ``wake(_:)`` from an I/O completion: runs the fiber right away when the loop side is in
    /// a plain libuv callback (see `Scheduler.runWoken`), else queues it as `wake` does.
    package func wakeFromCompletion(_ reason: Fiber.WakeReason = .ready) {
        let core = fiber.pointee.sched!
        let runsNow = core.pointee.draining == 0 && spindle_current_fiber() == nil
        spindle_trace_record(core, UInt32(SPINDLE_TRACE_IO), id, runsNow ? 1 : 0)
        _ = markWoken(reason)
        if runsNow { return Scheduler.runWoken(fiber, core: core) }
        Scheduler.enqueue(fiber, on: core)
        if core.pointee.draining == 0, core.pointee.idle_active == 0 { Scheduler.of(core).startIdle() }
    }

    @inline(never) @usableFromInline
    func badWake() -> Never {
        if fiber.pointee.id != id { fatalError("FiberRef.wake(): fiber #\(id) has already finished") }
        let core = fiber.pointee.sched!
        if spindle_thread_id_or_zero() != core.pointee.owner_thread_id { usedFromAnotherThread("FiberRef.wake()") }
        fatalError("FiberRef.wake(): \(Scheduler.describe(fiber)) is not parked")
    }

    /// Stops the process: `what` was called for this fiber on a thread that is not its loop's.
    @inline(never)
    func usedFromAnotherThread(_ what: String) -> Never {
        let owner = Scheduler.of(fiber.pointee.sched.unsafelyUnwrapped).loop
        let here = EventLoop.current.map { "\($0)'s thread" } ?? "a thread that runs no loop"
        fatalError(
            "\(what) for fiber #\(id) of \(owner) called from \(here): a fiber is woken and cancelled "
                + "on its own loop's thread; get there with loop.post { } (or loop.call { } from a fiber)")
    }

    /// Marks the fiber cancelled and interrupts its wait if that wait is cancellable: its
    /// current or next blocking call throws `CancellationError`. See ``FiberHandle/cancel()``.
    /// Call it on the fiber's loop's thread; from another it stops the process, naming both.
    public func cancel() {
        if _slowPath(spindle_thread_id_or_zero() != fiber.pointee.sched.unsafelyUnwrapped.pointee.owner_thread_id) {
            usedFromAnotherThread("cancel()")
        }
        guard fiber.pointee.id == id, fiber.pointee.state != UInt8(SPINDLE_FIBER_FINISHED) else { return }
        fiber.pointee.cancelled = 1
        if isParked, fiber.pointee.park_cancellable != 0 { wake(.cancelled) }
    }

    /// The loop the fiber runs on.
    public var loop: EventLoop {
        precondition(fiber.pointee.id == id, "FiberRef used after fiber #\(id) finished")
        return Scheduler.of(fiber.pointee.sched).loop
    }

    /// Whether the fiber is parked in ``Fiber/park(waitingFor:_:)`` for `object` right now (a
    /// waker that may arrive after the wait was interrupted checks this before waking).
    package func isParked(waitingFor object: AnyObject) -> Bool {
        isParked && fiber.pointee.park_object == Unmanaged.passUnretained(object).toOpaque()
    }

    /// Whether the fiber is parked right now (so ``wake(_:)`` is allowed).
    public var isParked: Bool {
        fiber.pointee.id == id && fiber.pointee.state == UInt8(SPINDLE_FIBER_PARKED)
    }

    public var description: String {
        fiber.pointee.id == id ? Scheduler.describe(fiber) : "fiber #\(id) finished"
    }
}

extension EventLoop {
    /// Spawns a detached fiber on this loop: no handle, nothing to join, and nothing of
    /// Spindle's own allocated (its closure lives in the fiber's control block). Call it on the
    /// loop's thread; the fiber starts when the loop runs.
    @inlinable
    public func spawnDetached(name: String? = nil, stackSize: Int? = nil, _ body: @escaping () -> Void) {
        Scheduler.with(self) { $0.startDetached(body, name: name, stackSize: stackSize) }
    }

    /// This loop's fiber scheduler (made on first use).
    public var scheduler: Scheduler { Scheduler.of(self) }

    /// Spawns a fiber on this loop. Call it on the loop's thread; the fiber starts when the loop
    /// runs (``/SpindleLoop/EventLoop/run(_:)``).
    ///
    /// - Parameters:
    ///   - name: shown in traces, deadlock reports and stack-overflow messages (first 47 bytes).
    ///   - stackSize: usable stack bytes, rounded up to pages (default 64 KiB, minimum 16 KiB).
    ///   - body: what the fiber runs; its value or error is the handle's to join.
    @discardableResult @inlinable
    public func spawn<T>(
        name: String? = nil, stackSize: Int? = nil, _ body: @escaping () throws -> T
    ) -> FiberHandle<T> {
        Scheduler.with(self) { $0.spawn(name: name, stackSize: stackSize, body) }
    }
}

// MARK: - Pooled timers

/// A pooled loop timer that serves one fiber's deadline (``Fiber/withTimeout(_:_:)``) at a time,
/// reused so a deadline allocates nothing. (Sleeps use bare timers: see SleepTimer.swift.)
final class PooledTimer {
    enum Action {
        case none
        /// Mark the fiber's deadline scope at this depth as expired and interrupt its
        /// cancellable wait, if any.
        case deadline(FiberRef, depth: UInt8)
    }

    let timer: LoopTimer
    var action: Action = .none

    init(loop: EventLoop) {
        timer = LoopTimer(loop: loop) { _ in }
        timer.isLoopMachinery = true
        timer.setCallback { [unowned self] _ in self.fire() }
    }

    private func fire() {
        switch action {
        case .none:
            break
        case .deadline(let fiber, let depth):
            guard fiber.state != .finished else { return }
            let expired = fiber.fiber.pointee.deadline_expired
            if expired == 0 || depth < expired { fiber.fiber.pointee.deadline_expired = depth }
            fiber.fiber.pointee.deadline_passed = 1
            if fiber.isParked, fiber.fiber.pointee.park_cancellable != 0 { fiber.wake(.timedOut) }
        }
    }
}

extension Scheduler {
    func takeTimer() -> PooledTimer {
        if let timer = pooledTimers.popLast() { return timer }
        return PooledTimer(loop: loop)
    }

    func returnTimer(_ timer: PooledTimer) {
        timer.action = .none
        pooledTimers.append(timer)
    }
}
