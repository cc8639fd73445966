import ArgumentParser
import BenchKit
import Foundation
import SpindleLoop

/// `spindle-bench trace-cost --trace-free PATH`: what the trace recorder costs a fiber switch,
/// against a build of spindle-bench with no tracing code at all (`make trace-cost` builds it
/// with `-DSPINDLE_NO_TRACE`). Instruction counts under callgrind, so the comparison of two
/// builds is exact, then the wall clock of tracing off and on in this process; exits non-zero
/// when tracing compiled in but off costs more than 2% in instructions, or tracing on more than
/// 2x, in instructions or on the clock.
struct TraceCost: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace-cost",
        abstract: "Compares a fiber switch's instructions with tracing off, on, and with no tracing code.")

    @Option(help: "A spindle-bench built with -DSPINDLE_NO_TRACE (no trace hooks compiled in).")
    var traceFree: String

    @Option(help: "Round trips per callgrind run (the count is the difference of N and 2N).")
    var rounds: UInt64 = 100_000

    func run() throws {
        guard Instructions.available else {
            throw BenchError.tool("valgrind is not installed (apt-get install -y valgrind)")
        }
        guard FileManager.default.isExecutableFile(atPath: traceFree) else {
            throw BenchError.tool("\(traceFree): no such executable (make trace-cost builds it)")
        }
        func count(_ executor: String, _ executable: String? = nil) throws -> Double {
            guard
                let (instructions, _) = try Instructions.perRoundTrip(
                    workload: SwitchWorkload.name, variant: "", executor: executor, rounds: rounds,
                    executable: executable)
            else { throw BenchError.tool("callgrind gave no count for \(executor)") }
            return instructions
        }
        let none = try count("fibers", traceFree)
        let noneAsked = try count("fibers-traced", traceFree)
        let off = try count("fibers")
        let on = try count("fibers-traced")
        // A trace-free build records nothing even when asked: its "traced" run must cost what
        // its plain run does, or the build still has hooks in it.
        guard abs(noneAsked - none) <= 1 else {
            throw BenchError.incorrect(
                "the trace-free build still traces: \(format(noneAsked)) instructions traced against \(format(none)) plain"
            )
        }
        print("fiber switch round trip (Fiber.yield and back), instructions under callgrind:")
        print("  no tracing code       \(format(none))")
        print(
            "  tracing off           \(format(off))  \(String(format: "%+.2f%%", (off / none - 1) * 100)) (target ≤ +2%)"
        )
        print("  tracing on            \(format(on))  \(String(format: "%.2fx", on / off)) of off (target ≤ 2x)")
        // The clock too: a memory-system cost (a read of a line still in a write-combining
        // buffer, a cache miss) takes time that callgrind does not count.
        let (offNs, onNs) = try wallClock()
        print("fiber switch round trip, wall clock (median of \(trials) interleaved trials of \(wallRounds)):")
        print("  tracing off           \(format(offNs)) ns")
        print(
            "  tracing on            \(format(onNs)) ns  \(String(format: "%.2fx", onNs / offNs)) of off (target ≤ 2x)")
        if off > none * 1.02 || on > off * 2 || onNs > offNs * 2 {
            throw ExitCode(1)
        }
    }

    @Option(help: "Timed trials of each, taken in turns.")
    var trials = 7

    @Option(help: "Round trips per timed trial.")
    var wallRounds: UInt64 = 1_000_000

    /// Median nanoseconds per round trip with tracing off and on, trials interleaved so that
    /// drift on a shared machine hits both alike.
    private func wallClock() throws -> (off: Double, on: Double) {
        let loop = EventLoop()
        defer { try? loop.close() }
        var samples: [String: [Double]] = [:]
        for executor in ["fibers", "fibers-traced"] {
            _ = try SwitchWorkload.run(executor, rounds: wallRounds / 10, loop: loop)  // warm-up
        }
        for _ in 0..<max(trials, 1) {
            for executor in ["fibers", "fibers-traced"] {
                let ns = try SwitchWorkload.run(executor, rounds: wallRounds, loop: loop)
                samples[executor, default: []].append(ns / Double(wallRounds))
            }
        }
        return (Stats(samples["fibers"]!).median, Stats(samples["fibers-traced"]!).median)
    }

    private func format(_ value: Double) -> String { String(format: "%7.2f", value) }
}
