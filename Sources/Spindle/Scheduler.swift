import CBoostContext
import CSpindleSupport
import Glibc
import SpindleLoop

/// Runs a loop's fibers: one per ``/SpindleLoop/EventLoop``, made on first use
/// (``SpindleLoop/EventLoop/scheduler``).
///
/// The run queue is intrusive (fibers link through their control blocks) and is drained from a
/// check watcher after each I/O poll. An idle watcher is active only while the queue is
/// non-empty, so a loop with no runnable fiber blocks in epoll instead of spinning. Resuming,
/// yielding, parking and waking allocate nothing, take no lock, make no syscall and do no
/// reference counting: they touch only the C control blocks.
public final class Scheduler: EventLoopAttachment {
    /// The loop whose thread runs these fibers.
    public unowned(unsafe) let loop: EventLoop
    @usableFromInline let core: UnsafeMutablePointer<spindle_sched_t>
    /// Where this scheduler's fiber stacks come from.
    public let stacks: StackPool
    @exclusivity(unchecked) private var drainWatcher: LoopWatcher!
    @exclusivity(unchecked) var idleWatcher: LoopWatcher!
    @exclusivity(unchecked) var pooledTimers: [PooledTimer] = []
    /// Bare timer handles for sleeping fibers (see ``Fiber/sleep(for:)``), closed with the loop.
    @exclusivity(unchecked) var sleepTimers: [RawTimer] = []
    /// Finished bodies kept for reuse: those nobody else referenced when their fibers were
    /// reclaimed (reset then), and those whose handles were still alive, kept only when their
    /// result has nothing to destroy (no object, no error, no buffer). Once every handle to
    /// one is gone, a later spawn reuses it instead of allocating: a wave of `spawn { … }`
    /// whose handles are joined and dropped after the fibers finish allocates no body of its
    /// own. Holding them changes no lifetime a program can see: a plain value has no deinit.
    @exclusivity(unchecked) private var pooledBodies = BodyRing()
    /// How many finished fiber bodies (about 150 bytes each) are kept for reuse, whether or not a
    /// handle still refers to them.
    @exclusivity(unchecked) public var maximumPooledBodies = 1 << 16
    @exclusivity(unchecked) private var isClosed = false

    /// How many fibers the scheduler resumes per loop iteration before it lets the loop poll for
    /// I/O again (fibers that yield go to the back of the queue). Larger values amortise the poll
    /// over more switches; smaller ones bound I/O latency behind busy fibers.
    @exclusivity(unchecked) public var resumesPerTurn = 1024

    /// A turn of this loop's fibers (one drain of the run queue) that takes longer than this is
    /// reported as a warning (`SpindleDiagnostics`, kind `slowTurn`), at most once every
    /// ``slowTurnWarningInterval``: the loop's I/O and timers waited that long, because a fiber
    /// computed or blocked the thread without parking or yielding. Nil: never reported. Counted
    /// in ``slowTurns``.
    public var slowTurnThreshold: Duration? = .milliseconds(100) {
        didSet { slowTurnTicks = slowTurnThreshold.map { UInt64($0 / .nanoseconds(1)) } ?? .max }
    }
    /// ``slowTurnThreshold`` in nanoseconds, as the drain compares it with ticks.
    @exclusivity(unchecked) var slowTurnTicks: UInt64 = 100_000_000
    /// The least time between two slow-turn warnings (default one second); the slow turns in
    /// between are counted, and the next warning says how many there were.
    @exclusivity(unchecked) public var slowTurnWarningInterval: Duration = .seconds(1)
    /// Turns longer than ``slowTurnThreshold`` so far.
    @exclusivity(unchecked) public private(set) var slowTurns: UInt64 = 0
    /// When the last slow-turn warning went out (monotonic ns), and how many were held back since.
    @exclusivity(unchecked) private var lastSlowTurnWarning: UInt64 = 0
    @exclusivity(unchecked) private var slowTurnsUnreported: UInt64 = 0

    /// A drain took at least ``slowTurnTicks`` ticks: converts them to nanoseconds and, past
    /// the threshold, counts and reports the turn.
    @inline(never)
    func turnMayHaveBeenSlow(ticks: UInt64) {
        let (ticksNow, nsNow) = (spindle_trace_clock(), spindle_monotonic_ns())
        let elapsedTicks = ticksNow &- core.pointee.clock_ticks0
        let rate =
            elapsedTicks > 0 && nsNow > core.pointee.clock_ns0
            ? Double(nsNow - core.pointee.clock_ns0) / Double(elapsedTicks) : 1
        let nanoseconds = UInt64(Double(ticks) * rate)
        guard nanoseconds >= slowTurnTicks else { return }
        slowTurns &+= 1
        let sinceLast = Double(nsNow &- lastSlowTurnWarning)
        if sinceLast < slowTurnWarningInterval / .nanoseconds(1), lastSlowTurnWarning != 0 {
            slowTurnsUnreported &+= 1
            return
        }
        let held = slowTurnsUnreported > 0 ? " (\(slowTurnsUnreported) more since the last warning)" : ""
        lastSlowTurnWarning = nsNow
        slowTurnsUnreported = 0
        spindleWarning(
            "\(loop): its fibers held the thread for \(nanoseconds / 1_000_000) ms in one turn without parking or "
                + "yielding, so its I/O and timers waited that long\(held); a fiber computes or blocks the thread "
                + "(trace it with SPINDLE_TRACE to see which)",
            kind: .slowTurn, loop: "\(loop)")
    }

    /// Whether fiber switches find the Swift runtime's exclusivity access set with one load
    /// (true when calibration found it on this thread), or call the runtime on every switch.
    public var usesExclusivityFastPath: Bool {
        spindle_exclusivity_fast_path_available(core.pointee.exclusivity_head) != 0
    }

    /// Makes every switch call the runtime to move access sets (the path taken when calibration
    /// fails). For tests and for comparing the two paths' costs.
    public func useExclusivityRuntimeCalls() {
        core.pointee.exclusivity_head = spindle_exclusivity_fallback_location()
    }

    /// Stack size for fibers spawned without one.
    @exclusivity(unchecked) public var defaultStackSize = StackPool.defaultStackSize

    /// The scheduler's own random numbers (`Fiber.select` shuffles its cases with
    /// them): seeded once from the system, then no syscall per draw.
    @exclusivity(unchecked) var random = FastRandom()

    /// Where SPINDLE_TRACE asked for this loop's trace to be written at close.
    var environmentTracePath: String?
    /// The deepest stack use seen in painting mode (``StackPool/paintsStacks``), relative to its
    /// stack's size: bytes used, the stack's usable size, and the fiber.
    public struct StackHighWater: Sendable, Equatable {
        /// Bytes of the stack the fiber wrote, measured from its top (the paint it overwrote).
        public let usedBytes: Int
        /// The stack's usable size in bytes (the guard page not counted).
        public let stackBytes: Int
        /// The fiber that went deepest: its name, or `#id` when it has none.
        public let fiber: String
        /// `usedBytes` over `stackBytes`: near 1 means the next deeper call overflows.
        public var fraction: Double { Double(usedBytes) / Double(max(stackBytes, 1)) }

        package init(usedBytes: Int, stackBytes: Int, fiber: String) {
            (self.usedBytes, self.stackBytes, self.fiber) = (usedBytes, stackBytes, fiber)
        }
    }
    /// The deepest stack use seen so far, while ``StackPool/paintsStacks`` is on (nil before
    /// the first painted fiber finishes, or when painting is off).
    public private(set) var stackHighWater: StackHighWater?

    @inline(never)
    func measureStack(of fiber: UnsafeMutablePointer<spindle_fiber_t>) {
        let mark = highWater(of: fiber)
        fiber.pointee.painted = 0
        if stackHighWater.map({ mark.fraction > $0.fraction }) ?? true { stackHighWater = mark }
    }

    /// How deep `fiber`'s painted stack has gone so far, against its size.
    func highWater(of fiber: UnsafeMutablePointer<spindle_fiber_t>) -> StackHighWater {
        let size = Int(fiber.pointee.stack_usable)
        return StackHighWater(
            usedBytes: stacks.usedBytes(of: fiber), stackBytes: size, fiber: Self.describeShort(fiber))
    }

    static func describeShort(_ fiber: UnsafeMutablePointer<spindle_fiber_t>) -> String {
        let name = name(of: fiber)
        return name.isEmpty ? "fiber #\(fiber.pointee.id)" : "fiber \"\(name)\" (#\(fiber.pointee.id))"
    }

    /// Fiber names by id while tracing (a trace outlives the fibers it shows).
    var traceNames: [UInt64: String] = [:]

    @usableFromInline
    init(loop: EventLoop) {
        self.loop = loop
        self.stacks = StackPool()
        core = UnsafeMutablePointer<spindle_sched_t>.allocate(capacity: 1)
        core.initialize(to: spindle_sched_t())
        core.pointee.next_id = 1
        core.pointee.clock_ticks0 = spindle_trace_clock()
        core.pointee.clock_ns0 = spindle_monotonic_ns()
        core.pointee.owner_thread = UInt64(pthread_self())
        core.pointee.owner_thread_id = spindle_thread_id()
        core.pointee.annotate = spindle_sanitizer_annotations_enabled() != 0 ? 1 : 0
        core.pointee.exclusivity_head = spindle_exclusivity_head_location()
        #if !SPINDLE_SANITIZERS
        if core.pointee.annotate != 0 {
            fatalError(
                "Spindle's C support was built with a sanitizer but its Swift code was not told: "
                    + "build with -Xswiftc -DSPINDLE_SANITIZERS (as `make asan` and `make tsan` do) so fiber "
                    + "switches are annotated for the sanitizer")
        }
        #endif
        core.pointee.owner = Unmanaged.passUnretained(self).toOpaque()
        core.pointee.posted_flag = loop.postedFlag
        spindle_sched_register(core)
        startTracingFromEnvironment()
        drainWatcher = LoopWatcher(loop: loop, kind: .check)
        idleWatcher = LoopWatcher(loop: loop, kind: .idle)
        drainWatcher.isLoopMachinery = true
        idleWatcher.isLoopMachinery = true
        drainWatcher.keepsLoopAlive = false
        drainWatcher.start { [unowned(unsafe) self] in self.drain() }
        idleWatcher.start {}
        idleWatcher.stop()
        let status = spindle_overflow_reporter_install_on_this_thread()
        if status != 0 {
            spindleWarning("stack overflow reporting is off on this thread: \(String(cString: strerror(status)))")
        }
    }

    /// The scheduler of `loop`, created on first use.
    @inlinable
    static func of(_ loop: EventLoop) -> Scheduler {
        with(loop) { $0 }
    }

    /// Runs `body` with the scheduler of `loop` (created on first use), lent without a retain
    /// and a release (the loop holds it): a spawn's path.
    @inlinable @inline(__always)
    static func with<R>(_ loop: EventLoop, _ body: (Scheduler) throws -> R) rethrows -> R {
        try loop.withAttachment(Scheduler.self, { Scheduler(loop: loop) }, body)
    }

    @inlinable @inline(__always)
    static func of(_ core: UnsafeMutablePointer<spindle_sched_t>) -> Scheduler {
        Unmanaged<Scheduler>.fromOpaque(core.pointee.owner).takeUnretainedValue()
    }

    /// The scheduler of `core`, lent (no reference count change): its loop holds it for as long
    /// as any of its fibers lives. For a fiber's own use across a park, where a reference taken
    /// by ``of(_:)-(UnsafeMutablePointer<spindle_sched_t>)`` is retained and released around it.
    @inlinable @inline(__always)
    static func lent(_ core: UnsafeMutablePointer<spindle_sched_t>) -> Unmanaged<Scheduler> {
        Unmanaged<Scheduler>.fromOpaque(core.pointee.owner)
    }

    // MARK: Spawning

    @inlinable
    func spawn<T>(
        name: String?, stackSize: Int?, _ body: @escaping () throws -> T
    ) -> FiberHandle<T> {
        // Only `setBody` is generic (and specialised in the caller); the rest is not.
        let task = takeBody()
        task.setBody(body)
        start(task, name: name, stackSize: stackSize)
        return FiberHandle(task: task)
    }

    /// The most recently pooled body whose handles are gone (the likeliest still in the
    /// cache), or a new one. A body whose handle lives on moves to the front of the ring; a
    /// spawn looks at no more than four.
    @usableFromInline
    func takeBody() -> FiberBody {
        var looked = 0
        while looked < 4, var body = pooledBodies.popLast() {
            if isKnownUniquelyReferenced(&body) {
                body.resetFinished()  // pooled with nothing to destroy, or reset already
                return body
            }
            pooledBodies.prepend(body)
            looked &+= 1
        }
        core.pointee.bodies_made &+= 1
        return FiberBody()
    }

    /// Gives `task` (just taken by ``takeBody()``, not shared yet) a stack and a control block
    /// and puts it in the run queue.
    @usableFromInline
    func start(_ task: FiberBody, name: String?, stackSize: Int?) {
        // The control block's reference. `task` came from `takeBody()`, new or found uniquely
        // referenced, and no handle to it exists yet: no other thread can be touching its count,
        // so the increment need not be atomic (a locked instruction a spawn otherwise).
        let body = Unmanaged.passUnretained(task).toOpaque()
        spindle_retain_unshared(body)
        let fiber = startFiber(name: name, stackSize: stackSize, body: body)
        task.id = fiber.pointee.id
        task.fiber = fiber
    }

    /// Starts a detached fiber: its closure is kept in the control block, with no body object
    /// and no handle, so spawning it allocates nothing of Spindle's own.
    @usableFromInline
    func startDetached(_ body: @escaping () -> Void, name: String?, stackSize: Int?) {
        let fiber = startFiber(name: name, stackSize: stackSize, body: nil)
        DetachedBody.store(body, in: fiber)
    }

    @inline(__always)
    private func startFiber(name: String?, stackSize: Int?, body: UnsafeMutableRawPointer?) -> UnsafeMutablePointer<
        spindle_fiber_t
    > {
        if _slowPath(spindle_thread_id_or_zero() != core.pointee.owner_thread_id) {
            loop.preconditionOnLoopThread("spawning a fiber")
        }
        if _slowPath(isClosed) { preconditionFailure("cannot spawn a fiber on a closed EventLoop") }
        let fiber = stacks.take(stackSize: stackSize ?? defaultStackSize)
        if _slowPath(stacks.paintsStacks) { stacks.paint(fiber) }
        let id = core.pointee.next_id
        core.pointee.next_id = id &+ 1
        prepare(fiber, id: id, name: name, body: body)
        core.pointee.spawns &+= 1
        if _slowPath(core.pointee.trace != nil) {
            spindle_trace_record(core, UInt32(SPINDLE_TRACE_SPAWN), id, 0)
            if let name { traceNames[id] = name }
        }
        enqueue(fiber)
        return fiber
    }

    @inline(__always)
    private func prepare(
        _ fiber: UnsafeMutablePointer<spindle_fiber_t>, id: UInt64, name: String?, body: UnsafeMutableRawPointer?
    ) {
        // The stack's top is the control block itself: nothing past its first two lines is read.
        fiber.pointee.context = make_fcontext(
            UnsafeMutableRawPointer(fiber), Int(fiber.pointee.stack_usable), fiberEntry)
        fiber.pointee.sched = core
        fiber.pointee.id = id
        fiber.pointee.state = UInt8(SPINDLE_FIBER_CREATED)
        fiber.pointee.park_reason = 0
        fiber.pointee.cancelled = 0
        fiber.pointee.wake_status = 0
        fiber.pointee.park_cancellable = 0
        fiber.pointee.deadline_passed = 0
        fiber.pointee.deadline_depth = 0
        fiber.pointee.deadline_expired = 0
        fiber.pointee.exclusivity = (0, 0)
        fiber.pointee.body = body
        fiber.pointee.park_detail = 0
        fiber.pointee.on_wait_list = 0
        setName(fiber, name)
        // Link into the list of live fibers (reports, gdb).
        fiber.pointee.all_prev = nil
        fiber.pointee.all_next = core.pointee.all_head
        core.pointee.all_head?.pointee.all_prev = fiber
        core.pointee.all_head = fiber
    }

    @inline(__always)
    private func setName(_ fiber: UnsafeMutablePointer<spindle_fiber_t>, _ name: String?) {
        guard var name else {
            fiber.pointee.named = 0
            return
        }
        fiber.pointee.named = 1
        withUnsafeMutableBytes(of: &fiber.pointee.name) { buffer in
            name.withUTF8 { utf8 in
                let count = min(utf8.count, buffer.count - 1)
                buffer.baseAddress!.copyMemory(from: utf8.baseAddress!, byteCount: count)
                buffer[count] = 0
            }
        }
    }

    // MARK: Run queue

    /// Puts a fiber at the back of the run queue and makes sure the loop will not block.
    @inline(__always)
    func enqueue(_ fiber: UnsafeMutablePointer<spindle_fiber_t>) {
        Scheduler.enqueue(fiber, on: core)
        if core.pointee.draining == 0, core.pointee.idle_active == 0 { startIdle() }
    }

    @inlinable @inline(__always)
    static func enqueue(_ fiber: UnsafeMutablePointer<spindle_fiber_t>, on core: UnsafeMutablePointer<spindle_sched_t>)
    {
        requeue(fiber, on: core)
        core.pointee.enqueued &+= 1
    }

    /// Appends to the run queue without counting: for a fiber that was just taken off the queue
    /// (a yield, which the yield counter already counts). The queue ends in a nil `next`: a
    /// store here (to a line the switch writes anyway) and none of the tail's in the drain.
    @inlinable @inline(__always)
    static func requeue(_ fiber: UnsafeMutablePointer<spindle_fiber_t>, on core: UnsafeMutablePointer<spindle_sched_t>)
    {
        fiber.pointee.next = nil
        if core.pointee.run_head == nil {
            core.pointee.run_head = fiber
        } else {
            core.pointee.run_tail.unsafelyUnwrapped.pointee.next = fiber
        }
        core.pointee.run_tail = fiber
    }

    /// Fibers in the run queue now. Exact on the loop side between drains.
    var runQueueLength: UInt64 {
        core.pointee.enqueued &+ core.pointee.yields &- core.pointee.popped
    }

    @inline(never) @usableFromInline
    func startIdle() {
        core.pointee.idle_active = 1
        idleWatcher.resume()
    }

    /// Gives a finished fiber's stack back to the pool. Runs on the loop side, never on the
    /// fiber's own stack. Called, not inlined, from each of the drain's resume sites.
    @inline(never)
    func reclaim(_ fiber: UnsafeMutablePointer<spindle_fiber_t>) {
        if let prev = fiber.pointee.all_prev {
            prev.pointee.all_next = fiber.pointee.all_next
        } else {
            core.pointee.all_head = fiber.pointee.all_next
        }
        fiber.pointee.all_next?.pointee.all_prev = fiber.pointee.all_prev
        fiber.pointee.all_next = nil
        fiber.pointee.all_prev = nil
        core.pointee.finishes &+= 1
        // The control block held the body's +1: pool it, if nothing it keeps needs destroying
        // or no handle refers to it (then it is reset now).
        if let raw = fiber.pointee.body {
            fiber.pointee.body = nil
            if pooledBodies.count < maximumPooledBodies,
                Unmanaged<FiberBody>.fromOpaque(raw)._withUnsafeGuaranteedRef({ $0.hasNothingToDestroy })
            {
                // Whether a handle still refers to it is asked when a spawn takes it.
                pooledBodies.append(retained: raw)
            } else {
                release(body: raw)
            }
        }
        #if SPINDLE_SANITIZERS
        spindle_sanitizer_fiber_destroyed(fiber)
        #endif
        if _slowPath(fiber.pointee.painted != 0) { measureStack(of: fiber) }
        fiber.pointee.id = 0
        stacks.give(fiber)
    }

    /// A finished fiber's body that keeps something to destroy, or that the pool has no room
    /// for: the control block's reference is dropped, or the body is reset and pooled if that
    /// was the last one. Out of line, so that reclaim's common case saves no registers.
    @inline(never)
    private func release(body raw: UnsafeMutableRawPointer) {
        var owned = Unmanaged<FiberBody>.fromOpaque(raw).takeRetainedValue()
        if pooledBodies.count < maximumPooledBodies, isKnownUniquelyReferenced(&owned) {
            owned.reset()
            pooledBodies.append(owned)
        }
    }

    // MARK: EventLoopAttachment

    /// The parked fibers, described (id, name, what each waits for), for the loop's deadlock
    /// report: `run()` found nothing runnable and no I/O or timer that could wake them.
    public func stalledWaiters() -> [String] {
        guard core.pointee.parked > 0 else { return [] }
        return liveFibers().filter { Int($0.pointee.state) == SPINDLE_FIBER_PARKED }.map(Self.describe)
    }

    /// The fibers still alive, described, for the loop's report of what keeps it from closing.
    public func openItems() -> [String] {
        liveFibers().map { fiber in
            let state = Int(fiber.pointee.state)
            let what = state == SPINDLE_FIBER_CREATED ? "never started" : "suspended"
            return "\(Self.describe(fiber)) (\(what); a suspended fiber is never unwound by force)"
        }
    }

    /// Closes the scheduler's loop handles and pooled timers (the loop is closing); spawning
    /// afterwards stops the process, saying the loop is closed.
    public func loopWillClose() {
        isClosed = true
        drainWatcher.close()
        idleWatcher.close()
        for pooled in pooledTimers { pooled.timer.close() }
        pooledTimers.removeAll()
        closeSleepTimers()
        stacks.trim()
        pooledBodies.removeAll()
        writeEnvironmentTrace()
    }

    /// Cancels every live fiber not cancelled yet (see ``FiberHandle/cancel()``): each one's
    /// current or next blocking call throws `CancellationError`. Cooperative, as every
    /// cancellation is: nothing is unwound by force. Returns how many fibers it cancelled. Call
    /// it on the loop's thread.
    @discardableResult
    public func cancelAll() -> Int {
        loop.preconditionOnLoopThread("Scheduler.cancelAll()")
        var count = 0
        for fiber in liveFibers() where fiber.pointee.cancelled == 0 {
            FiberRef(fiber).cancel()
            count += 1
        }
        return count
    }

    /// The live fibers, described (name, id, state or park reason), oldest first.
    public var liveFiberDescriptions: [String] { liveFibers().map(Self.describe) }

    func liveFibers() -> [UnsafeMutablePointer<spindle_fiber_t>] {
        var result: [UnsafeMutablePointer<spindle_fiber_t>] = []
        var cursor = core.pointee.all_head
        while let fiber = cursor {
            result.append(fiber)
            cursor = fiber.pointee.all_next
        }
        return result.reversed()
    }

    static func name(of fiber: UnsafeMutablePointer<spindle_fiber_t>) -> String {
        guard fiber.pointee.named != 0 else { return "" }
        return withUnsafeBytes(of: &fiber.pointee.name) { raw in
            String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
        }
    }

    /// `fiber "consumer" (#3) parked on channel receive`
    static func describe(_ fiber: UnsafeMutablePointer<spindle_fiber_t>) -> String {
        let name = Self.name(of: fiber)
        var text = name.isEmpty ? "fiber #\(fiber.pointee.id)" : "fiber \"\(name)\" (#\(fiber.pointee.id))"
        let state = Fiber.State(fiber)
        text += " \(state)"
        if case .parked(.join) = state, fiber.pointee.park_detail != 0 {
            text += " of fiber #\(fiber.pointee.park_detail)"
        }
        return text
    }

    deinit {
        pooledBodies.removeAll()
        spindle_sched_unregister(core)
        stopTracing()
        core.deallocate()
    }
}

// MARK: - Fiber entry

/// Every fiber starts here. It never returns: the body runs in ``runFiberBody(_:)``, which
/// returns (releasing everything the body held) before the final switch to the loop side, which
/// reclaims the stack as soon as it is back. A fiber never frees its own stack.
private let fiberEntry: @convention(c) (transfer_t) -> Void = { transfer in
    let fiber = transfer.data.unsafelyUnwrapped.assumingMemoryBound(to: spindle_fiber_t.self)
    let core = fiber.pointee.sched.unsafelyUnwrapped
    core.pointee.main_context = transfer.fctx
    #if SPINDLE_SANITIZERS
    spindle_sanitizer_after_switch(core, fiber)
    #endif
    // Started: from here on the switch path keeps the state (yields leave it runnable).
    fiber.pointee.state = UInt8(SPINDLE_FIBER_RUNNABLE)
    runFiberBody(fiber)
    fiber.pointee.state = UInt8(SPINDLE_FIBER_FINISHED)
    Scheduler.finish(fiber, core: core)
}

@inline(never)
private func runFiberBody(_ fiber: UnsafeMutablePointer<spindle_fiber_t>) {
    if let body = fiber.pointee.body {
        // The control block keeps its reference until the loop side reclaims the fiber.
        Unmanaged<FiberBody>.fromOpaque(body)._withUnsafeGuaranteedRef { $0.run() }
        return
    }
    // Detached: take the closure out of the control block; its captures go when it returns.
    // One that captures nothing is called with a literal nil context: no release of nil.
    if fiber.pointee.detached_context != nil {
        DetachedBody.slot(of: fiber).move().run()
    } else {
        let function = fiber.pointee.detached_function.unsafelyUnwrapped
        unsafeBitCast(ClosureWords(function: function, context: nil), to: DetachedBody.self).run()
    }
}

/// A detached fiber's closure, as stored in the two words of its control block.
struct DetachedBody {
    let run: () -> Void

    /// Keeps `run` in the control block's `detached_function`/`detached_context` words, with a
    /// reference to its context when it has one: a closure that captures nothing costs no
    /// retain (a call on nil, every spawn). A concrete (non-generic) struct holds the closure
    /// at its natural representation, so no reabstraction thunk (which would allocate) is made.
    @inline(__always)
    static func store(_ run: @escaping () -> Void, in fiber: UnsafeMutablePointer<spindle_fiber_t>) {
        // The two words as plain pointers: read without a copy of the closure (which would
        // retain its context).
        let (function, context) = unsafeBitCast(
            DetachedBody(run: run), to: (UnsafeMutableRawPointer, UnsafeMutableRawPointer?).self)
        fiber.pointee.detached_function = function
        fiber.pointee.detached_context = context
        if let context { _ = Unmanaged<AnyObject>.fromOpaque(context).retain() }
    }

    /// The control block's `detached_function`/`detached_context` words, as this struct.
    @inline(__always)
    static func slot(of fiber: UnsafeMutablePointer<spindle_fiber_t>) -> UnsafeMutablePointer<DetachedBody> {
        let offset = MemoryLayout<spindle_fiber_t>.offset(of: \.detached_function).unsafelyUnwrapped
        return (UnsafeMutableRawPointer(fiber) + offset).bindMemory(to: DetachedBody.self, capacity: 1)
    }
}
