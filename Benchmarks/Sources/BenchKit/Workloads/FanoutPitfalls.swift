import CBenchKernels
import Glibc
import Spindle
import SpindleLoop
import SpindleTrace
import Synchronization

// The pitfall gallery: six coroutine executors, each a faithful copy of a mistake real designs
// make, all running the fanout `timer` workload (10,000 operations, each waiting 10 times for a
// zero-delay libuv timer) with the same checks as the good executors. `c-fcontext` runs the same
// C scheduler as `ucontext` and `poll-io-every-switch`, done right, as their control.

extension FanoutWorkload {
    /// The gallery, in the order the report shows it.
    package static let pitfalls = [
        "ucontext", "thread-handoff", "mmap-per-fiber", "busy-poll", "poll-io-every-switch", "task-yield",
    ]

    /// Runs a pitfall (or the C control) once; fills `evidence` with its own counters per op.
    static func runPitfall(_ executor: String, state: State, evidence: inout [String: Double]) throws -> Int {
        let perOp = 1 / Double(ops)
        switch executor {
        case "c-fcontext", "ucontext", "poll-io-every-switch":
            if state.cPool == nil { state.cPool = cb_stack_pool_create(StackPool.defaultStackSize) }
            let kind: cb_timer_kind =
                executor == "ucontext"
                ? CB_TIMER_UCONTEXT
                : executor == "poll-io-every-switch" ? CB_TIMER_POLL_EVERY_SWITCH : CB_TIMER_FCONTEXT
            var counts = cb_counts()
            let steps = cb_timer_fanout(kind, state.cPool, UInt32(ops), UInt32(self.steps), &counts)
            evidence["switches"] = Double(counts.switches) * perOp
            evidence["loop_turns"] = Double(counts.loop_turns) * perOp
            evidence["stack_maps"] = Double(counts.stack_maps) * perOp
            return Int(steps) / self.steps
        case "thread-handoff":
            var counts = cb_counts()
            let steps = cb_thread_handoff_timer_fanout(UInt32(ops), UInt32(self.steps), &counts)
            evidence["switches"] = Double(counts.switches) * perOp
            evidence["threads"] = Double(counts.stack_maps) * perOp
            return Int(steps) / self.steps
        case "mmap-per-fiber":
            // Spindle fibers with the stack pool turned off: every fiber maps a fresh stack with
            // a guard page, and unmaps it when it finishes.
            let stacks = state.loop.scheduler.stacks
            let (keep, coldBefore) = (stacks.maximumPooledPerSize, stacks.coldTakes)
            stacks.maximumPooledPerSize = 0
            stacks.trim()
            defer { stacks.maximumPooledPerSize = keep }
            let completed = try fibersTimer(loop: state.loop)
            evidence["stack_maps"] = Double(stacks.coldTakes - coldBefore) * perOp
            return completed
        case "busy-poll":
            return try busyPoll(loop: state.loop, evidence: &evidence)
        case "task-yield":
            return try taskYield(loop: state.loop, evidence: &evidence)
        default:
            throw BenchError.unknownExecutor(executor, workload: name)
        }
    }

    /// Fibers that never park: each starts its timer and then yields until the timer's callback
    /// has set its flag, so the scheduler resumes every waiting fiber, every turn, to ask.
    static func busyPoll(loop: EventLoop, evidence: inout [String: Double]) throws -> Int {
        final class Waiter {
            var ready = false
            var timer: LoopTimer?
        }
        let before = loop.scheduler.counters
        var completed = 0
        // The timers are made first, together, as in the callback and future rows (see
        // `makeTimers`): the rows then differ in how they wait, not in where their timers sit.
        for timer in makeTimers(loop: loop) {
            let waiter = Waiter()
            waiter.timer = timer
            timer.setCallback { [unowned waiter] _ in waiter.ready = true }
            loop.spawnDetached {
                for _ in 0..<FanoutWorkload.steps {
                    waiter.ready = false
                    waiter.timer!.start(after: .zero)
                    while !waiter.ready { Fiber.yield() }  // the mistake: ask, instead of park
                }
                waiter.timer!.close()
                waiter.timer = nil
                completed += 1
            }
        }
        try loop.run()
        let after = loop.scheduler.counters
        evidence["yields"] = Double(after.yields - before.yields) / Double(ops)
        evidence["parks"] = Double(after.parks - before.parks) / Double(ops)
        evidence["switches"] = Double(after.switches - before.switches) * 2 / Double(ops)
        return completed
    }

    /// Async tasks on the global executor that wait for their timer by spinning on
    /// `Task.yield()` until the loop thread's callback sets their flag.
    static func taskYield(loop: EventLoop, evidence: inout [String: Double]) throws -> Int {
        final class Flag: @unchecked Sendable {
            let fired = Atomic<Bool>(false)
        }
        let counter = Counter()  // done: finished operations; bytes: Task.yield calls
        let flags = (0..<ops).map { _ in Flag() }
        let timers = (0..<ops).map { index in
            LoopTimer(loop: loop) { _ in flags[index].fired.store(true, ordering: .releasing) }
        }
        let shared = UncheckedBox((loop, timers, flags))
        for index in 0..<ops {
            Task {
                var spins = 0
                for _ in 0..<steps {
                    let flag = shared.value.2[index]
                    flag.fired.store(false, ordering: .relaxed)
                    shared.value.0.post { shared.value.1[index].start(after: .zero) }
                    while !flag.fired.load(ordering: .acquiring) {  // the mistake: spin on the executor
                        spins += 1
                        await Task.yield()
                    }
                }
                counter.bytes.add(spins, ordering: .relaxed)
                if counter.done.add(1, ordering: .relaxed).newValue == ops {
                    shared.value.0.post { shared.value.0.stop() }
                }
            }
        }
        try loop.run(.untilStopped)
        for timer in timers { timer.close() }
        try loop.runOnce(blocking: false)
        evidence["task_yields"] = Double(counter.bytes.load(ordering: .relaxed)) / Double(ops)
        return counter.done.load(ordering: .relaxed)
    }
}

/// This process's CPU time and context switches so far (getrusage; all threads), and the
/// calling thread's voluntary switches (its waits).
package struct ResourceUsage {
    package var userSeconds: Double
    package var systemSeconds: Double
    package var contextSwitches: Int
    package var voluntarySwitches: Int
    package var threadVoluntarySwitches: Int
    package var minorFaults: Int
    package var ioSyscalls: Int

    package static func now() -> ResourceUsage {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        var thread = rusage()
        getrusage(1, &thread)  // RUSAGE_THREAD (Linux)
        return ResourceUsage(
            userSeconds: Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6,
            systemSeconds: Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6,
            contextSwitches: usage.ru_nvcsw + usage.ru_nivcsw,
            voluntarySwitches: usage.ru_nvcsw,
            threadVoluntarySwitches: thread.ru_nvcsw,
            minorFaults: usage.ru_minflt,
            ioSyscalls: Doctor.readWriteSyscalls() ?? 0)
    }

    /// Per operation between `before` and now: thread switches, faults, read and write system
    /// calls, and the kernel's share of CPU time.
    package static func perOp(since before: ResourceUsage, ops: Int) -> [String: Double] {
        let after = now()
        // Linux splits a process's CPU time into user and system by estimate, and the split can
        // move backwards between two readings: clamp each part at zero.
        let user = max(0, after.userSeconds - before.userSeconds)
        let system = max(0, after.systemSeconds - before.systemSeconds)
        return [
            "thread_switches": Double(after.contextSwitches - before.contextSwitches) / Double(ops),
            // The calling (loop) thread's waits, and the other threads' (a worker woken per step).
            "loop_thread_waits": Double(after.threadVoluntarySwitches - before.threadVoluntarySwitches) / Double(ops),
            "other_thread_switches": Double(
                (after.voluntarySwitches - after.threadVoluntarySwitches)
                    - (before.voluntarySwitches - before.threadVoluntarySwitches)) / Double(ops),
            "faults": Double(after.minorFaults - before.minorFaults) / Double(ops),
            "io_syscalls": Double(after.ioSyscalls - before.ioSyscalls) / Double(ops),
            "sys_share": user + system > 0 ? system / (user + system) : 0,
        ]
    }

}
