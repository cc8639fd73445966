import ArgumentParser
import BenchKit
import Foundation
import SpindleTrace

/// The system calls a fanout timer executor makes on the loop's thread, counted by the doctor's
/// ptrace counter in a child process (`spindle-bench doctor --executors X --measure-to FILE`):
/// the evidence the doctor needs to name a system call made on every switch. `make bench`'s
/// pitfall rows and `spindle-bench doctor` both use it.
enum SyscallCounting {
    /// Operations of the run the counter watches: a tenth of the workload's, enough for calls
    /// made per switch or per step, at a tolerable cost under ptrace.
    static let countedOperations = 1_000

    /// The loop thread's system calls per operation, by name, in one run of `executor` of
    /// ``countedOperations`` operations (no warm-up). Throws when the counter cannot run here
    /// (ptrace refused) or the run fails.
    static func loopSyscallsPerOperation(_ executor: String) throws -> [String: Double] {
        progress("\(executor): one run of \(countedOperations) operations under the system call counter")
        let output = FileManager.default.temporaryDirectory.appendingPathComponent(
            "spindle-bench-syscalls-\(getpid()).txt"
        ).path
        defer { unlink(output) }
        let counted = try Doctor.SyscallCount.run(
            ["/proc/self/exe", "doctor", "--executors", executor, "--measure-to", output],
            environment: ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" })
        guard counted.waitStatus == 0, (try? String(contentsOfFile: output, encoding: .utf8)) == "done\n" else {
            throw ValidationError(
                "counting \(executor)'s system calls failed: the child run \(counted.ending) (its output is above)")
        }
        // The workload's loop runs on the child's main thread, the first one seen.
        let (loop, _) = counted.split(loopThread: counted.threads.first?.id ?? 0)
        return loop.mapValues { Double($0) / Double(countedOperations) }
    }
}
