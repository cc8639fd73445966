import BenchKit
import Foundation

/// Instruction counts from `valgrind --tool=callgrind`: deterministic on these noisy machines.
///
/// The kernel runs twice under callgrind, with N and 2N round trips; the difference of the two
/// totals divided by N is the cost of one round trip with start-up and teardown cancelled out.
enum Instructions {
    static var available: Bool { which("valgrind") != nil }

    /// Instructions per round trip of `executor` on `workload`, or nil when valgrind is missing.
    static func perRoundTrip(workload: String, executor: String, rounds: UInt64) throws -> Double? {
        guard available else { return nil }
        let small = try collected(workload: workload, executor: executor, rounds: rounds)
        let large = try collected(workload: workload, executor: executor, rounds: rounds * 2)
        return Double(large - small) / Double(rounds)
    }

    /// Valgrind 3.19 cannot read the DWARF 5 that Swift 6's clang emits, so callgrind runs a copy
    /// of this executable with the debug sections stripped (made once per run, in /tmp).
    private static let countableExecutable: String = {
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().path
        let copy = NSTemporaryDirectory() + "spindle-bench-nodebug-\(getpid())"
        if let strip = which("strip"), (try? FileManager.default.copyItem(atPath: exe, toPath: copy)) != nil {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: strip)
            process.arguments = ["--strip-debug", copy]
            if (try? process.run()) != nil {
                process.waitUntilExit()
                if process.terminationStatus == 0 {
                    atexit { try? FileManager.default.removeItem(atPath: NSTemporaryDirectory() + "spindle-bench-nodebug-\(getpid())") }
                    return copy
                }
            }
        }
        return exe
    }()

    private static func collected(workload: String, executor: String, rounds: UInt64) throws -> Int64 {
        let exe = countableExecutable
        let process = Process()
        process.executableURL = URL(fileURLWithPath: which("valgrind")!)
        process.arguments = [
            "--tool=callgrind", "--callgrind-out-file=/dev/null", exe,
            "count", workload, "--executor", executor, "--rounds", String(rounds),
        ]
        let errPipe = Pipe()
        process.standardError = errPipe
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let data = errPipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0,
            let line = text.split(separator: "\n").first(where: { $0.contains("Collected :") }),
            let value = Int64(line.split(separator: ":").last!.trimmingCharacters(in: .whitespaces))
        else {
            throw BenchError.tool("callgrind run of \(executor) failed (status \(process.terminationStatus)):\n\(text)")
        }
        return value
    }
}

/// Allocation counts from the `spindle-bench-allocs` helper (a child process with the malloc
/// interposer; this process keeps plain malloc for its timed runs).
enum AllocationCounts {
    /// (mallocs for one run of `size`, mallocs for one run of `2 * size`), or nil when the helper
    /// is missing or cannot count.
    static func measure(workload: String, executor: String, size: UInt64) -> (Int64, Int64)? {
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let helper = exe.deletingLastPathComponent().appendingPathComponent("spindle-bench-allocs").path
        guard FileManager.default.isExecutableFile(atPath: helper) else { return nil }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: helper)
        process.arguments = [workload, executor, String(size)]
        let out = Pipe()
        process.standardOutput = out
        do { try process.run() } catch { return nil }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let fields = String(decoding: data, as: UTF8.self).split(whereSeparator: \.isWhitespace).compactMap { Int64($0) }
        guard process.terminationStatus == 0, fields.count == 2 else { return nil }
        return (fields[0], fields[1])
    }
}
