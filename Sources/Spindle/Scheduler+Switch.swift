import CBoostContext
import CSpindleSupport

// MARK: - The switch path
//
// Resume, yield, park and finish are plain loads and stores on the C control blocks, one
// thread-local store and the jump: no allocation, no lock, no syscall, no reference counting
// (`make bench` counts the instructions with callgrind and the allocations with a malloc
// interposer).
//
// Every switch goes through the loop side: `drain()` resumes a fiber, the fiber yields, parks or
// finishes back to it. A finishing fiber's last switch carries its control block, and the loop
// side gives its stack back at once, while its lines are still in the cache. (A variant that
// switched fiber to fiber directly ran fewer instructions on `fanout` but was slower on the
// clock and dearer on `switch`, so it was dropped.)
//
// Swift's dynamic-exclusivity access sets are per fiber, as they are per Task: when a fiber
// switches out in the middle of an access, its open accesses come off the thread's set and are
// kept in the fiber; they go back on when it is resumed. The runtime is called only when there is
// something to move, which one load tells (see spindle_exclusivity_head_location).

extension Scheduler {
    /// Resumes runnable fibers until the queue is empty or ``resumesPerTurn`` is spent.
    func drain() {
        let core = self.core
        core.pointee.turns &+= 1
        let drainStarted = spindle_trace_clock()
        defer {
            let ticks = spindle_trace_clock() &- drainStarted
            core.pointee.drain_ticks &+= ticks
            // A tick lasts at most a nanosecond (the TSC runs at 1 GHz or more; elsewhere the
            // clock counts nanoseconds): a turn of fewer ticks than the threshold's nanoseconds
            // was not slow, and only the others are looked at closely.
            if _slowPath(ticks >= slowTurnTicks) { turnMayHaveBeenSlow(ticks: ticks) }
        }
        spindle_trace_record(core, UInt32(SPINDLE_TRACE_TURN), 0, 0)
        core.pointee.draining = 1
        let accessHead = core.pointee.exclusivity_head.unsafelyUnwrapped
        // The loop side runs no Swift code between resumes, so its access set is fixed for the
        // whole drain: when it is empty, only the fiber's own saved set needs checking.
        let loopSideHasAccesses = accessHead.pointee != nil
        let length = runQueueLength
        if length > core.pointee.run_queue_high_water { core.pointee.run_queue_high_water = length }
        let turnBudget = max(resumesPerTurn, 1)
        // Tracing is looked at once a drain, and the loop comes in two copies: with tracing off
        // the resume path holds no trace code at all (the same instructions as a build without
        // the recorder), for one test a drain.
        let budget: Int
        #if SPINDLE_NO_TRACE  // `make trace-cost`'s build without tracing code
        budget = Scheduler.runQueue(
            core, budget: turnBudget, accessHead: accessHead, loopSideHasAccesses: loopSideHasAccesses, tracing: false)
        #else
        if _slowPath(core.pointee.trace != nil) {
            budget = Scheduler.runQueue(
                core, budget: turnBudget, accessHead: accessHead, loopSideHasAccesses: loopSideHasAccesses,
                tracing: true)
        } else {
            budget = Scheduler.runQueue(
                core, budget: turnBudget, accessHead: accessHead, loopSideHasAccesses: loopSideHasAccesses,
                tracing: false)
        }
        #endif
        core.pointee.popped &+= UInt64(turnBudget &- budget)
        endResuming()
        if core.pointee.run_head != nil {
            if core.pointee.idle_active == 0 { startIdle() }
        } else if core.pointee.idle_active != 0 {
            core.pointee.idle_active = 0
            idleWatcher.stop()
        }
    }

    /// False in `make trace-cost`'s build without tracing code (`-DSPINDLE_NO_TRACE`).
    #if SPINDLE_NO_TRACE
    static let tracingCompiledIn = false
    #else
    static let tracingCompiledIn = true
    #endif

    /// Resumes fibers off the run queue until it is empty or `budget` resumes are done; the
    /// budget left. Inlined twice into `drain`, with `tracing` a constant in each copy.
    @inline(__always)
    static func runQueue(
        _ core: UnsafeMutablePointer<spindle_sched_t>, budget turnBudget: Int,
        accessHead: UnsafePointer<UnsafeMutableRawPointer?>, loopSideHasAccesses: Bool, tracing: Bool
    ) -> Int {
        var budget = turnBudget
        // The first resume of a traced drain reads the clock; the others take the time of the
        // switch-out just before them (the drain loop is a few instructions).
        var firstResume = true
        // In runs of 64 resumes: between runs, work another thread posted (a cross-loop call, a
        // channel's wake-up) ends the turn, so that fibers that keep this loop busy delay it by
        // 64 resumes, not a whole turn's budget. Nothing is added to a resume itself.
        while budget > 0 {
            let run = min(budget, 64)
            var left = run
            while let fiber = core.pointee.run_head {
                // The queue is empty once its head is nil; the tail is then stale and unused.
                core.pointee.run_head = fiber.pointee.next
                // With thousands of runnable fibers, each one's control block and stack have left
                // the cache since its last turn: start loading the next fiber's saved registers
                // (its control block's first line, which points to them, was prefetched a turn
                // ago) — for a first resume also the frames below them and its body — and the
                // control block after it.
                if let next = core.pointee.run_head {
                    spindle_prefetch(next.pointee.context)
                    if next.pointee.state == UInt8(SPINDLE_FIBER_CREATED) { spindle_prefetch_first_run(next) }
                    if let after = next.pointee.next { spindle_prefetch(after) }
                }
                resume(
                    fiber, core: core, accessHead: accessHead, loopSideHasAccesses: loopSideHasAccesses,
                    tracing: tracing, firstResume: &firstResume)
                left &-= 1
                if left == 0 { break }
            }
            budget &-= run &- left
            if left > 0 || spindle_flag_is_set(core.pointee.posted_flag) != 0 { break }
        }
        return budget
    }

    /// Runs `fiber` from the loop side until it yields, parks or finishes: the drain's step. A
    /// fiber that finished is reclaimed here.
    @inline(__always)
    static func resume(
        _ fiber: UnsafeMutablePointer<spindle_fiber_t>, core: UnsafeMutablePointer<spindle_sched_t>,
        accessHead: UnsafePointer<UnsafeMutableRawPointer?>, loopSideHasAccesses: Bool, tracing: Bool,
        firstResume: inout Bool
    ) {
        spindle_set_current_fiber(fiber)
        if _slowPath(tracing) {
            if firstResume {
                spindle_trace_record(core, UInt32(SPINDLE_TRACE_RESUME), fiber.pointee.id, 0)
                firstResume = false
            } else {
                spindle_trace_record_at_previous(core, UInt32(SPINDLE_TRACE_RESUME), fiber.pointee.id, 0)
            }
        }
        if _fastPath(fiber.pointee.exclusivity.0 == 0 && !loopSideHasAccesses) {
            if _slowPath(Scheduler.jumpInto(fiber, core: core)) {
                return finished(fiber, core: core, tracing: tracing, firstResume: &firstResume)
            }
            // The fiber may have switched out in the middle of an access: keep it with the fiber.
            if _slowPath(accessHead.pointee != nil) { Scheduler.saveAccesses(of: fiber) }
        } else if Scheduler.resumeWithAccesses(fiber, core: core) {
            return finished(fiber, core: core, tracing: tracing, firstResume: &firstResume)
        }
        // The slice's end is recorded here, on the loop side, from the state the fiber
        // left: nothing on the fiber's yield or park path (a register test per switch).
        if _slowPath(tracing) { Scheduler.traceSwitchOut(fiber, core: core) }
    }

    /// A fiber that has just finished, back on the loop side: its stack goes back to the pool
    /// at once, while its control block is still in the cache. Inlined into the drain's two
    /// copies, where `tracing` is a constant: `firstResume` then stays in a register.
    @inline(__always)
    static func finished(
        _ fiber: UnsafeMutablePointer<spindle_fiber_t>, core: UnsafeMutablePointer<spindle_sched_t>, tracing: Bool,
        firstResume: inout Bool
    ) {
        if _slowPath(tracing) {
            Scheduler.traceSwitchOut(fiber, core: core)
            // The reclaim (which may run a value's deinit) is loop-side time: the next resume
            // reads the clock instead of taking this switch-out's time as its start.
            firstResume = true
        }
        // No fiber is current on the loop side: the reclaim may destroy the fiber's value, and
        // the value's deinit may ask (or try to yield).
        spindle_set_current_fiber(nil)
        Scheduler.lent(core)._withUnsafeGuaranteedRef { $0.reclaim(fiber) }
    }

    /// Runs a fiber that an I/O completion has just made runnable at once, from inside the
    /// completion's libuv callback, instead of queueing it for the next drain — when the loop
    /// side is in a plain callback (no fiber running, no drain under way). The fiber then
    /// works on the socket whose kernel state the completion has just brought into the
    /// cache, as a callback would; queued, it came back to that socket after every other
    /// completion of the batch and missed the cache on both sides of the kernel. The caller
    /// has checked that no fiber runs and no drain is under way (else it queues the fiber).
    static func runWoken(_ fiber: UnsafeMutablePointer<spindle_fiber_t>, core: UnsafeMutablePointer<spindle_sched_t>) {
        core.pointee.draining = 1
        core.pointee.completion_resumes &+= 1
        let started = spindle_trace_clock()
        let accessHead = core.pointee.exclusivity_head.unsafelyUnwrapped
        var firstResume = true
        resume(
            fiber, core: core, accessHead: accessHead, loopSideHasAccesses: accessHead.pointee != nil,
            tracing: Scheduler.tracingCompiledIn && core.pointee.trace != nil, firstResume: &firstResume)
        core.pointee.drain_ticks &+= spindle_trace_clock() &- started
        // Borrowed, not retained: the loop that is running this callback owns its scheduler
        // (a retain and a release per completion otherwise, callgrind showed).
        Unmanaged<Scheduler>.fromOpaque(core.pointee.owner)._withUnsafeGuaranteedRef { scheduler in
            scheduler.endResuming()
            if core.pointee.run_head != nil, core.pointee.idle_active == 0 { scheduler.startIdle() }
        }
    }

    /// Back on the loop side after resuming fibers: no fiber is current, and the drain is over.
    @inline(__always)
    func endResuming() {
        spindle_set_current_fiber(nil)
        core.pointee.draining = 0
    }

    /// Jumps from the loop side into `fiber`; returns when it yields, parks or finishes, with
    /// whether it finished (its last switch, ``finish(_:core:)``, passes its control block; the
    /// others pass nil: a register test tells).
    @inline(__always)
    static func jumpInto(_ fiber: UnsafeMutablePointer<spindle_fiber_t>, core: UnsafeMutablePointer<spindle_sched_t>)
        -> Bool
    {
        #if SPINDLE_SANITIZERS
        spindle_sanitizer_before_switch(core, nil, fiber)
        #endif
        let transfer = jump_fcontext(fiber.pointee.context, fiber)
        #if SPINDLE_SANITIZERS
        spindle_sanitizer_after_switch(core, nil)
        #endif
        fiber.pointee.context = transfer.fctx
        return transfer.data != nil
    }

    /// Records why `fiber` just switched out: yield (still runnable), park (with its reason) or
    /// finish.
    @inline(never)
    static func traceSwitchOut(
        _ fiber: UnsafeMutablePointer<spindle_fiber_t>, core: UnsafeMutablePointer<spindle_sched_t>
    ) {
        switch Int32(fiber.pointee.state) {
        case Int32(SPINDLE_FIBER_PARKED):
            spindle_trace_record(core, UInt32(SPINDLE_TRACE_PARK), fiber.pointee.id, UInt32(fiber.pointee.park_reason))
        case Int32(SPINDLE_FIBER_FINISHED):
            spindle_trace_record(core, UInt32(SPINDLE_TRACE_FINISH), fiber.pointee.id, 0)
        default:
            spindle_trace_record(core, UInt32(SPINDLE_TRACE_YIELD), fiber.pointee.id, 0)
        }
    }

    /// Switches from the running fiber back to the loop side; returns when it is resumed.
    @inlinable @inline(__always)
    static func suspend(_ fiber: UnsafeMutablePointer<spindle_fiber_t>, core: UnsafeMutablePointer<spindle_sched_t>) {
        #if SPINDLE_SANITIZERS
        spindle_sanitizer_before_switch(core, fiber, nil)
        #endif
        let transfer = jump_fcontext(core.pointee.main_context, nil)
        core.pointee.main_context = transfer.fctx
        #if SPINDLE_SANITIZERS
        spindle_sanitizer_after_switch(core, fiber)
        #endif
    }

    /// A finished fiber's last switch, to the loop side: it passes its control block, which tells
    /// the loop side to reclaim it (the fiber is off its stack by then). Never returns.
    static func finish(_ fiber: UnsafeMutablePointer<spindle_fiber_t>, core: UnsafeMutablePointer<spindle_sched_t>)
        -> Never
    {
        #if SPINDLE_SANITIZERS
        spindle_sanitizer_before_switch(core, fiber, nil)
        #endif
        _ = jump_fcontext(core.pointee.main_context, fiber)
        fatalError("spindle: a finished fiber was resumed")
    }

    /// Takes the accesses a fiber left open when it switched out off the thread's set.
    @inline(never)
    static func saveAccesses(of fiber: UnsafeMutablePointer<spindle_fiber_t>) {
        swift_task_exitThreadLocalContext(spindle_fiber_exclusivity(fiber))
    }

    /// Resumes a fiber that has saved accesses, or while the loop side has some: its own
    /// accesses go on top of the loop side's while it runs, as Swift's tasks do.
    @inline(never)
    static func resumeWithAccesses(
        _ fiber: UnsafeMutablePointer<spindle_fiber_t>, core: UnsafeMutablePointer<spindle_sched_t>
    ) -> Bool {
        swift_task_enterThreadLocalContext(spindle_fiber_exclusivity(fiber))
        let finished = jumpInto(fiber, core: core)
        swift_task_exitThreadLocalContext(spindle_fiber_exclusivity(fiber))
        return finished
    }
}
