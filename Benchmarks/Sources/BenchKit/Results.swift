import Foundation

/// One row of a report: one workload × variant × executor × metric, over repeated trials.
/// This is the JSON shape documented in shared/BENCHMARKS.md; tools read it, keep it stable.
package struct BenchResult: Codable, Sendable {
    package var workload: String
    package var variant: String
    package var executor: String
    package var metric: String
    package var unit: String
    package var median: Double
    package var min: Double
    package var max: Double
    package var trials: Int
    /// "warm" (stacks and caches reused) or "cold" (fresh stacks each trial); nil where it does not apply.
    package var phase: String?
    package var baseline: String?
    package var ratio: Double?
    package var per_op: [String: Double]?
    package var note: String?

    package init(
        workload: String, variant: String, executor: String, metric: String, unit: String,
        median: Double, min: Double, max: Double, trials: Int, phase: String? = nil,
        per_op: [String: Double]? = nil, note: String? = nil
    ) {
        self.workload = workload
        self.variant = variant
        self.executor = executor
        self.metric = metric
        self.unit = unit
        self.median = median
        self.min = min
        self.max = max
        self.trials = trials
        self.phase = phase
        self.per_op = per_op
        self.note = note
    }
}

/// The machine a report was measured on.
package struct MachineInfo: Codable, Sendable {
    package var cpu: String
    package var cores: Int
    package var kernel: String
    package var swift: String
    package var libuv: String
    package var boost: String
    package var valgrind: String?
    package var date: String

    package static func current() -> MachineInfo {
        let cpuInfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model =
            cpuInfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .map { $0.split(separator: ":", maxSplits: 1).last!.trimmingCharacters(in: .whitespaces) } ?? "unknown"
        var uts = utsname()
        uname(&uts)
        let release = withUnsafeBytes(of: &uts.release) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        let formatter = ISO8601DateFormatter()
        return MachineInfo(
            cpu: model,
            cores: ProcessInfo.processInfo.activeProcessorCount,
            kernel: "Linux \(release)",
            swift: shell("swift", ["--version"]).split(separator: "\n").first.map(String.init) ?? "unknown",
            libuv: shell("pkg-config", ["--modversion", "libuv"]).trimmingCharacters(in: .whitespacesAndNewlines),
            boost: boostVersion(),
            valgrind: which("valgrind") != nil
                ? shell("valgrind", ["--version"]).trimmingCharacters(in: .whitespacesAndNewlines) : nil,
            date: formatter.string(from: Date()))
    }

    private static func boostVersion() -> String {
        guard let header = try? String(contentsOfFile: "/usr/include/boost/version.hpp", encoding: .utf8),
            let line = header.split(separator: "\n").first(where: { $0.hasPrefix("#define BOOST_LIB_VERSION") })
        else { return "unknown" }
        return line.split(separator: "\"").dropFirst().first.map { $0.replacingOccurrences(of: "_", with: ".") }
            ?? "unknown"
    }
}

package struct Report: Codable, Sendable {
    package var machine: MachineInfo
    package var results: [BenchResult]
    /// Peers that did not run, each with why and the command that installs it.
    package var skipped: [String]?

    package init(machine: MachineInfo, results: [BenchResult], skipped: [String]? = nil) {
        self.machine = machine
        self.results = results
        self.skipped = skipped
    }
}

/// Median, min and max of a set of trials.
package struct Stats {
    package var median: Double
    package var min: Double
    package var max: Double
    package var count: Int

    package init(_ samples: [Double]) {
        precondition(!samples.isEmpty, "no samples")
        let sorted = samples.sorted()
        count = sorted.count
        min = sorted.first!
        max = sorted.last!
        median =
            sorted.count % 2 == 1
            ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }
}

package func which(_ tool: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    for dir in path.split(separator: ":") {
        let candidate = "\(dir)/\(tool)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
}

/// What a finished tool printed, and how it ended.
package struct ToolRun {
    package let status: Int32
    package let output: String
    package let errors: String
}

/// Runs `executable` to its end and returns its exit status and both outputs. Standard error is
/// drained on another thread while standard output is read, so neither pipe can fill and stall
/// the tool.
package func runTool(
    _ executable: URL, _ arguments: [String], in directory: URL? = nil, environment extra: [String: String] = [:]
) throws -> ToolRun {
    final class Drained: @unchecked Sendable { var data = Data() }
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = directory }
    if !extra.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(extra) { $1 } }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let errors = Drained()
    let done = DispatchSemaphore(value: 0)
    let errorHandle = err.fileHandleForReading
    DispatchQueue.global().async {
        errors.data = errorHandle.readDataToEndOfFile()
        done.signal()
    }
    let output = out.fileHandleForReading.readDataToEndOfFile()
    done.wait()
    process.waitUntilExit()
    return ToolRun(
        status: process.terminationStatus, output: String(decoding: output, as: UTF8.self),
        errors: String(decoding: errors.data, as: UTF8.self))
}

/// The `key=number` pairs of a tool's one-line summary (other words are skipped).
package func keyValues(_ text: String) -> [String: Double] {
    Dictionary(
        text.split(whereSeparator: \.isWhitespace).compactMap { pair -> (String, Double)? in
            let parts = pair.split(separator: "=")
            guard parts.count == 2, let value = Double(parts[1]) else { return nil }
            return (String(parts[0]), value)
        }, uniquingKeysWith: { $1 })
}

/// Runs a tool found on PATH and returns its standard output (empty when it cannot run).
package func shell(_ tool: String, _ arguments: [String]) -> String {
    guard let path = which(tool), let run = try? runTool(URL(fileURLWithPath: path), arguments) else { return "" }
    return run.output
}

/// Fills in `baseline` and `ratio` for every row: its median over the baseline executor's median
/// for the same workload, variant, metric and phase, measured in this same run.
package func attachRatios(_ results: inout [BenchResult], baselines: [String: String]) {
    for index in results.indices {
        let row = results[index]
        // A workload's variants may each have their own baseline ("workload/variant").
        guard let baseline = baselines["\(row.workload)/\(row.variant)"] ?? baselines[row.workload] else { continue }
        guard
            let base = results.first(where: {
                $0.workload == row.workload && $0.variant == row.variant && $0.metric == row.metric
                    && $0.phase == row.phase && $0.executor == baseline
            }), base.median > 0
        else { continue }
        results[index].baseline = baseline
        results[index].ratio = row.median / base.median
    }
}
