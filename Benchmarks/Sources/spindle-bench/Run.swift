import ArgumentParser
import BenchKit
import CBenchKernels
import Foundation
import Spindle
import SpindleLoop
import SpindleTrace

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Runs workloads and prints a report.")

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case table, json, csv, markdown
    }

    @Argument(help: "Workloads to run (default: all of them).")
    var workloads: [String] = []

    @Option(help: "Comma-separated executors (default: all of each workload).")
    var executors: String?

    @Option(help: "Timed trials per row.")
    var trials: Int = 7

    @Option(
        help: ArgumentHelp(
            "Trials per echo row (default: 3, or 5 with --all, and no more than --trials).",
            discussion: "Each is a server and a load generator for about a second. The p99 at 1,000 connections "
                + "moves by a third from one trial to the next on a shared host: more trials give a steadier median."))
    var echoTrials: Int?

    @Option(help: "Output format: table, json, csv, markdown.")
    var format: Format = .table

    @Option(help: "Directory to write report.md, results.json and chart.svg into.")
    var out: String?

    @Flag(help: "Skip the callgrind instruction counts.")
    var noInstructions = false

    @Flag(help: "Run every executor of the slow workloads too (echo: swift-async-global, threads).")
    var all = false

    func validate() throws {
        guard trials >= 1 else { throw ValidationError("--trials must be at least 1 (it was \(trials))") }
        if let echoTrials, echoTrials < 1 {
            throw ValidationError("--echo-trials must be at least 1 (it was \(echoTrials))")
        }
    }

    func run() throws {
        let chosen = workloads.isEmpty ? SpindleBench.workloads.map(\.name) : workloads
        let only = executors.map { Set($0.split(separator: ",").map(String.init)) }
        for workload in chosen where !SpindleBench.workloads.contains(where: { $0.name == workload }) {
            throw BenchError.unknownWorkload(workload)
        }
        let loop = EventLoop()
        var results: [BenchResult] = []
        var skipped: [String] = []
        // Ctrl-C stops at the end of the current variant and reports every variant that finished.
        cb_install_interrupt_handler()
        for workload in chosen where !Self.interrupted {
            do {
                switch workload {
                case SwitchWorkload.name: results += try runSwitch(loop: loop, only: only)
                case FanoutWorkload.name:
                    results += try runFanout(loop: loop, only: only)
                    let peers = runPeers(only: only)
                    results += peers.rows
                    skipped += peers.skipped
                case ChannelWorkload.name: results += try runChannel(loop: loop, only: only)
                case CrossLoopWorkload.name: results += try runCrossLoop(only: only)
                case SpawnWorkload.name: results += try runSpawn(loop: loop, only: only)
                case EchoWorkload.name: results += try runEcho(only: only)
                case ScaleWorkload.name: results += try runScale(loop: loop, only: only)
                default: throw BenchError.unknownWorkload(workload)
                }
            } catch  where Self.interrupted {
                // The interrupt reached a child process (echo) or a kernel mid-run: that variant is lost.
                progress("\(workload): interrupted (\(error))")
            }
        }
        if Self.interrupted { progress("interrupted: reporting the \(results.count) rows that finished") }
        try? loop.close()
        var baselines = Dictionary(
            uniqueKeysWithValues: SpindleBench.workloads.filter { !$0.baseline.isEmpty }.map { ($0.name, $0.baseline) })
        for (variant, baseline) in CrossLoopWorkload.baselines {
            baselines["\(CrossLoopWorkload.name)/\(variant)"] = baseline
        }
        attachRatios(&results, baselines: baselines)
        let report = Report(machine: MachineInfo.current(), results: results, skipped: skipped.isEmpty ? nil : skipped)
        try emit(report)
        if Self.interrupted { throw ExitCode(130) }  // what a shell expects of a Ctrl-C'd command
    }

    /// Whether Ctrl-C was pressed: every workload stops at the end of its current variant.
    static var interrupted: Bool { cb_interrupted() != 0 }
    /// This program, found through /proc/self/exe: `CommandLine.arguments[0]` is only a name
    /// when it was run through PATH, and the tools beside it were then looked for in the
    /// working directory.
    static let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()

    // MARK: switch

    func runSwitch(loop: EventLoop, only: Set<String>?) throws -> [BenchResult] {
        var rows: [BenchResult] = []
        for variant in SwitchWorkload.variants where !Self.interrupted {
            let executors = SwitchWorkload.executors(variant).filter { only?.contains($0) ?? true }
            let label = variant.isEmpty ? "switch" : "switch \(variant)"
            for executor in executors {
                _ = try SwitchWorkload.run(
                    executor, variant: variant, rounds: SwitchWorkload.rounds(executor) / 10, loop: loop)
            }
            // Trials are interleaved (A B C A B C ...) so that drift on a shared machine hits every
            // executor alike and the ratios stay honest.
            var samples: [String: [Double]] = [:]
            for trial in 0..<trials {
                if Self.interrupted { return rows }
                progress("\(label): trial \(trial + 1)/\(trials) (\(executors.joined(separator: ", ")))")
                for executor in executors {
                    let rounds = SwitchWorkload.rounds(executor)
                    let ns = try SwitchWorkload.run(executor, variant: variant, rounds: rounds, loop: loop)
                    samples[executor, default: []].append(ns / Double(rounds))
                }
            }
            for executor in executors {
                let rounds = SwitchWorkload.rounds(executor)
                // Allocations per round trip: the difference between N and 2N round trips, so the
                // fixed cost of starting the run cancels out.
                var perOp: [String: Double] = ["switches": variant.isEmpty || executor != "fibers" ? 2 : 4]
                if let (a, b) = AllocationCounts.measure(
                    workload: "switch", variant: variant, executor: executor, size: rounds / 10)
                {
                    perOp["allocs"] = Double(b - a) / Double(rounds / 10)
                }
                let stats = Stats(samples[executor]!)
                var row = BenchResult(
                    workload: "switch", variant: variant, executor: executor, metric: "time", unit: "ns",
                    median: stats.median, min: stats.min, max: stats.max, trials: stats.count, per_op: perOp)
                // The recorder's cost on the clock, against the untraced fibers of the same run:
                // a memory-system cost that callgrind cannot see shows here.
                if executor == "fibers-traced", let untraced = samples["fibers"] {
                    row.note = String(
                        format: "tracing on: %.2fx the untraced fibers (target ≤ 2)",
                        stats.median / Stats(untraced).median)
                }
                rows.append(row)
            }
            guard !noInstructions else { continue }
            guard Instructions.available else {
                progress(
                    "\(label): instruction counts skipped: valgrind is not installed (apt-get install -y valgrind)")
                continue
            }
            for executor in ["c-fcontext", "fibers", "fibers-traced", "ucontext"] where executors.contains(executor) {
                progress("\(label): \(executor) instructions under callgrind")
                if let (count, calls) = try Instructions.perRoundTrip(
                    workload: "switch", variant: variant, executor: executor, rounds: 100_000)
                {
                    rows.append(
                        BenchResult(
                            workload: "switch", variant: variant, executor: executor, metric: "instructions",
                            unit: "instructions", median: count, min: count, max: count, trials: 1,
                            per_op: calls, note: "callgrind, (I(2N) - I(N)) / N with N = 100000"))
                }
            }
        }
        return rows
    }

    // MARK: crossloop

    func runCrossLoop(only: Set<String>?) throws -> [BenchResult] {
        var rows: [BenchResult] = []
        let state = CrossLoopWorkload.State()
        for variant in CrossLoopWorkload.variants where !Self.interrupted {
            let executors = CrossLoopWorkload.executors(variant).filter { only?.contains($0) ?? true }
            for executor in executors { _ = try CrossLoopWorkload.run(executor, variant: variant, state: state) }
            // Interleaved trials, as for switch: drift hits the floor and the fibers alike.
            var samples: [String: [Double]] = [:]
            for trial in 0..<trials {
                if Self.interrupted { return rows }
                progress("crossloop \(variant): trial \(trial + 1)/\(trials) (\(executors.joined(separator: ", ")))")
                for executor in executors {
                    samples[executor, default: []].append(
                        try CrossLoopWorkload.run(executor, variant: variant, state: state))
                }
            }
            // Parks per operation of one more run: how often a side waited for the other's wake-up.
            var parksPerOp: [String: Double] = [:]
            for executor in executors where executor.hasPrefix("fibers") {
                let before = try CrossLoopWorkload.parks(state)
                _ = try CrossLoopWorkload.run(executor, variant: variant, state: state)
                let parks = try CrossLoopWorkload.parks(state) - before
                let operations = variant == "channel" ? CrossLoopWorkload.messages : CrossLoopWorkload.callRounds
                parksPerOp[executor] = Double(parks) / Double(operations)
            }
            for executor in executors {
                let stats = Stats(samples[executor]!)
                let what =
                    variant == "channel"
                    ? "per message, \(CrossLoopWorkload.messages) messages through \(CrossLoopWorkload.capacity) slots, "
                        + "two pinned threads"
                    : "per round trip, \(CrossLoopWorkload.callRounds) calls, two pinned threads"
                rows.append(
                    BenchResult(
                        workload: CrossLoopWorkload.name, variant: variant, executor: executor, metric: "time",
                        unit: "ns",
                        median: stats.median, min: stats.min, max: stats.max, trials: stats.count,
                        per_op: parksPerOp[executor].map { ["parks": $0] }, note: what))
            }
        }
        return rows
    }

    // MARK: channel

    func runChannel(loop: EventLoop, only: Set<String>?) throws -> [BenchResult] {
        var rows: [BenchResult] = []
        for variant in ChannelWorkload.variants where !Self.interrupted {
            for executor in ChannelWorkload.executors where only?.contains(executor) ?? true {
                progress("channel \(variant): \(executor), \(trials) trials of \(ChannelWorkload.messages) messages")
                _ = try ChannelWorkload.run(executor, variant: variant, loop: loop)  // warm-up
                var samples: [Double] = []
                for _ in 0..<trials { samples.append(try ChannelWorkload.run(executor, variant: variant, loop: loop)) }
                let before = loop.scheduler.counters
                _ = try ChannelWorkload.run(executor, variant: variant, loop: loop)
                let after = loop.scheduler.counters
                var perOp: [String: Double] = [
                    "switches": Double(after.switches - before.switches) * 2 / Double(ChannelWorkload.messages)
                ]
                if let (a, _) = AllocationCounts.measure(
                    workload: "channel", variant: variant, executor: executor, size: 1)
                {
                    perOp["allocs"] = Double(a) / Double(ChannelWorkload.messages)
                }
                let stats = Stats(samples)
                rows.append(
                    BenchResult(
                        workload: "channel", variant: variant, executor: executor, metric: "time", unit: "ns",
                        median: stats.median, min: stats.min, max: stats.max, trials: stats.count, per_op: perOp,
                        note: variant == "select"
                            ? "per message, two producers on two channels, one consumer taking each with a two-case select"
                            : variant == "select-clauses"
                                ? "per message, as select, over two receive clauses: no handlers"
                                : "per message, one producer and one consumer fiber"))
            }
        }
        return rows
    }

    // MARK: spawn

    func runSpawn(loop: EventLoop, only: Set<String>?) throws -> [BenchResult] {
        var rows: [BenchResult] = []
        let perFiber = Double(SpawnWorkload.fibers)
        for variant in SpawnWorkload.variants where !Self.interrupted {
            for executor in SpawnWorkload.executors where only?.contains(executor) ?? true {
                progress(
                    "spawn \(variant): \(executor), \(trials) cold then \(trials) warm trials of \(SpawnWorkload.fibers) fibers"
                )
                var cold: [Double] = [], warm: [Double] = []
                for _ in 0..<trials {
                    loop.scheduler.stacks.trim()  // fresh stacks: mmap, guard page, first-touch faults
                    cold.append(try SpawnWorkload.run(executor, variant: variant, loop: loop) / perFiber)
                }
                for _ in 0..<trials {
                    warm.append(try SpawnWorkload.run(executor, variant: variant, loop: loop) / perFiber)
                }
                var perOp: [String: Double] = ["switches": 2]
                if let (a, _) = AllocationCounts.measure(
                    workload: "spawn", variant: variant, executor: executor, size: 1)
                {
                    perOp["allocs"] = Double(a) / perFiber
                }
                for (phase, samples) in [("cold", cold), ("warm", warm)] {
                    let stats = Stats(samples)
                    rows.append(
                        BenchResult(
                            workload: "spawn", variant: variant, executor: executor, metric: "time", unit: "ns",
                            median: stats.median, min: stats.min, max: stats.max, trials: stats.count, phase: phase,
                            per_op: perOp, note: "per fiber: spawn, run to completion, reclaim (join: and join)"))
                }
            }
        }
        return rows
    }

    // MARK: scale

    /// `a`'s median over `b`'s, as "1.23x".
    func ratio(_ a: [Double], _ b: [Double]) -> String {
        let (x, y) = (Stats(a).median, Stats(b).median)
        return y > 0 ? String(format: "%.2fx", x / y) : "?"
    }

    func runScale(loop: EventLoop, only: Set<String>?) throws -> [BenchResult] {
        guard only?.contains("fibers") ?? true, !Self.interrupted else { return [] }
        // Each trial maps, faults and frees a million stacks (4-12 s here): one trial, or up to
        // three with --all.
        let count = all ? max(1, min(trials, 3)) : 1
        var prefault: [Double] = [], floor: [Double] = [], spawn: [Double] = [], resident: [Double] = []
        var wake: [Double] = []
        for trial in 0..<count where !Self.interrupted {
            progress("scale: trial \(trial + 1)/\(count), 1,000,000 parked fibers")
            let outcome = try ScaleWorkload.run(loop: loop)
            prefault.append(outcome.prefaultSeconds)
            floor.append(outcome.prefaultFloorSeconds)
            spawn.append(outcome.spawnSeconds)
            resident.append(outcome.residentBytesPerFiber)
            wake.append(outcome.wakeSeconds)
        }
        guard !spawn.isEmpty else { return [] }
        let note = "1,000,000 fibers parked at once on 1 ms timers; 16 KiB unguarded stacks from slabs"
        return [
            (
                "prefault", prefault, "s",
                "map the slabs and touch each stack's top page (the kernel clears one page per fiber)"
            ),
            (
                "prefault-floor", floor, "s",
                "the same slab mmaps and first writes in C, nothing else (the kernel's page faults): prefault is "
                    + ratio(prefault, floor) + " this in the same trial"
            ),
            ("spawn", spawn, "s", "spawn all from the prefaulted pool and run each to its park"),
            ("rss-per-fiber", resident.map { $0 / 1024 }, "KiB", "resident memory per parked fiber (statm)"),
            ("wake", wake, "s", "first timer fired to last fiber finished"),
        ].map { metric, samples, unit, what in
            let stats = Stats(samples)
            return BenchResult(
                workload: "scale", variant: "", executor: "fibers", metric: metric, unit: unit,
                median: stats.median, min: stats.min, max: stats.max, trials: stats.count, note: "\(what); \(note)")
        }
    }

    // MARK: echo

    /// How long a burst of new connections waits: every connection opened at once, then the
    /// time until the last has its first echo (`burst_ns`), for 1,000 and 10,000 connections.
    /// The accept queue (the listen backlog), the accepts per loop turn and the work per new
    /// connection all show here, and nowhere in the ping-pong rows, which start timing once
    /// every connection is served.
    func runEchoBurst(only: Set<String>?, trials: Int) throws -> [BenchResult] {
        var rows: [BenchResult] = []
        for size in EchoWorkload.burstSizes where !Self.interrupted {
            let executors = EchoWorkload.burstExecutors.filter { only?.contains($0) ?? true }
            guard
                let outcomes = try interleavedEchoRuns(
                    "echo burst-\(size)", executors, trials: trials,
                    {
                        try EchoWorkload.run(
                            $0, variant: "burst-\(size)", warmupMs: 0, durationMs: 1, tools: Self.tools, burst: size)
                    })
            else { return rows }
            for executor in executors {
                let stats = Stats(outcomes[executor]!.map { $0.burstSeconds * 1e3 })
                rows.append(
                    BenchResult(
                        workload: "echo", variant: "burst-\(size)", executor: executor, metric: "all-echoed",
                        unit: "ms", median: stats.median, min: stats.min, max: stats.max, trials: stats.count,
                        note: "\(size) connections opened at once, each sending its first request when connected: "
                            + "from the first connect to the last one's first echo")
                )
            }
        }
        return rows
    }

    /// Echo runs taken in turns (A B C A B C ...), `trials` times, so that drift on a shared
    /// machine hits every server alike; nil once interrupted.
    func interleavedEchoRuns(
        _ label: String, _ executors: [String], trials: Int, _ run: (String) throws -> EchoWorkload.Outcome
    ) throws -> [String: [EchoWorkload.Outcome]]? {
        var outcomes: [String: [EchoWorkload.Outcome]] = [:]
        for trial in 0..<trials {
            for executor in executors {
                if Self.interrupted { return nil }
                progress("\(label): trial \(trial + 1)/\(trials), \(executor)")
                outcomes[executor, default: []].append(try run(executor))
            }
        }
        return outcomes
    }

    func runEcho(only: Set<String>?) throws -> [BenchResult] {
        var rows: [BenchResult] = []
        let tools = Self.tools
        // Each trial is a server process and a load-generator process for 0.2 s of warm-up and
        // 0.7 s of measurement, after the ramp that gives every connection its first echo (15 to
        // 20 ms for the libuv servers, 0.6 to 0.9 s for SwiftNIO's 1,000), so fewer trials than
        // the in-process workloads (3; 5 with --all): a median of three, as the spread of two
        // trials on this shared VM reached ±10%.
        let echoTrials = self.echoTrials ?? min(trials, all ? 5 : 3)
        let (warmupMs, durationMs) = (200, 700)
        for variant in EchoWorkload.variants where !Self.interrupted {
            let executors = EchoWorkload.executors.filter {
                only?.contains($0) ?? (all || EchoWorkload.headlineExecutors.contains($0))
            }
            guard
                let outcomes = try interleavedEchoRuns(
                    "echo \(variant)", executors, trials: echoTrials,
                    {
                        try EchoWorkload.run(
                            $0, variant: variant, warmupMs: warmupMs, durationMs: durationMs, tools: tools)
                    })
            else { return rows }
            // Steady-state allocations per round trip of the Swift servers: two runs of different
            // length through the malloc interposer, so what is made per connection cancels out.
            var allocations: [String: Double] = [:]
            for executor in executors
            where executor != EchoWorkload.baseline && !EchoWorkload.peers.contains(executor)
                && EchoWorkload.sameCodeAs[executor] == nil
            {
                progress("echo \(variant): \(executor) allocations (two counted runs)")
                let short = try EchoWorkload.run(
                    executor, variant: variant, warmupMs: warmupMs, durationMs: 100, tools: tools,
                    countingAllocations: true)
                let long = try EchoWorkload.run(
                    executor, variant: variant, warmupMs: warmupMs, durationMs: 400, tools: tools,
                    countingAllocations: true)
                if let a = short.serverMallocs, let b = long.serverMallocs, long.rounds > short.rounds {
                    allocations[executor] = Double(b - a) / Double(long.rounds - short.rounds)
                }
            }
            for executor in executors {
                let note =
                    "\(EchoWorkload.messageSize)-byte ping-pong, C load generator in its own process, "
                    + "\(durationMs) ms after \(warmupMs) ms warm-up per trial, both once every connection has had its "
                    + "first echo (ramp_ms: how long that took); every byte checked"
                let stats = Stats(outcomes[executor]!.map(\.requestsPerSecond))
                var perOp = ["ramp_ms": Stats(outcomes[executor]!.map { $0.rampSeconds * 1e3 }).median]
                perOp["allocs"] = allocations[executor]
                rows.append(
                    BenchResult(
                        workload: "echo", variant: variant, executor: executor, metric: "requests/s", unit: "req/s",
                        median: stats.median, min: stats.min, max: stats.max, trials: stats.count,
                        per_op: perOp, note: note))
                let cpu = Stats(outcomes[executor]!.map { $0.serverCPUPerRequest * 1e9 })
                rows.append(
                    BenchResult(
                        workload: "echo", variant: variant, executor: executor, metric: "server-cpu", unit: "ns",
                        median: cpu.median, min: cpu.min, max: cpu.max, trials: cpu.count,
                        note: "the server process's user + system CPU time per round trip (rusage), warm-up included"))
                // On two cores the load generator competes with a server of two loops: its share.
                let load = Stats(outcomes[executor]!.map { $0.loadCPUPerRequest * 1e9 })
                rows.append(
                    BenchResult(
                        workload: "echo", variant: variant, executor: executor, metric: "client-cpu", unit: "ns",
                        median: load.median, min: load.min, max: load.max, trials: load.count,
                        note: "the load generator's user + system CPU time per round trip (rusage), warm-up included"))
                for percentile in [50.0, 99.0, 99.9] {
                    let stats = Stats(
                        outcomes[executor]!.map { Double($0.latency.valueAtPercentile(percentile)) / 1e3 })
                    // On the p99 row, what shapes it: how many echoes the load generator read
                    // per loop turn (see EchoWorkload.Outcome.loadBatch).
                    rows.append(
                        BenchResult(
                            workload: "echo", variant: variant, executor: executor,
                            metric: percentile == 99.9 ? "p99.9" : "p\(Int(percentile))", unit: "µs",
                            median: stats.median, min: stats.min, max: stats.max, trials: stats.count,
                            per_op: percentile == 99
                                ? ["load_batch": Stats(outcomes[executor]!.map(\.loadBatch)).median] : nil,
                            note: percentile == 99
                                ? "latency (HdrHistogram); median of the trials' percentiles; load_batch: echoes the load "
                                    + "generator read per loop turn (near 1: requests queue in the server; near the "
                                    + "connection count or above: in the load generator, whose last few echoes a turn then wait a "
                                    + "second turn)"
                                : "latency (HdrHistogram); median of the trials' percentiles"))
                }
            }
        }
        if !Self.interrupted { rows += try runEchoBurst(only: only, trials: echoTrials) }
        return rows
    }

    // MARK: output

    func emit(_ report: Report) throws {
        let text: String
        switch format {
        case .table: text = ReportFormatter.table(report)
        case .json: text = try ReportFormatter.json(report)
        case .csv: text = ReportFormatter.csv(report)
        case .markdown: text = ReportFormatter.markdown(report)
        }
        print(text, terminator: text.hasSuffix("\n") ? "" : "\n")
        if let out {
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            try ReportFormatter.json(report).write(toFile: "\(out)/results.json", atomically: true, encoding: .utf8)
            try ReportFormatter.markdown(report).write(toFile: "\(out)/report.md", atomically: true, encoding: .utf8)
            try Chart.svg(report, pitfalls: Set(FanoutWorkload.pitfalls))
                .write(toFile: "\(out)/chart.svg", atomically: true, encoding: .utf8)
            progress("wrote \(out)/results.json, \(out)/report.md and \(out)/chart.svg")
        }
    }
}

/// Minor page faults of this process so far (getrusage).
func minorFaults() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return usage.ru_minflt
}
