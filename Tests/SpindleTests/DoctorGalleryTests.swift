import Foundation
import Glibc
import Testing

/// The doctor's second gallery (`spindle-mistakes`): ten mistakes that are not the benchmark's
/// pitfalls, each a small program run with SPINDLE_TRACE and diagnosed by `spindle-doctor` from
/// its trace alone, with no hint of what the program does. Each must be named by its own causes
/// (one program makes two mistakes at once) and by nothing else; the healthy program must get no
/// finding.
@Suite("spindle-doctor on the mistakes gallery")
struct DoctorGalleryTests {
    /// The one finding the doctor may add to any program: a slice stretched past 1 ms of wall
    /// time, which a loaded machine or a sanitizer can do to any slice (the finding then says the
    /// OS preempted the loop), and which the blocking programs really do.
    static let tolerated = "slices that block the loop"

    static let cases: [(program: String, causes: Set<String>)] = [
        ("healthy", []),
        ("blocking-sleep", ["a blocking call on the loop thread"]),
        ("timer-polling", ["polling through zero-delay sleeps"]),
        ("fiber-per-step", ["a fiber per step"]),
        ("varied-stacks", ["cold stacks"]),
        ("step-fibers-varied-stacks", ["a fiber per step", "cold stacks"]),
        ("mutex-convoy", ["a lock convoy on FiberMutex"]),
        ("channel-per-message", ["a channel per message"]),
        ("wake-storm", ["a wake storm"]),
        ("async-hops", ["hops to Swift concurrency on every step"]),
        ("thread-handoff", ["thread hand-offs"]),
    ]

    /// The pathologies a doctor report names (its "  - name: why" lines).
    static func named(in output: String) -> Set<String> {
        Set(
            output.split(separator: "\n").compactMap { line -> String? in
                guard line.hasPrefix("  - "), let colon = line.firstIndex(of: ":") else { return nil }
                return String(line[line.index(line.startIndex, offsetBy: 4)..<colon])
            })
    }

    @Test("each program: its trace names its own cause and nothing else", arguments: cases.map(\.program))
    func diagnose(program: String) throws {
        let causes = Self.cases.first { $0.program == program }!.causes
        let trace = FileManager.default.temporaryDirectory.appendingPathComponent(
            "spindle-mistakes-\(getpid())-\(program).json"
        ).path
        defer { unlink(trace) }
        let run = try ServiceProcess(
            ServiceProcess.path(of: "spindle-mistakes"), [program], mergingErrors: true,
            environment: ["SPINDLE_TRACE=\(trace)"])
        let runOutput = ServiceProcess.readAll(run.stdoutFD)
        #expect(run.wait() == 0, "\(runOutput)")
        #expect(runOutput.contains("trace written to \(trace)"), "\(runOutput)")
        let doctor = try ServiceProcess(ServiceProcess.path(of: "spindle-doctor"), [trace], mergingErrors: true)
        let output = ServiceProcess.readAll(doctor.stdoutFD)
        let status = doctor.wait()
        let named = Self.named(in: output)
        #expect(named.isSuperset(of: causes), "\(program): expected \(causes.sorted())\n\(output)")
        if !causes.isEmpty { #expect(status == 1, "\(output)") }
        let wrong = named.subtracting(causes.union([Self.tolerated]))
        #expect(wrong.isEmpty, "\(program): false findings \(wrong.sorted())\n\(output)")
        #expect((status == 0) == named.isEmpty, "exit status \(status):\n\(output)")
    }

    @Test("spindle-doctor run: counts the loop thread's system calls and names the blocking one")
    func runUnderSyscallCounter() throws {
        let doctor = try ServiceProcess(
            ServiceProcess.path(of: "spindle-doctor"),
            ["run", ServiceProcess.path(of: "spindle-mistakes"), "blocking-sleep"],
            mergingErrors: true)
        let output = ServiceProcess.readAll(doctor.stdoutFD)
        #expect(doctor.wait() == 1, "\(output)")
        #expect(output.contains("exited with status 0"), "\(output)")
        #expect(output.contains("clock_nanosleep 300"), "\(output)")
        #expect(output.contains("(ptrace): clock_nanosleep 1.00 per operation"), "\(output)")
        #expect(Self.named(in: output).contains("a blocking call on the loop thread"), "\(output)")
    }

    @Test("spindle-doctor run: a program with two loops has its first trace read and the other removed")
    func runTwoLoops() throws {
        let doctor = try ServiceProcess(
            ServiceProcess.path(of: "spindle-doctor"),
            ["run", ServiceProcess.path(of: "spindle-mistakes"), "thread-handoff"], mergingErrors: true)
        let output = ServiceProcess.readAll(doctor.stdoutFD)
        #expect(doctor.wait() == 1, "\(output)")
        #expect(output.contains("(2 loops wrote traces: this reads the one that closed first"), "\(output)")
        #expect(Self.named(in: output).contains("thread hand-offs"), "\(output)")
        // Both files named in the program's warnings are gone.
        let written = output.split(separator: "\n").compactMap { line -> String? in
            guard let start = line.range(of: "trace written to ")?.upperBound else { return nil }
            return String(line[start...].prefix { $0 != " " })
        }
        #expect(written.count == 2, "\(output)")
        for path in written { #expect(access(path, F_OK) != 0, "\(path) was left behind") }
    }

    @Test("spindle-doctor run: a program killed by a signal says so; no trace to read, exit status 2")
    func runKilledProgram() throws {
        let doctor = try ServiceProcess(
            ServiceProcess.path(of: "spindle-doctor"), ["run", "/bin/sh", "-c", "kill -9 $$"], mergingErrors: true)
        let output = ServiceProcess.readAll(doctor.stdoutFD)
        #expect(doctor.wait() == 2, "\(output)")
        #expect(output.contains("killed by signal 9 (Killed)"), "\(output)")
        #expect(output.contains("the program wrote no trace Spindle can read"), "\(output)")
    }

    @Test("spindle-doctor run on a program that does not exist: its reason, exit status 2")
    func runMissingProgram() throws {
        let doctor = try ServiceProcess(
            ServiceProcess.path(of: "spindle-doctor"), ["run", "/nonexistent/program"], mergingErrors: true)
        let output = ServiceProcess.readAll(doctor.stdoutFD)
        #expect(doctor.wait() == 2)
        #expect(
            output == "spindle-doctor: running /nonexistent/program under ptrace: ENOENT: no such file or directory\n",
            "\(output)")
    }
}
