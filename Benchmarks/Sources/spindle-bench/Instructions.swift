import BenchKit
import Foundation

/// Instruction counts from `valgrind --tool=callgrind`: deterministic on these noisy machines.
///
/// The kernel runs twice under callgrind, with N and 2N round trips; the difference of the two
/// totals divided by N is the cost of one round trip with start-up and teardown cancelled out.
/// The same difference of call counts shows what a round trip calls: reference counting
/// (`swift_retain`/`swift_release`), allocation (`malloc`), locks, exclusivity checks.
enum Instructions {
    static var available: Bool { which("valgrind") != nil }

    /// Functions whose calls per round trip are reported next to the instruction count.
    static let watched: [(key: String, symbols: Set<String>)] = [
        ("retains", ["swift_retain", "swift_retain_n", "swift_unknownObjectRetain", "swift_bridgeObjectRetain"]),
        ("releases", ["swift_release", "swift_release_n", "swift_unknownObjectRelease", "swift_bridgeObjectRelease"]),
        ("mallocs", ["malloc", "calloc", "realloc", "posix_memalign", "aligned_alloc"]),
        ("locks", ["pthread_mutex_lock", "pthread_rwlock_rdlock", "pthread_rwlock_wrlock", "pthread_spin_lock"]),
        ("access_checks", ["swift_beginAccess"]),
    ]

    struct Count {
        var instructions: Int64
        var calls: [String: Int64]
    }

    /// Per-round-trip instructions and watched calls, or nil when valgrind is missing.
    /// `executable` is another build of spindle-bench to count instead of this one (the
    /// trace-free build of `make trace-cost`).
    static func perRoundTrip(
        workload: String, variant: String, executor: String, rounds: UInt64, executable: String? = nil
    ) throws -> (Double, [String: Double])? {
        guard available else { return nil }
        let program = executable.map { countable($0, tag: "other") } ?? countableExecutable
        let small = try collected(program, workload: workload, variant: variant, executor: executor, rounds: rounds)
        let large = try collected(program, workload: workload, variant: variant, executor: executor, rounds: rounds * 2)
        var calls: [String: Double] = [:]
        for (key, _) in watched {
            // Start-up differs by a few calls between two processes; below 1 in 10,000 round
            // trips that is noise, not a per-switch cost.
            let perRound = Double(large.calls[key, default: 0] - small.calls[key, default: 0]) / Double(rounds)
            calls[key] = abs(perRound) < 0.0005 ? 0 : (perRound * 10_000).rounded() / 10_000
        }
        return (Double(large.instructions - small.instructions) / Double(rounds), calls)
    }

    /// Valgrind 3.19 cannot read the DWARF 5 that Swift 6's clang emits, so callgrind runs a copy
    /// of this executable with the debug sections stripped (made once per run, in /tmp).
    private static let countableExecutable = countable(Run.executable.path, tag: "self")

    /// A copy of `path` with its debug sections stripped, removed at exit; `path` itself when
    /// strip is missing or fails.
    private static func countable(_ path: String, tag: String) -> String {
        let exe = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        if let made = strippedCopy[exe] { return made }
        let copy = NSTemporaryDirectory() + "spindle-bench-nodebug-\(getpid())-\(tag)"
        if let strip = which("strip"), (try? FileManager.default.copyItem(atPath: exe, toPath: copy)) != nil {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: strip)
            process.arguments = ["--strip-debug", copy]
            if (try? process.run()) != nil {
                process.waitUntilExit()
                if process.terminationStatus == 0 {
                    strippedCopy[exe] = copy
                    if strippedCopy.count == 1 {
                        atexit { for copy in Instructions.strippedCopy.values { unlink(copy) } }
                    }
                    return copy
                }
            }
        }
        return exe
    }

    /// Stripped copies made so far, by the executable they copy.
    nonisolated(unsafe) private static var strippedCopy: [String: String] = [:]

    private static func collected(
        _ program: String, workload: String, variant: String, executor: String, rounds: UInt64
    ) throws -> Count {
        let out = NSTemporaryDirectory() + "spindle-bench-\(getpid())-\(rounds).callgrind"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: which("valgrind")!)
        process.arguments = [
            "--tool=callgrind", "--callgrind-out-file=\(out)", program,
            "count", workload, "--variant", variant, "--executor", executor, "--rounds", String(rounds),
        ]
        let errPipe = Pipe()
        process.standardError = errPipe
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let data = errPipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0, let text = try? String(contentsOfFile: out, encoding: .utf8),
            let count = parse(text)
        else {
            throw BenchError.tool(
                "callgrind run of \(executor) failed (status \(process.terminationStatus)):\n"
                    + String(decoding: data, as: UTF8.self))
        }
        return count
    }

    /// Reads the `totals:` line and sums `calls=` lines by callee from a callgrind output file
    /// (names are compressed: `cfn=(12) name` the first time, `cfn=(12)` after).
    static func parse(_ text: String) -> Count? {
        var names: [Substring: Substring] = [:]
        var totals: Int64?
        var callee: Substring?
        var callsByName: [Substring: Int64] = [:]
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.hasPrefix("fn=(") || line.hasPrefix("cfn=(") {
                let body = line.drop { $0 != "(" }
                guard let close = body.firstIndex(of: ")") else { continue }
                let id = body[body.startIndex...close]
                let rest = body[body.index(after: close)...].drop { $0 == " " }
                if !rest.isEmpty { names[id] = rest }
                if line.hasPrefix("cfn=") { callee = names[id] }
            } else if line.hasPrefix("calls="), let name = callee {
                let number = line.dropFirst(6).prefix { $0.isNumber }
                callsByName[name, default: 0] += Int64(number) ?? 0
                callee = nil
            } else if line.hasPrefix("totals:") {
                totals = Int64(line.dropFirst(7).trimmingCharacters(in: .whitespaces))
            }
        }
        guard let totals else { return nil }
        var calls: [String: Int64] = [:]
        for (key, symbols) in watched {
            calls[key] = callsByName.filter { symbols.contains(String($0.key)) }.values.reduce(0, +)
        }
        return Count(instructions: totals, calls: calls)
    }
}

/// Allocation counts from the `spindle-bench-allocs` helper (a child process with the malloc
/// interposer; this process keeps plain malloc for its timed runs).
enum AllocationCounts {
    /// (mallocs for one run of `size`, mallocs for one run of `2 * size`), or nil when the helper
    /// is missing or cannot count.
    static func measure(workload: String, variant: String, executor: String, size: UInt64) -> (Int64, Int64)? {
        let helper = Run.tools.appendingPathComponent("spindle-bench-allocs").path
        guard FileManager.default.isExecutableFile(atPath: helper) else { return nil }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: helper)
        process.arguments = [workload, variant, executor, String(size)]
        let out = Pipe()
        process.standardOutput = out
        do { try process.run() } catch { return nil }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let fields = String(decoding: data, as: UTF8.self).split(whereSeparator: \.isWhitespace).compactMap {
            Int64($0)
        }
        guard process.terminationStatus == 0, fields.count == 2 else { return nil }
        return (fields[0], fields[1])
    }
}
