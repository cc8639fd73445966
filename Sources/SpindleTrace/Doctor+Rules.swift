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
        /// The finding's message, or nil; `earlier` are the findings of the rules before it.
        let find: @Sendable (_ evidence: Evidence, _ earlier: [Finding]) -> String?
    }

    /// The rules ``diagnose(_:)`` applies, in order (most specific first).
    public static let rules: [Rule] = [
        Rule(pathology: .coldStacks, evidence: ["spawns", "stacksCold", "minorFaults"], find: coldStacks),
        Rule(pathology: .threadHandoff, evidence: ["threadSwitches", "waitsPerOperation"], find: threadHandoff),
        Rule(pathology: .taskYieldSpin, evidence: ["taskYields", "waitsPerOperation"], find: taskYieldSpin),
        Rule(pathology: .busyYield, evidence: ["yields", "parks", "waitsPerOperation"], find: busyYield),
        Rule(
            pathology: .loopTurnPerSwitch, evidence: ["loopTurns", "switches", "concurrency"], find: loopTurnPerSwitch),
        Rule(
            pathology: .syscallPerSwitch,
            evidence: ["userSeconds", "systemSeconds", "switches", "minorFaults", "ioSyscalls"],
            find: syscallPerSwitch),
        Rule(
            pathology: .longSlices,
            evidence: ["longSlices", "longestSliceSeconds", "longestSliceFiber", "preemptions"],
            find: longSlices),
        Rule(pathology: .stackNearLimit, evidence: ["stackHighWater"], find: stackNearLimit),
        Rule(pathology: .excessSwitches, evidence: ["switches", "waitsPerOperation"], find: excessSwitches),
    ]

    /// Fibers start on freshly mapped stacks instead of pooled ones.
    static func coldStacks(_ evidence: Evidence, _: [Finding]) -> String? {
        guard let spawns = evidence.spawns, let cold = evidence.stacksCold, spawns > 0, cold / spawns >= 0.5,
            evidence.operations >= 100 || spawns >= 100 || cold / spawns >= 0.99
        else { return nil }
        let faults = evidence.per(evidence.minorFaults).map { ", \(figure($0)) page faults per operation" } ?? ""
        return "\(Int((cold / spawns * 100).rounded()))% of fibers started on a freshly mapped stack "
            + "(\(figure(cold / evidence.operations)) mmaps per operation\(faults)): stacks are mapped per fiber "
            + "instead of reused. Keep StackPool.maximumPooledPerSize above the number of live fibers and "
            + "prefault the pool at start-up."
    }

    /// Work moves between OS threads on every step.
    static func threadHandoff(_ evidence: Evidence, _: [Finding]) -> String? {
        let waits = evidence.waitsPerOperation
        guard let perOp = evidence.per(evidence.threadSwitches), perOp >= max(1, (waits ?? 1) * 0.5) else { return nil }
        return "\(figure(perOp)) OS thread context switches per operation (getrusage)"
            + (waits.map { ", \(figure(perOp / $0)) per wait" } ?? "")
            + ": each step hands work to another thread and waits for it to come back. Run the "
            + "steps as fibers on the loop's own thread."
    }

    /// Async code waits by yielding to the executor until a flag flips.
    static func taskYieldSpin(_ evidence: Evidence, _: [Finding]) -> String? {
        let waits = evidence.waitsPerOperation
        guard let spins = evidence.per(evidence.taskYields), spins >= max(1, (waits ?? 1) * 0.5) else { return nil }
        return "\(figure(spins)) Task.yield() calls per operation"
            + (waits.map { " for \(figure($0)) waits" } ?? "")
            + ": each wait spins through the global executor (a job hop per spin) instead of "
            + "suspending on a continuation the event resumes."
    }

    /// Fibers yield to ask "ready yet?" instead of parking on the event.
    static func busyYield(_ evidence: Evidence, _: [Finding]) -> String? {
        guard let yields = evidence.per(evidence.yields), let parks = evidence.per(evidence.parks) else { return nil }
        let waits = evidence.waitsPerOperation
        let polling: Bool
        if let waits, waits > 0 {
            polling = yields >= waits * 0.5 && parks < waits * 0.5
        } else {
            polling = evidence.yields ?? 0 >= 1_000 && yields >= 10 * max(parks, 0.1)
        }
        guard polling else { return nil }
        return "\(figure(yields)) yields and \(figure(parks)) parks per operation"
            + (waits.map { " that waits \(figure($0)) times" } ?? "")
            + ": fibers are resumed just to find their event has not happened and yield again. "
            + "Park on the timer, socket or channel (Fiber.sleep, read, receive) so the loop wakes "
            + "the fiber when it is ready."
    }

    /// A loop turn before every switch while many operations are in flight (one connection
    /// waking its fiber from each turn is how a loop works; ten thousand of them each getting a
    /// turn of their own is not).
    static func loopTurnPerSwitch(_ evidence: Evidence, _: [Finding]) -> String? {
        guard let turns = evidence.loopTurns, let switches = evidence.switches, switches >= 1_000,
            turns / (switches / 2) >= 0.5, evidence.concurrency ?? 0 >= 100
        else { return nil }
        return "\(figure(turns / evidence.operations)) loop turns per operation for "
            + "\(figure(switches / evidence.operations)) switches: the scheduler polls the kernel (a "
            + "non-blocking epoll_wait) before every switch. Run the loop only when no fiber is runnable."
    }

    /// Kernel time that grows with the switches, which page faults, reads, writes and the
    /// pathologies found before do not account for.
    static func syscallPerSwitch(_ evidence: Evidence, _ earlier: [Finding]) -> String? {
        guard let user = evidence.userSeconds, let system = evidence.systemSeconds, user + system > 0,
            let perOp = evidence.per(evidence.switches), perOp >= 2
        else { return nil }
        let share = system / (user + system)
        let explained =
            !earlier.isEmpty || (evidence.per(evidence.minorFaults) ?? 0) >= 0.5
            || (evidence.per(evidence.ioSyscalls) ?? 0) >= 0.1 * perOp
        guard share >= 0.10, !explained else { return nil }
        return "\(Int((share * 100).rounded()))% of the CPU time is in the kernel with no page faults, reads, "
            + "writes, thread switches or loop turns to explain it, over \(figure(perOp)) switches per operation: "
            + "the switch itself makes a system call (ucontext's swapcontext saves the signal mask "
            + "with rt_sigprocmask). Switch with fcontext (Boost.Context), as Spindle does."
    }

    /// Fiber slices that hold the loop's thread past ``Doctor/longSlice``.
    static func longSlices(_ evidence: Evidence, _: [Finding]) -> String? {
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
    static func stackNearLimit(_ evidence: Evidence, _: [Finding]) -> String? {
        guard let mark = evidence.stackHighWater, mark.fraction >= 0.75 else { return nil }
        return "\(mark.fiber) used \(mark.usedBytes / 1024) KiB of its \(mark.stackBytes / 1024) KiB stack "
            + "(\(Int((mark.fraction * 100).rounded()))%): a deeper call or a larger local overflows it. Give it "
            + "a bigger stack (spawn(stackSize:)) or keep big buffers off the stack."
    }

    /// Switches far above what the waits need (two per wait, two to start and finish).
    static func excessSwitches(_ evidence: Evidence, _: [Finding]) -> String? {
        guard let perOp = evidence.per(evidence.switches), let waits = evidence.waitsPerOperation, waits > 0,
            perOp > 4 * (2 * waits + 2)
        else { return nil }
        return "\(figure(perOp)) switches per operation where its \(figure(waits)) waits need about "
            + "\(figure(2 * waits + 2)): something resumes fibers that have nothing to do."
    }
}
