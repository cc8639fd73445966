import ArgumentParser
import BenchKit
import Foundation
import Spindle
import SpindleLoop
import SpindleTrace

/// `spindle-bench doctor --gallery`: runs every pitfall executor and the good designs on the
/// fanout timer workload, measures each, and prints the doctor's verdicts. Exits non-zero when
/// a pitfall's verdict misses its real cause or a good design gets any finding.
struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Runs the pitfall gallery and the good executors and prints the doctor's verdict on each.",
        discussion: """
            In your own program, call Doctor.report(for: loop, since: snapshot) (module SpindleTrace) \
            after a warm-up snapshot.
            """)

    @Flag(help: "Run every pitfall executor and the good executors (fanout timer).")
    var gallery = false

    @Option(help: "Comma-separated executors (default: the gallery, c-fcontext, fibers, callbacks, futures).")
    var executors: String?

    @Flag(help: "Measure without the system call counter (no ptrace): no rule then reads system calls.")
    var noSyscalls = false

    @Option(help: .hidden)
    var measureTo: String?

    /// What each pitfall must be diagnosed with; the good designs must get no finding.
    static let expected: [String: Doctor.Pathology] = [
        "ucontext": .syscallPerSwitch,
        "thread-handoff": .threadHandoff,
        "mmap-per-fiber": .coldStacks,
        "busy-poll": .busyYield,
        "poll-io-every-switch": .loopTurnPerSwitch,
        "task-yield": .taskYieldSpin,
    ]
    static let healthy = ["c-fcontext", "fibers", "callbacks", "futures"]

    func run() throws {
        guard gallery || executors != nil else {
            throw ValidationError("nothing to examine: pass --gallery (or --executors a,b)")
        }
        let chosen =
            executors.map { $0.split(separator: ",").map(String.init) }
            ?? (Self.healthy + FanoutWorkload.pitfalls)
        for executor in chosen where !FanoutWorkload.executors("timer").contains(executor) {
            throw ValidationError(
                "unknown executor '\(executor)' (fanout timer runs: \(FanoutWorkload.executors("timer").joined(separator: ", ")))"
            )
        }
        let loop = EventLoop()
        let state = FanoutWorkload.State(loop: loop)
        if let measureTo {
            // The child of `SyscallCounting`: one run of each executor, with fewer operations.
            FanoutWorkload.ops = SyscallCounting.countedOperations
            for executor in chosen { _ = try FanoutWorkload.run(executor, variant: "timer", state: state) }
            try loop.close()
            try "done\n".write(toFile: measureTo, atomically: false, encoding: .utf8)
            return
        }
        var wrong: [String] = []
        for executor in chosen {
            var measured = evidence(try measure(executor, state: state))
            if !noSyscalls {
                let scale = Double(FanoutWorkload.ops * Self.measuredRuns(executor))
                do {
                    measured.loopSyscalls = try SyscallCounting.loopSyscallsPerOperation(executor).mapValues {
                        $0 * scale
                    }
                } catch let error as UVError {
                    throw ValidationError("\(error) (--no-syscalls measures without the system call counter)")
                }
            }
            let findings = Doctor.diagnose(measured)
            let verdict =
                findings.isEmpty ? "no pathology found" : findings.map(\.description).joined(separator: "\n    ")
            print("\(executor):\n    \(verdict)")
            if let cause = Self.expected[executor] {
                if !findings.contains(where: { $0.pathology == cause }) {
                    wrong.append(
                        "\(executor): expected \"\(cause.rawValue)\", got \(findings.isEmpty ? "nothing" : findings.map(\.pathology.rawValue).joined(separator: ", "))"
                    )
                }
            } else if Self.healthy.contains(executor), !findings.isEmpty {
                wrong.append(
                    "\(executor): a false alarm on a good design (\(findings.map(\.pathology.rawValue).joined(separator: ", ")))"
                )
            }
        }
        try loop.close()
        if wrong.isEmpty {
            print("doctor: every pitfall named by its cause, no false alarm on the good designs")
        } else {
            print("doctor: WRONG VERDICTS\n  " + wrong.joined(separator: "\n  "))
            throw ExitCode.failure
        }
    }

    /// The doctor's evidence from per-operation figures over `runs` runs of the fanout timer
    /// workload.
    func evidence(_ measured: (figures: [String: Double], runs: Int)) -> Doctor.Evidence {
        var evidence = Doctor.Evidence(
            perOperation: measured.figures, operations: Double(FanoutWorkload.ops * measured.runs),
            waitsPerOperation: Double(FanoutWorkload.steps))
        evidence.concurrency = Double(FanoutWorkload.ops)
        return evidence
    }

    /// Measured runs of `executor`: one for the slow thread hand-off, else three.
    static func measuredRuns(_ executor: String) -> Int { executor == "thread-handoff" ? 1 : 3 }

    /// One warm-up run, then measured runs (one for the slow thread hand-off): per operation,
    /// the scheduler's counters, the executor's own counters and getrusage's.
    func measure(_ executor: String, state: FanoutWorkload.State) throws -> (figures: [String: Double], runs: Int) {
        let ops = FanoutWorkload.ops
        let runs = Self.measuredRuns(executor)
        progress("doctor: \(executor), \(runs == 1 ? "one run" : "a warm-up and \(runs) runs") of fanout timer")
        if runs > 1 { _ = try FanoutWorkload.run(executor, variant: "timer", state: state) }
        let usageBefore = ResourceUsage.now()
        let before = state.loop.scheduler.counters
        for _ in 0..<runs { _ = try FanoutWorkload.run(executor, variant: "timer", state: state) }
        let after = state.loop.scheduler.counters
        var figures = ResourceUsage.perOp(since: usageBefore, ops: ops * runs)
        let total = Double(ops * runs)
        if after.switches > before.switches {  // the Spindle fiber executors
            figures["switches"] = Double(after.switches - before.switches) * 2 / total
            figures["yields"] = Double(after.yields - before.yields) / total
            figures["parks"] = Double(after.parks - before.parks) / total
            figures["stack_maps"] = Double(after.stacksCold - before.stacksCold) / total
            figures["loop_turns"] = Double(after.loopTurns - before.loopTurns) / total
        }
        figures.merge(state.evidence[executor] ?? [:]) { $1 }  // a kernel's own counters win
        return (figures, runs)
    }
}
