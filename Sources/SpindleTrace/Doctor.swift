import Glibc
import Spindle
import SpindleLoop

/// Names what makes a coroutine design slow, in words, with the numbers behind each verdict.
///
/// The doctor reads measurements — the scheduler's always-on counters, getrusage, and whatever
/// an executor counts itself — as an ``Evidence`` and applies one rule per known pathology:
/// busy-yield polling, cold stacks, thread hand-offs, a system call or a loop turn on every
/// switch, `Task.yield()` spinning, and switches per operation far above the minimum. A finding
/// is only reported when its own counter crosses its threshold, so a healthy program gets none.
///
/// ```swift
/// let before = Doctor.snapshot(of: loop)
/// // ... run the workload ...
/// print(Doctor.report(for: loop, since: before, waitsPerOperation: 10))
/// ```
public enum Doctor {
    /// A pathology the doctor can name.
    public enum Pathology: String, Sendable, CaseIterable {
        /// Fibers resumed only to find their event has not happened, yielding again: yields per
        /// wait far above parks.
        case busyYield = "busy-yield polling"
        /// Stacks freshly mapped for most spawns: a page fault per page each fiber touches.
        case coldStacks = "cold stacks"
        /// Switches that pass through the OS scheduler: a thread context switch per operation.
        case threadHandoff = "thread hand-offs"
        /// System time that grows with the switches, with no I/O to explain it (`swapcontext`
        /// saving the signal mask, say).
        case syscallPerSwitch = "a system call on every switch"
        /// A loop iteration (a trip through epoll) for every switch, where one serves many.
        case loopTurnPerSwitch = "a loop turn before every switch"
        /// Async tasks waiting by calling `Task.yield()` in a loop instead of suspending on
        /// what they wait for.
        case taskYieldSpin = "spinning on Task.yield()"
        /// More switches per operation than its waits need.
        case excessSwitches = "switches far above the minimum"
        /// Fiber slices longer than ``Doctor/longSlice``: while one runs, timers fire late and
        /// sockets wait.
        case longSlices = "slices that block the loop"
        /// A fiber that used most of its stack (painting mode): the next deeper call overflows.
        case stackNearLimit = "a stack near its limit"
        /// The loop's thread went to sleep inside fiber slices with no other thread to wait for:
        /// a blocking call (`usleep`, a blocking read, a pthread lock) in a fiber.
        case loopBlockingCall = "a blocking call on the loop thread"
        /// Fibers sleeping for zero (until the next loop turn) again and again: polling a condition
        /// through the loop's timers instead of waiting for what changes it.
        case timerPolling = "polling through zero-delay sleeps"
        /// Fibers spawned by other fibers that ran one slice and finished: a spawn (and a join)
        /// per step for work that never waits.
        case fiberPerStep = "a fiber per step"
        /// Most waits are for a `FiberMutex`: its holders wait (yield, sleep, I/O) while holding
        /// it, and every other fiber queues behind them.
        case lockConvoy = "a lock convoy on FiberMutex"
        /// A fresh `Channel` for about every message: an allocation and a new wait list each time.
        case channelPerMessage = "a channel per message"
        /// One call wakes many fibers that wait for the same thing; all but one find nothing and
        /// wait again.
        case wakeStorm = "a wake storm"
        /// Fibers hop into Swift concurrency (`Fiber.awaitAsync`) on every step: a Task made, run
        /// and waited for where the fiber could have done the step itself.
        case asyncHops = "hops to Swift concurrency on every step"
    }

    /// One verdict: the pathology and the sentence that explains it with measured numbers.
    public struct Finding: Sendable, CustomStringConvertible {
        /// What was found.
        public let pathology: Pathology
        /// Why: the measured numbers that crossed the rule's threshold, and the fix.
        public let message: String
        public var description: String { "\(pathology.rawValue): \(message)" }
    }

    /// What the doctor reads: totals over a run of `operations` units of work. Fields an executor
    /// cannot measure stay nil and their rules are skipped.
    public struct Evidence: Sendable {
        /// Completed units of work (fibers finished, requests served, fanout operations).
        public var operations: Double
        /// How many times each operation had to wait for something (a timer, a read), when known.
        public var waitsPerOperation: Double?
        /// Context switches, counting each direction (a resume and the switch back are two).
        public var switches: Double?
        /// Slices ended by a yield (the fiber went back to the run queue).
        public var yields: Double?
        /// Slices ended by a park (the fiber waits off the run queue until woken).
        public var parks: Double?
        /// Fibers spawned.
        public var spawns: Double?
        /// Spawns that mapped a fresh stack rather than taking one from the pool.
        public var stacksCold: Double?
        /// Loop iterations.
        public var loopTurns: Double?
        /// OS thread context switches (getrusage). The live report and ``TraceFile`` count the
        /// voluntary ones only (waits for another thread; a preemption is not a hand-off);
        /// spindle-bench's `thread_switches` counts both kinds.
        public var threadSwitches: Double?
        /// Minor page faults (getrusage): first touches of fresh memory, such as new stacks.
        public var minorFaults: Double?
        /// CPU time in user mode (getrusage).
        public var userSeconds: Double?
        /// CPU time in the kernel (getrusage).
        public var systemSeconds: Double?
        /// `Task.yield()` calls (an async executor's own count).
        public var taskYields: Double?
        /// read and write system calls (/proc/self/io: syscr + syscw): kernel time they explain.
        public var ioSyscalls: Double?
        /// Operations in flight at once (for the scheduler: the run queue's high-water mark).
        public var concurrency: Double?
        /// Fiber slices (resume to yield, park or finish) longer than ``Doctor/longSlice``, from
        /// a trace; the longest one's length and fiber.
        public var longSlices: Double?
        /// The longest slice's length, in seconds.
        public var longestSliceSeconds: Double?
        /// The fiber that ran the longest slice (its name, or `#id`).
        public var longestSliceFiber: String?
        /// Times the OS preempted the loop's thread (involuntary context switches), when known: a
        /// slice it was preempted in counts the time it waited for the CPU too.
        public var preemptions: Double?
        /// The deepest stack use seen in painting mode: the fraction of its stack, and the fiber.
        public var stackHighWater: Scheduler.StackHighWater?
        /// Parks by what the fibers waited for.
        public var parksByReason: [Fiber.ParkReason: Double]?
        /// Stacks unmapped when their fiber finished (the pool was full): with ``stacksCold``,
        /// stacks mapped and unmapped per fiber.
        public var stacksUnmapped: Double?
        /// Fresh stacks mapped while the pool held unused stacks of other sizes.
        public var stacksColdBesidePooled: Double?
        /// Distinct stack sizes mapped.
        public var stackSizes: Double?
        /// `Fiber.sleep(for:)` calls for zero (only until the next loop turn).
        public var zeroSleeps: Double?
        /// Channels the fibers created.
        public var channelsMade: Double?
        /// Voluntary context switches of the process's other threads (a thread that waits for
        /// work and is woken): with the loop's own, on which side of a hand-off the waits are.
        public var otherThreadSwitches: Double?
        /// Work other threads (or the loop itself) posted to the loop and it ran: `post`, `call`,
        /// cross-loop wakes, Swift concurrency jobs.
        public var postedWork: Double?
        /// Wall-clock time the loop spent running fibers, in seconds: set against the thread's CPU
        /// time, how long fibers held the loop while the thread slept.
        public var fiberSeconds: Double?
        /// Fibers spawned by a running fiber that finished in their first slice (from a trace).
        public var oneSliceChildren: Double?
        /// Slices that began after their fiber's own yield and yielded again within microseconds,
        /// having found nothing to do (from a trace).
        public var spinYields: Double?
        /// Fibers woken together with others waiting for the same `FiberEvent` or custom park
        /// reason, by one call (from a trace).
        public var groupWakes: Double?
        /// Of ``groupWakes``, the fibers whose next slice parked again for the same reason: wakes
        /// that found nothing to do (from a trace).
        public var futileWakes: Double?
        /// System calls of the loop's thread by name (`spindle-doctor run` counts them with
        /// ptrace), when counted.
        public var loopSyscalls: [String: Double]?

        /// Evidence of `operations` units of work (at least 1), each waiting
        /// `waitsPerOperation` times when known; the counters are filled in afterwards.
        public init(operations: Double, waitsPerOperation: Double? = nil) {
            self.operations = max(operations, 1)
            self.waitsPerOperation = waitsPerOperation
        }

        /// Builds evidence from per-operation figures over `operations` operations (the names
        /// spindle-bench reports: switches, yields, parks, stack_maps, loop_turns,
        /// thread_switches or loop_thread_waits, other_thread_switches, posted_work, faults,
        /// io_syscalls, sys_share, task_yields).
        public init(perOperation figures: [String: Double], operations: Double, waitsPerOperation: Double?) {
            self.init(operations: operations, waitsPerOperation: waitsPerOperation)
            func total(_ key: String) -> Double? { figures[key].map { $0 * self.operations } }
            switches = total("switches")
            yields = total("yields")
            parks = total("parks")
            if let maps = total("stack_maps") {
                spawns = self.operations
                stacksCold = maps
            }
            loopTurns = total("loop_turns")
            threadSwitches = total("loop_thread_waits") ?? total("thread_switches")
            minorFaults = total("faults")
            if let share = figures["sys_share"] {
                systemSeconds = share
                userSeconds = 1 - share
            }
            taskYields = total("task_yields")
            ioSyscalls = total("io_syscalls")
            otherThreadSwitches = total("other_thread_switches")
            postedWork = total("posted_work")
        }

        /// The parks for `reason` (0 when parks by reason are known and it has none; nil when
        /// they are not known).
        func parks(_ reason: Fiber.ParkReason) -> Double? { parksByReason.map { $0[reason] ?? 0 } }

        func per(_ value: Double?) -> Double? { value.map { $0 / operations } }
    }

    /// A slice longer than this blocks the loop: timers fire late, sockets wait.
    public static let longSlice: Duration = .milliseconds(1)

    /// Counters and resource usage at one moment, to diagnose what happens after it.
    public struct Snapshot: Sendable {
        /// The loop's scheduler counters at that moment.
        public let counters: Scheduler.Counters
        let usage: rusage
        /// The calling thread's usage (the loop's, when taken on its thread).
        let threadUsage: rusage
        let onLoopThread: Bool
        let postedWork: UInt64
        let stacksUnmapped: UInt64
        let stacksColdBesidePooled: UInt64
        let ioSyscalls: Int?
        let monotonicNanoseconds: UInt64
        let runningNanoseconds: UInt64
        let idleNanoseconds: UInt64
    }

    /// Where the loop's running time went: fibers (the scheduler's drains), blocked in the
    /// kernel waiting for events (epoll_wait), and everything else the loop ran (libuv
    /// callbacks: timers, I/O completions, watchers).
    public struct TimeSplit: Sendable, CustomStringConvertible {
        /// Time spent running fibers (the scheduler's drains).
        public let fibers: Duration
        /// Time blocked in the kernel waiting for events (epoll_wait).
        public let idle: Duration
        /// Time in the loop's other callbacks (timers, I/O completions, watchers).
        public let callbacks: Duration

        public var description: String {
            let total = fibers + idle + callbacks
            guard total > .zero else { return "the loop has not run" }
            func share(_ part: Duration) -> String { "\(Int((part / total * 100).rounded()))%" }
            return
                "\(share(fibers)) running fibers, \(share(callbacks)) in loop callbacks, \(share(idle)) idle in epoll"
        }
    }

    /// The doctor's verdicts over a run, with the evidence they came from.
    public struct Report: Sendable, CustomStringConvertible {
        /// The totals the verdicts were drawn from.
        public let evidence: Evidence
        /// The pathologies found, each with its explanation; empty for a healthy run.
        public let findings: [Finding]
        /// Where the loop's time went over the same stretch.
        public let time: TimeSplit

        /// Whether `pathology` was named.
        public func names(_ pathology: Pathology) -> Bool { findings.contains { $0.pathology == pathology } }

        public var description: String {
            guard !findings.isEmpty else {
                return "doctor: no pathology found over \(Int(evidence.operations)) operations (\(time))"
            }
            return
                ([
                    "doctor: \(findings.count) finding\(findings.count == 1 ? "" : "s") over \(Int(evidence.operations)) operations (\(time))"
                ]
                + findings.map { "  - \($0)" }).joined(separator: "\n")
        }
    }

    /// The loop's counters and the process's resource usage now.
    public static func snapshot(of loop: EventLoop) -> Snapshot {
        let stacks = loop.scheduler.stacks
        return Snapshot(
            counters: loop.scheduler.counters, usage: currentUsage(), threadUsage: currentUsage(thread: true),
            onLoopThread: loop.isOnLoopThread, postedWork: loop.isOnLoopThread ? loop.postedWorkRun : 0,
            stacksUnmapped: stacks.discardedCount, stacksColdBesidePooled: stacks.coldTakesBesidePooled,
            ioSyscalls: Doctor.readWriteSyscalls(),
            monotonicNanoseconds: monotonicNanoseconds(), runningNanoseconds: loop.runningNanoseconds,
            idleNanoseconds: loop.idleNanoseconds)
    }

    /// Diagnoses what the loop's fibers did since `before` (default: since the loop started —
    /// take a snapshot after warm-up instead, or the first fibers' fresh stacks read as cold
    /// stacks). `operations` defaults to the fibers that finished; `waitsPerOperation`, when
    /// given, lets the doctor compare switches and yields with the waits the work really had.
    /// Resource usage (getrusage, /proc/self/io) is the whole process's: diagnose a loop while
    /// it is the busy one, or pass `includingResourceUsage: false`.
    public static func report(
        for loop: EventLoop, since before: Snapshot? = nil, operations: Int? = nil, waitsPerOperation: Double? = nil,
        includingResourceUsage: Bool = true
    ) -> Report {
        let now = snapshot(of: loop)
        let start = before?.counters
        func delta(_ key: KeyPath<Scheduler.Counters, UInt64>) -> Double {
            Double(now.counters[keyPath: key] - (start?[keyPath: key] ?? 0))
        }
        var evidence = Evidence(
            operations: Double(operations ?? Int(delta(\.finishes))), waitsPerOperation: waitsPerOperation)
        evidence.switches = delta(\.switches) * 2
        evidence.yields = delta(\.yields)
        evidence.parks = delta(\.parks)
        evidence.spawns = delta(\.spawns)
        evidence.stacksCold = delta(\.stacksCold)
        evidence.loopTurns = delta(\.loopTurns)
        evidence.parksByReason = now.counters.parksByReason.reduce(into: [:]) { byReason, entry in
            byReason[entry.key] = Double(entry.value - (start?.parksByReason[entry.key] ?? 0))
        }
        evidence.zeroSleeps = delta(\.zeroSleeps)
        evidence.channelsMade = delta(\.channelsMade)
        evidence.stacksUnmapped = Double(now.stacksUnmapped - (before?.stacksUnmapped ?? 0))
        evidence.stacksColdBesidePooled = Double(
            now.stacksColdBesidePooled - (before?.stacksColdBesidePooled ?? 0))
        evidence.stackSizes = Double(loop.scheduler.stacks.sizesMapped.count)
        evidence.fiberSeconds = Double(now.counters.fiberNanoseconds &- (start?.fiberNanoseconds ?? 0)) / 1e9
        if now.onLoopThread, before?.onLoopThread ?? true {
            evidence.postedWork = Double(now.postedWork - (before?.postedWork ?? 0))
        }
        if let before, includingResourceUsage {
            // The loop's own waits are its thread's voluntary switches beyond one a loop turn (a
            // wait in epoll_wait); other threads' are the process's less the loop thread's. Read
            // off the loop's thread, the split is not known: every switch is counted as the loop's.
            let thread = now.onLoopThread && before.onLoopThread
            let (mine, mineBefore) = thread ? (now.threadUsage, before.threadUsage) : (now.usage, before.usage)
            evidence.threadSwitches = max(0, Double(mine.ru_nvcsw - mineBefore.ru_nvcsw) - delta(\.loopTurns))
            if thread {
                evidence.otherThreadSwitches = max(
                    0,
                    Double(
                        (now.usage.ru_nvcsw - now.threadUsage.ru_nvcsw)
                            - (before.usage.ru_nvcsw - before.threadUsage.ru_nvcsw)))
            }
            evidence.minorFaults = Double(now.usage.ru_minflt - before.usage.ru_minflt)
            evidence.preemptions = Double(mine.ru_nivcsw - mineBefore.ru_nivcsw)
            // Linux's user/system split is an estimate that can move backwards: clamp at zero.
            evidence.userSeconds = max(0, seconds(mine.ru_utime) - seconds(mineBefore.ru_utime))
            evidence.systemSeconds = max(0, seconds(mine.ru_stime) - seconds(mineBefore.ru_stime))
            if let a = before.ioSyscalls, let b = now.ioSyscalls { evidence.ioSyscalls = Double(b - a) }
        }
        evidence.concurrency = Double(now.counters.runQueueHighWater)
        evidence.stackHighWater = loop.scheduler.stackHighWater
        if Trace.isRecording(loop) {
            tallyEvents(of: loop, after: before?.monotonicNanoseconds ?? 0, into: &evidence)
        }
        let fibers = now.counters.fiberNanoseconds &- (start?.fiberNanoseconds ?? 0)
        let running = now.runningNanoseconds &- (before?.runningNanoseconds ?? 0)
        let idle = now.idleNanoseconds &- (before?.idleNanoseconds ?? 0)
        let callbacks = running > fibers &+ idle ? running &- fibers &- idle : 0
        let time = TimeSplit(
            fibers: .nanoseconds(Int64(fibers)), idle: .nanoseconds(Int64(idle)),
            callbacks: .nanoseconds(Int64(callbacks)))
        return Report(evidence: evidence, findings: diagnose(evidence), time: time)
    }

    /// The tally of the loop's trace events after `start` (see ``EventTally``): slice lengths,
    /// one-slice helper fibers, polls, wakes that found nothing.
    static func tallyEvents(of loop: EventLoop, after start: UInt64, into evidence: inout Evidence) {
        var tally = EventTally()
        for event in Trace.events(of: loop) where event.timestamp >= start {
            let kind: EventTally.Kind
            switch event.kind {
            case .spawn: kind = .spawn
            case .resume: kind = .resume
            case .yield: kind = .yield
            case .park: kind = .park(event.parkReason)
            case .finish: kind = .finish
            case .wake: kind = .wake
            case .loopTurn: kind = .loopTurn
            case .ioCompletion: continue
            }
            tally.add(kind, fiber: event.fiber, at: event.timestamp)
        }
        tally.fill(&evidence, finishes: nil, yields: nil, wakes: nil)
        if let longest = tally.longest {
            evidence.longestSliceSeconds = Double(longest.nanoseconds) / 1e9
            let name = loop.scheduler.tracedName(of: longest.fiber)
            evidence.longestSliceFiber =
                name.isEmpty ? "fiber #\(longest.fiber)" : "fiber \"\(name)\" (#\(longest.fiber))"
        } else {
            evidence.longestSliceSeconds = 0
        }
    }

    /// Applies every rule of ``rules`` to `evidence`, in order; the findings, most specific
    /// first.
    public static func diagnose(_ evidence: Evidence) -> [Finding] {
        rules.compactMap { rule in rule.find(evidence).map { Finding(pathology: rule.pathology, message: $0) } }
    }

    /// `value` for a sentence: whole above 100, else one or two decimals (no Foundation).
    static func figure(_ value: Double) -> String {
        guard value.isFinite, abs(value) < 1e15 else { return "\(value)" }
        if value < 0 { return "-" + figure(-value) }
        if value >= 100 { return String(Int(value.rounded())) }
        let scale = value >= 10 ? 10.0 : 100.0
        let rounded = (value * scale).rounded() / scale
        let whole = Int(rounded)
        let fraction = Int(((rounded - Double(whole)) * scale).rounded())
        let digits = scale == 10 ? String(fraction) : (fraction < 10 ? "0\(fraction)" : String(fraction))
        return "\(whole).\(digits)"
    }

    static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    /// The process's resource usage, or the calling thread's.
    static func currentUsage(thread: Bool = false) -> rusage {
        var usage = rusage()
        getrusage(thread ? 1 : RUSAGE_SELF.rawValue, &usage)  // 1: RUSAGE_THREAD (Linux)
        return usage
    }

    static func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
}

extension Doctor {
    /// read + write system calls of this process so far (/proc/self/io: syscr + syscw), or nil
    /// where the file cannot be read.
    public static func readWriteSyscalls() -> Int? { Scheduler.readWriteSyscalls() }
}
