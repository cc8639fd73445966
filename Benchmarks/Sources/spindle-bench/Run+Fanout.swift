import BenchKit
import Foundation
import Spindle
import SpindleLoop
import SpindleTrace

/// One fanout executor's trials of one variant: the samples of each phase, and what was counted
/// around them.
struct FanoutTrials {
    /// Each trial first drops the executor's pooled stacks, so it maps and faults fresh ones.
    var cold: [Double] = []
    /// Fibers only: each trial starts on a pool just emptied and prefaulted.
    var prefaulted: [Double]?
    /// Back to back, reusing the stacks and caches of the trial before.
    var warm: [Double] = []
    /// Minor faults per operation of the last cold trial, and of the last prefaulted one.
    var coldFaults = 0.0
    var prefaultedFaults = 0.0
    /// getrusage over all the warm trials, per operation (its CPU times tick in milliseconds:
    /// one short run says little).
    var warmUsage: [String: Double] = [:]
}

extension Run {
    func runFanout(loop: EventLoop, only: Set<String>?) throws -> [BenchResult] {
        var rows: [BenchResult] = []
        let state = FanoutWorkload.State(loop: loop)
        for variant in FanoutWorkload.variants where !Self.interrupted {
            var executors = FanoutWorkload.executors(variant).filter { only?.contains($0) ?? true }
            if only == nil && !all, let index = executors.firstIndex(of: "thread-handoff") {
                // ~9 s a run here (200,000 thread hand-offs one after another): `--all` runs it.
                executors.remove(at: index)
                progress("fanout \(variant): thread-handoff left out (about 10 s a run); make bench-all runs it")
            }
            var trials: [String: FanoutTrials] = [:]
            for executor in executors {
                // Interrupted: the variant is unfinished, so it is dropped.
                guard let measured = try fanoutTrials(executor, variant: variant, state: state) else { return rows }
                trials[executor] = measured
            }
            for executor in executors {
                let perOp = try fanoutPerOperation(executor, variant: variant, trials: trials[executor]!, state: state)
                rows += fanoutRows(executor, variant: variant, trials: trials[executor]!, perOp: perOp)
            }
            diagnosePitfalls(&rows, variant: variant)
        }
        return rows
    }

    /// Cold trials, prefaulted ones (fibers), then warm ones back to back; nil if interrupted.
    /// Runs of 100 ms or more (threads, futures, io) get at most 3 trials of each kind, so that
    /// `make bench` stays within a few minutes.
    private func fanoutTrials(_ executor: String, variant: String, state: FanoutWorkload.State) throws -> FanoutTrials?
    {
        var measured = FanoutTrials()
        var count = self.trials
        for trial in 0..<self.trials where trial < count {
            if Self.interrupted { return nil }
            state.makeCold(executor)
            let faultsBefore = minorFaults()
            measured.cold.append(try FanoutWorkload.run(executor, variant: variant, state: state) / 1e6)
            measured.coldFaults = Double(minorFaults() - faultsBefore) / Double(FanoutWorkload.ops)
            if trial == 0 {
                if measured.cold[0] >= 100 { count = min(self.trials, 3) }
                progress("fanout \(variant): \(executor), \(count) cold then \(count) warm trials")
            }
        }
        // Fibers also start cold on a pool prefaulted as a service would at start-up (stacks
        // mapped and their top pages touched, nothing else warm): the first run then costs what
        // the caches cost, not page faults.
        if executor == "fibers" {
            var samples: [Double] = []
            for _ in 0..<count {
                if Self.interrupted { return nil }
                state.makeCold(executor)
                state.loop.scheduler.stacks.prefault(count: FanoutWorkload.ops, touching: FanoutWorkload.prefaultDepth)
                let faultsBefore = minorFaults()
                samples.append(try FanoutWorkload.run(executor, variant: variant, state: state) / 1e6)
                measured.prefaultedFaults = Double(minorFaults() - faultsBefore) / Double(FanoutWorkload.ops)
            }
            measured.prefaulted = samples
        }
        let usageBefore = ResourceUsage.now()
        for _ in 0..<count {
            measured.warm.append(try FanoutWorkload.run(executor, variant: variant, state: state) / 1e6)
        }
        measured.warmUsage = ResourceUsage.perOp(since: usageBefore, ops: FanoutWorkload.ops * count)
        return measured
    }

    /// The per-operation figures of the executor's rows: the scheduler's counters over one more
    /// warm run, the executor's own evidence, getrusage (timer), and allocations (counted in a
    /// child process).
    private func fanoutPerOperation(
        _ executor: String, variant: String, trials: FanoutTrials, state: FanoutWorkload.State
    ) throws -> [String: Double] {
        let ops = Double(FanoutWorkload.ops)
        var perOp: [String: Double] = [:]
        let before = state.loop.scheduler.counters
        _ = try FanoutWorkload.run(executor, variant: variant, state: state)
        let after = state.loop.scheduler.counters
        if executor == "fibers" || executor == "mmap-per-fiber" {
            perOp["switches"] = Double(after.switches - before.switches) * 2 / ops
            perOp["parks"] = Double(after.parks - before.parks) / ops
            perOp["yields"] = Double(after.yields - before.yields) / ops
        } else if executor == "c-fcontext" && variant == "yield" {
            perOp["switches"] = Double(FanoutWorkload.steps + 1) * 2
        } else if state.evidence[executor] == nil {
            perOp["switches"] = 0  // callbacks and futures never switch stacks
        }
        perOp.merge(state.evidence[executor] ?? [:]) { $1 }
        if variant == "timer" {
            perOp["thread_switches"] = trials.warmUsage["thread_switches"]
            perOp["sys_share"] = trials.warmUsage["sys_share"]
            perOp["io_syscalls"] = trials.warmUsage["io_syscalls"]
        }
        if let (allocations, _) = AllocationCounts.measure(
            workload: "fanout", variant: variant, executor: executor, size: 1)
        {
            perOp["allocs"] = Double(allocations) / ops
        }
        return perOp
    }

    /// One row per phase (cold, prefaulted, warm), each with the step time and its faults.
    private func fanoutRows(
        _ executor: String, variant: String, trials: FanoutTrials, perOp: [String: Double]
    ) -> [BenchResult] {
        var phases = [("cold", trials.cold), ("warm", trials.warm)]
        if let samples = trials.prefaulted { phases.insert(("prefaulted", samples), at: 1) }
        let warmMedian = Stats(trials.warm).median
        let steps = Double(FanoutWorkload.ops) * Double(FanoutWorkload.steps)
        return phases.map { phase, samples in
            let stats = Stats(samples)
            var row = BenchResult(
                workload: "fanout", variant: variant, executor: executor, metric: "time", unit: "ms",
                median: stats.median, min: stats.min, max: stats.max, trials: stats.count, phase: phase,
                per_op: perOp)
            row.per_op?["ns_per_step"] = stats.median * 1e6 / steps
            switch phase {
            case "cold": row.per_op?["faults"] = trials.coldFaults
            case "prefaulted":
                row.per_op?["faults"] = trials.prefaultedFaults
                row.note = String(
                    format: "first run on a prefaulted pool: %.2fx the warm median (target ≤ 2)",
                    stats.median / warmMedian)
            default: row.per_op?["faults"] = trials.warmUsage["faults"]
            }
            return row
        }
    }

    /// Notes on each pitfall's rows the doctor's verdict (module SpindleTrace) on the counters
    /// measured in this run.
    func diagnosePitfalls(_ rows: inout [BenchResult], variant: String) {
        for index in rows.indices
        where rows[index].variant == variant && FanoutWorkload.pitfalls.contains(rows[index].executor) {
            var evidence = Doctor.Evidence(
                perOperation: rows[index].per_op ?? [:], operations: Double(FanoutWorkload.ops),
                waitsPerOperation: Double(FanoutWorkload.steps))
            evidence.concurrency = Double(FanoutWorkload.ops)
            var unCounted = ""
            do {
                evidence.loopSyscalls = try SyscallCounting.loopSyscallsPerOperation(rows[index].executor).mapValues {
                    $0 * Double(FanoutWorkload.ops)
                }
            } catch {
                unCounted = " (system calls not counted: \(error))"
            }
            rows[index].note = Doctor.diagnose(evidence).map { "Doctor: \($0)" }.joined(separator: " ")
            if rows[index].note!.isEmpty { rows[index].note = "doctor: no pathology found" }
            rows[index].note! += unCounted
        }
    }
}
