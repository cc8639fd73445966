import Spindle

// The doctor's rules: one per pathology, each reading the evidence measured for its cause.
// A rule that cannot see its evidence (a field left nil) finds nothing.

extension Doctor {
    /// One rule: the pathology it names, the ``Evidence`` fields it reads, and the sentence it
    /// makes of them when they cross its threshold (nil: not found).
    public struct Rule: Sendable {
        /// What the rule names.
        public let pathology: Pathology
        /// The ``Evidence`` fields the rule reads, by name.
        public let evidence: [String]
        /// The finding's message, or nil.
        let find: @Sendable (_ evidence: Evidence) -> String?
    }

    /// The rules ``diagnose(_:)`` applies, in order (most specific first). Each reads only the
    /// evidence measured for its own cause: none names a pathology because nothing else
    /// explains a figure.
    public static let rules: [Rule] = [
        Rule(
            pathology: .coldStacks,
            evidence: [
                "spawns", "stacksCold", "stacksUnmapped", "stacksColdBesidePooled", "stackSizes", "minorFaults",
            ],
            find: coldStacks),
        Rule(pathology: .asyncHops, evidence: ["parksByReason"], find: asyncHops),
        Rule(
            pathology: .threadHandoff,
            evidence: ["threadSwitches", "otherThreadSwitches", "postedWork", "parksByReason", "waitsPerOperation"],
            find: threadHandoff),
        Rule(
            pathology: .loopBlockingCall,
            evidence: [
                "threadSwitches", "otherThreadSwitches", "fiberSeconds", "userSeconds", "systemSeconds", "loopSyscalls",
            ],
            find: loopBlockingCall),
        Rule(pathology: .taskYieldSpin, evidence: ["taskYields", "waitsPerOperation"], find: taskYieldSpin),
        Rule(pathology: .busyYield, evidence: ["yields", "parks", "spinYields", "waitsPerOperation"], find: busyYield),
        Rule(pathology: .timerPolling, evidence: ["zeroSleeps", "waitsPerOperation"], find: timerPolling),
        Rule(
            pathology: .loopTurnPerSwitch, evidence: ["loopTurns", "switches", "concurrency"], find: loopTurnPerSwitch),
        Rule(pathology: .syscallPerSwitch, evidence: ["loopSyscalls", "switches"], find: syscallPerSwitch),
        Rule(pathology: .fiberPerStep, evidence: ["oneSliceChildren", "spawns"], find: fiberPerStep),
        Rule(pathology: .lockConvoy, evidence: ["parksByReason", "parks"], find: lockConvoy),
        Rule(pathology: .channelPerMessage, evidence: ["channelsMade", "parksByReason"], find: channelPerMessage),
        Rule(pathology: .wakeStorm, evidence: ["groupWakes", "futileWakes"], find: wakeStorm),
        Rule(
            pathology: .longSlices,
            evidence: ["longSlices", "longestSliceSeconds", "longestSliceFiber", "preemptions"],
            find: longSlices),
        Rule(pathology: .stackNearLimit, evidence: ["stackHighWater"], find: stackNearLimit),
        Rule(pathology: .excessSwitches, evidence: ["switches", "waitsPerOperation"], find: excessSwitches),
    ]

    /// Fibers start on freshly mapped stacks instead of pooled ones: mapped per fiber and
    /// unmapped when it ends (a full pool), or mapped per size (varied stack sizes).
    static func coldStacks(_ evidence: Evidence) -> String? {
        guard let spawns = evidence.spawns, let cold = evidence.stacksCold, spawns > 0, cold / spawns >= 0.5,
            evidence.operations >= 100 || spawns >= 100 || cold / spawns >= 0.99
        else { return nil }
        let faults = evidence.per(evidence.minorFaults).map { ", \(figure($0)) page faults per operation" } ?? ""
        let head =
            "\(Int((cold / spawns * 100).rounded()))% of fibers started on a freshly mapped stack "
            + "(\(figure(cold / evidence.operations)) mmaps per operation\(faults))"
        if let sizes = evidence.stackSizes, sizes > 1,
            sizes >= 0.5 * cold || (evidence.stacksColdBesidePooled ?? 0) >= 0.5 * cold
        {
            return head + ": the fibers asked for \(Int(sizes)) different stack sizes, and the pool keeps "
                + "stacks by size, so each new size maps a stack of its own while the others' sit idle. Spawn "
                + "with one stack size (or a few fixed ones)."
        }
        if let unmapped = evidence.stacksUnmapped, unmapped >= 0.5 * cold {
            return head + " and \(figure(unmapped / evidence.operations)) stacks unmapped per operation when "
                + "their fibers finished: the pool was full (StackPool.maximumPooledPerSize), so every "
                + "stack is mapped and unmapped once per fiber. Keep maximumPooledPerSize above the number "
                + "of live fibers and prefault the pool at start-up."
        }
        return head + ": stacks are mapped per fiber instead of reused. Keep StackPool.maximumPooledPerSize "
            + "above the number of live fibers and prefault the pool at start-up."
    }

    /// Fibers park on `Fiber.awaitAsync` (a Task run through Swift concurrency) for most steps.
    static func asyncHops(_ evidence: Evidence) -> String? {
        guard let hops = evidence.parks(.async), hops >= 1_000, hops / evidence.operations >= 2 else { return nil }
        return "\(figure(hops / evidence.operations)) hops to Swift concurrency per operation (fiber parks "
            + "on Fiber.awaitAsync): each creates a Task, runs it through Swift concurrency's executors "
            + "and parks the fiber until it ends, where a fiber's own wait is one park and one wake. Keep "
            + "steps that need no async API in the fiber (its sleep, sockets and channels), or make one "
            + "hop for the whole operation."
    }

    /// Work moves between OS threads on every step: another thread is woken for each (its
    /// voluntary switches), and the loop waits for it (its own switches outside epoll_wait, or
    /// the work posted back to it).
    static func threadHandoff(_ evidence: Evidence) -> String? {
        let step = max(1, (evidence.waitsPerOperation ?? 1) * 0.5)
        guard let others = evidence.per(evidence.otherThreadSwitches), others >= step else { return nil }
        let loopWaits = evidence.per(evidence.threadSwitches) ?? 0
        // Work posted back other than a hop's own wake (asyncHops names those).
        let posted = evidence.per(evidence.postedWork.map { max(0, $0 - (evidence.parks(.async) ?? 0)) }) ?? 0
        guard loopWaits >= step || posted >= step else { return nil }
        let loopSide =
            posted >= step
            ? "\(figure(posted)) pieces of work posted back to the loop"
            : "\(figure(loopWaits)) waits of the loop's thread for another thread"
        let traced = evidence.loopSyscalls == nil ? "" : " (ptrace's stops among them)"
        return "\(figure(others)) voluntary context switches of other threads per operation\(traced) and "
            + loopSide + " per operation"
            + (evidence.waitsPerOperation.map { " (\(figure(others / $0)) per wait)" } ?? "")
            + ": each step hands work to another thread, which wakes for it, and waits for it to come "
            + "back. Run the steps as fibers on the loop's own thread."
    }

    /// The loop's thread slept inside fiber slices, and no other thread was woken for it.
    static func loopBlockingCall(_ evidence: Evidence) -> String? {
        guard let sleeps = evidence.threadSwitches, sleeps >= 10, sleeps / evidence.operations >= 0.5,
            let fiberTime = evidence.fiberSeconds, let user = evidence.userSeconds,
            let system = evidence.systemSeconds
        else { return nil }
        // Not a hand-off: the other threads did not wake as often.
        if let others = evidence.otherThreadSwitches, others >= 0.5 * sleeps { return nil }
        // The fibers held the loop for longer than the thread was on a CPU at all.
        let cpu = user + system
        guard fiberTime - cpu >= 0.25 * fiberTime else { return nil }
        var calls = ""
        if let syscalls = evidence.loopSyscalls {
            // Under ptrace every system call stops the thread, a voluntary switch of its own:
            // the calls that can block, counted, say what it slept in.
            let blocking = syscalls.filter {
                blockingSyscallNames.contains($0.key) && $0.value >= 10 && $0.value >= 0.5 * evidence.operations
            }
            .sorted { $0.value > $1.value }.prefix(3)
            guard !blocking.isEmpty else { return nil }
            calls =
                " The calls that can block on the loop's thread (ptrace): "
                + blocking.map { "\($0.key) \(figure($0.value / evidence.operations)) per operation" }
                .joined(separator: ", ") + "."
        }
        // Under ptrace each stop is a voluntary switch of its own: the count says nothing then.
        let slept =
            evidence.loopSyscalls == nil
            ? "went to sleep \(figure(sleeps / evidence.operations)) times per operation outside epoll_wait "
                + "(voluntary context switches)" : "went to sleep outside epoll_wait"
        return "the loop's thread \(slept) with no other thread woken for it: fibers held "
            + "the loop for \(figure(fiberTime * 1_000)) ms while its thread was on a CPU for "
            + "\(figure(cpu * 1_000)) ms in all. A fiber makes a blocking call (usleep, a blocking read, a pthread "
            + "lock), and the loop runs nothing until it returns. Use Fiber.sleep, the loop's sockets and "
            + "files, or Fiber.awaitAsync for work that must block." + calls
    }

    /// System calls that put a thread to sleep until something else happens.
    static let blockingSyscallNames: Set<String> = [
        "nanosleep", "clock_nanosleep", "futex", "poll", "ppoll", "select", "pselect6", "wait4", "flock", "fsync",
        "fdatasync",
    ]

    /// The loop's own system calls: epoll, the wake-up eventfd, timers, sockets and stacks.
    static let loopSyscallNames: Set<String> = [
        "epoll_wait", "epoll_pwait", "epoll_ctl", "read", "write", "readv", "writev", "recvfrom", "sendto",
        "recvmsg", "sendmsg", "accept4", "mmap", "munmap", "mprotect", "madvise", "clock_gettime", "getrusage",
    ]

    /// Async code waits by yielding to the executor until a flag flips.
    static func taskYieldSpin(_ evidence: Evidence) -> String? {
        let waits = evidence.waitsPerOperation
        guard let spins = evidence.per(evidence.taskYields), spins >= max(1, (waits ?? 1) * 0.5) else { return nil }
        return "\(figure(spins)) Task.yield() calls per operation"
            + (waits.map { " for \(figure($0)) waits" } ?? "")
            + ": each wait spins through the global executor (a job hop per spin) instead of "
            + "suspending on a continuation the event resumes."
    }

    /// Fibers yield to ask "ready yet?" instead of parking on the event: with the waits known,
    /// yields where parks should be; from a trace, slices that yield again at once.
    static func busyYield(_ evidence: Evidence) -> String? {
        guard let yields = evidence.per(evidence.yields), let parks = evidence.per(evidence.parks) else { return nil }
        let waits = evidence.waitsPerOperation
        var spins = ""
        if let waits, waits > 0 {
            guard yields >= waits * 0.5, parks < waits * 0.5 else { return nil }
        } else if let spinning = evidence.spinYields {
            guard spinning >= 1_000, spinning >= 0.5 * (evidence.yields ?? 0) else { return nil }
            spins =
                "; \(Int((spinning / max(1, evidence.yields ?? 1) * 100).rounded()))% of the yields came "
                + "from slices that had yielded just before and ran under \(EventTally.spinSlice / 1_000) µs"
        } else {
            guard evidence.yields ?? 0 >= 1_000, yields >= 10 * max(parks, 0.1) else { return nil }
        }
        return "\(figure(yields)) yields and \(figure(parks)) parks per operation"
            + (waits.map { " that waits \(figure($0)) times" } ?? "") + spins
            + ": fibers are resumed just to find their event has not happened and yield again. "
            + "Park on the timer, socket or channel (Fiber.sleep, read, receive) so the loop wakes "
            + "the fiber when it is ready."
    }

    /// Fibers sleep for zero again and again to poll a condition.
    static func timerPolling(_ evidence: Evidence) -> String? {
        guard let zero = evidence.zeroSleeps, zero >= 1_000, zero / evidence.operations >= 5 else { return nil }
        if let waits = evidence.waitsPerOperation, zero / evidence.operations <= 2 * waits { return nil }
        return "\(figure(zero / evidence.operations)) zero-delay sleeps per operation "
            + "(Fiber.sleep(for: .zero), \(Int(zero)) in all): each waits only for the next loop turn, so fibers poll a "
            + "condition through the timer, a switch and a timer each time. Wait on what changes the "
            + "condition: a Channel, a FiberEvent, the socket. (If these sleeps are the waits the work "
            + "needs, say how many: --waits-per-operation.)"
    }

    /// A loop turn before every switch while many operations are in flight (one connection
    /// waking its fiber from each turn is how a loop works; ten thousand of them each getting a
    /// turn of their own is not).
    static func loopTurnPerSwitch(_ evidence: Evidence) -> String? {
        guard let turns = evidence.loopTurns, let switches = evidence.switches, switches >= 1_000,
            turns / (switches / 2) >= 0.5, evidence.concurrency ?? 0 >= 100
        else { return nil }
        return "\(figure(turns / evidence.operations)) loop turns per operation for "
            + "\(figure(switches / evidence.operations)) switches: the scheduler polls the kernel (a "
            + "non-blocking epoll_wait) before every switch. Run the loop only when no fiber is runnable."
    }

    /// A system call counted on the loop's thread for every switch (ucontext's swapcontext
    /// makes rt_sigprocmask each time).
    static func syscallPerSwitch(_ evidence: Evidence) -> String? {
        guard let syscalls = evidence.loopSyscalls, let switches = evidence.switches, switches >= 1_000 else {
            return nil
        }
        // A blocking call is loopBlockingCall's; the loop's own calls follow its turns, not switches.
        guard
            let (name, count) = syscalls.filter({
                !loopSyscallNames.contains($0.key) && !blockingSyscallNames.contains($0.key)
            })
            .max(by: { $0.value < $1.value }), count >= 0.4 * switches
        else { return nil }
        let why =
            name == "rt_sigprocmask"
            ? " (ucontext's swapcontext saves and restores the signal mask with it)" : ""
        return "\(name) ran \(figure(count / switches)) times per switch on the loop's thread "
            + "(\(figure(count / evidence.operations)) per operation, counted with ptrace): the switch itself "
            + "makes a system call\(why). Switch with fcontext (Boost.Context), as Spindle does."
    }

    /// Fibers spawned for steps that never wait: a spawn and a join where a call would do.
    static func fiberPerStep(_ evidence: Evidence) -> String? {
        guard let helpers = evidence.oneSliceChildren, helpers >= 1_000, helpers / evidence.operations >= 1 else {
            return nil
        }
        return "\(figure(helpers / evidence.operations)) fibers per operation were spawned by another fiber and "
            + "finished in their first slice, never waiting: each costs a spawn, two switches and usually "
            + "a join for what a function call does. Call the step directly; spawn fibers for work that "
            + "waits on its own."
    }

    /// Most parks wait for a FiberMutex.
    static func lockConvoy(_ evidence: Evidence) -> String? {
        guard let waits = evidence.parks(.mutex), waits >= 1_000, waits / evidence.operations >= 1,
            let parks = evidence.parks, waits >= 0.25 * parks
        else { return nil }
        return "\(figure(waits / evidence.operations)) waits for a FiberMutex per operation "
            + "(\(Int((waits / parks * 100).rounded()))% of all parks): the lock is held across a yield, a "
            + "sleep or I/O, and every other fiber queues behind it, one switch per hand-over. Do the "
            + "waiting outside the lock, or give each fiber its own state."
    }

    /// About one new channel per channel wait.
    static func channelPerMessage(_ evidence: Evidence) -> String? {
        guard let made = evidence.channelsMade, made >= 1_000, made / evidence.operations >= 1 else { return nil }
        let channelWaits = [Fiber.ParkReason.channelSend, .channelReceive, .select].compactMap { evidence.parks($0) }
            .reduce(0, +)
        guard channelWaits > 0, made >= 0.5 * channelWaits else { return nil }
        return "\(figure(made / evidence.operations)) channels created per operation for "
            + "\(figure(channelWaits / evidence.operations)) channel waits: a channel per message (a reply "
            + "channel per request, say), an allocation and a new wait list each time. Keep one channel "
            + "per conversation and send the replies through it."
    }

    /// Many fibers woken together that found nothing and waited again.
    static func wakeStorm(_ evidence: Evidence) -> String? {
        guard let futile = evidence.futileWakes, futile >= 1_000, let group = evidence.groupWakes,
            futile >= 0.5 * group
        else { return nil }
        return "\(Int((futile / group * 100).rounded()))% of the \(Int(group)) fibers woken together (a "
            + "FiberEvent set, or a wake-all of fibers parked for one reason) parked again for the same "
            + "reason in their next slice, having found nothing: \(figure(futile / evidence.operations)) "
            + "wasted switches per operation. Wake one waiter per piece of work: a Channel or a "
            + "FiberSemaphore."
    }

    /// Fiber slices that hold the loop's thread past ``Doctor/longSlice``.
    static func longSlices(_ evidence: Evidence) -> String? {
        guard let long = evidence.longSlices, long > 0, let longest = evidence.longestSliceSeconds else { return nil }
        let preempted = evidence.preemptions.map { preemptions in
            preemptions < long
                ? ""
                : " The OS preempted the loop's thread \(Int(preemptions)) time\(preemptions == 1 ? "" : "s") over "
                    + "the run, and a slice it was preempted in counts that wait too: if these slices do little "
                    + "work, the machine was busy, not the loop."
        }
        return "\(Int(long)) fiber slice\(long == 1 ? "" : "s") ran longer than 1 ms without yielding or "
            + "parking (the longest \(figure(longest * 1_000)) ms, in \(evidence.longestSliceFiber ?? "a fiber")): "
            + "meanwhile the loop runs no timer, no I/O and no other fiber. Split the work with "
            + "Fiber.yield(), or move it off the loop (Fiber.awaitAsync, the file pool)." + (preempted ?? "")
    }

    /// A fiber that used most of its stack (painting mode): one deeper call overflows it.
    static func stackNearLimit(_ evidence: Evidence) -> String? {
        guard let mark = evidence.stackHighWater, mark.fraction >= 0.75 else { return nil }
        return "\(mark.fiber) used \(mark.usedBytes / 1024) KiB of its \(mark.stackBytes / 1024) KiB stack "
            + "(\(Int((mark.fraction * 100).rounded()))%): a deeper call or a larger local overflows it. Give it "
            + "a bigger stack (spawn(stackSize:)) or keep big buffers off the stack."
    }

    /// Switches far above what the waits need (two per wait, two to start and finish).
    static func excessSwitches(_ evidence: Evidence) -> String? {
        guard let perOp = evidence.per(evidence.switches), let waits = evidence.waitsPerOperation, waits > 0,
            perOp > 4 * (2 * waits + 2)
        else { return nil }
        return "\(figure(perOp)) switches per operation where its \(figure(waits)) waits need about "
            + "\(figure(2 * waits + 2)): something resumes fibers that have nothing to do."
    }
}
