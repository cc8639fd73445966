import BenchKit
import Foundation

/// Other runtimes' coroutines on the fanout workload, each a program in `Benchmarks/Peers/` (or
/// the `spindle-bench-nio` executable) run as a process of its own with the same shape and
/// checks. A peer whose toolchain is missing is skipped, with the command that installs it.
struct Peer: Sendable {
    let name: String
    let variants: [String]
    let install: String
    /// The version line for the report, or nil when the toolchain is missing.
    let version: @Sendable () -> String?
    /// Builds what needs building (once a run) and returns the command for one variant.
    let prepare: @Sendable (_ peers: URL, _ tools: URL) throws -> (_ variant: String, _ trials: Int) -> [String]

    static let all: [Peer] = [
        Peer(
            name: "go", variants: ["yield", "timer"], install: "apt-get install -y golang-go",
            version: {
                which("go").map { _ in shell("go", ["version"]).trimmingCharacters(in: .whitespacesAndNewlines) }
            },
            prepare: { peers, _ in
                let binary = NSTemporaryDirectory() + "spindle-peer-go-\(getpid())"
                try build(
                    ["go", "build", "-o", binary, "fanout.go"], in: peers.appendingPathComponent("go"),
                    environment: ["GOCACHE": NSTemporaryDirectory() + "spindle-go-cache", "GOFLAGS": "-mod=mod"])
                return { variant, trials in [binary, variant, ops, steps, String(trials)] }
            }),
        node("callbacks"),
        node("async"),
        Peer(
            name: "boost-fiber", variants: ["yield", "timer"], install: "apt-get install -y libboost-fiber-dev g++",
            version: {
                guard which("g++") != nil, FileManager.default.fileExists(atPath: "/usr/include/boost/fiber/all.hpp")
                else { return nil }
                return
                    "Boost.Fiber \(MachineInfo.current().boost), \(shell("g++", ["--version"]).split(separator: "\n").first ?? "g++")"
            },
            prepare: { peers, _ in
                let binary = NSTemporaryDirectory() + "spindle-peer-boost-fiber-\(getpid())"
                try build(
                    ["g++", "-O2", "-o", binary, "fanout.cpp", "-lboost_fiber", "-lboost_context"],
                    in: peers.appendingPathComponent("boost-fiber"))
                return { variant, trials in [binary, variant, ops, steps, String(trials)] }
            }),
        Peer(
            name: "swiftnio", variants: ["yield", "timer"], install: "cd Benchmarks && swift build -c release",
            version: { swiftNIOVersion() },
            prepare: { _, tools in
                let binary = tools.appendingPathComponent("spindle-bench-nio").path
                guard FileManager.default.isExecutableFile(atPath: binary) else {
                    throw BenchError.tool("\(binary) is missing")
                }
                return { variant, trials in [binary, "fanout", variant, ops, steps, String(trials)] }
            }),
    ]

    /// Node.js in callback style (`setImmediate`/`setTimeout` chains) or async/await.
    static func node(_ style: String) -> Peer {
        Peer(
            name: "node-\(style)", variants: ["yield", "timer"], install: "apt-get install -y nodejs",
            version: nodeVersion,
            prepare: { peers, _ in
                let script = peers.appendingPathComponent("node/fanout.js").path
                return { variant, trials in ["node", script, style, variant, ops, steps, String(trials)] }
            })
    }

    /// The fanout variants the peers run, for `list`.
    static var variantsRun: String {
        FanoutWorkload.variants.filter { variant in all.contains { $0.variants.contains(variant) } }.joined(
            separator: " and ")
    }

    static let ops = String(FanoutWorkload.ops)
    static let steps = String(FanoutWorkload.steps)

    static func nodeVersion() -> String? {
        which("node").map { _ in
            "Node.js " + shell("node", ["--version"]).trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    /// swift-nio's version as the Benchmarks package resolved it (Package.resolved).
    static func swiftNIOVersion() -> String? {
        guard FileManager.default.isExecutableFile(atPath: Run.tools.appendingPathComponent("spindle-bench-nio").path)
        else { return nil }
        let resolved = Run.benchmarksDirectory.appendingPathComponent("Package.resolved")
        guard let data = try? Data(contentsOf: resolved),
            let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let pins = json["pins"] as? [[String: Any]],
            let nio = pins.first(where: { ($0["identity"] as? String) == "swift-nio" }),
            let state = nio["state"] as? [String: Any], let version = state["version"] as? String
        else { return "SwiftNIO" }
        return "SwiftNIO \(version)"
    }

    static func build(_ command: [String], in directory: URL, environment: [String: String] = [:]) throws {
        let run = try runTool(
            URL(fileURLWithPath: which(command[0]) ?? command[0]), Array(command.dropFirst()), in: directory,
            environment: environment)
        guard run.status == 0 else {
            throw BenchError.tool("\(command.joined(separator: " ")) failed in \(directory.path):\n\(run.errors)")
        }
    }

    /// Runs one peer command and returns each trial's milliseconds, after checking that every
    /// trial completed every operation.
    static func trials(_ command: [String]) throws -> [Double] {
        let executable = command[0].hasPrefix("/") ? command[0] : which(command[0]) ?? command[0]
        let run = try runTool(URL(fileURLWithPath: executable), Array(command.dropFirst()))
        guard run.status == 0 else {
            throw BenchError.incorrect("\(command.joined(separator: " ")) failed: \(run.errors)")
        }
        let text = run.output
        struct Trial: Decodable { let ms: Double; let completed: Int }
        let decoded = try text.split(separator: "\n").map { try JSONDecoder().decode(Trial.self, from: Data($0.utf8)) }
        for trial in decoded where trial.completed != FanoutWorkload.ops {
            throw BenchError.incorrect(
                "\(command.joined(separator: " ")) completed \(trial.completed) of \(FanoutWorkload.ops)")
        }
        return decoded.map(\.ms)
    }
}

extension Run {
    /// Where the build products are (this executable's directory).
    static var tools: URL { executable.deletingLastPathComponent() }

    /// The Benchmarks package: Benchmarks/.build/<triple>/release/spindle-bench, three levels up
    /// (or Benchmarks/ under the working directory when run from elsewhere).
    static var benchmarksDirectory: URL {
        var directory = tools
        for _ in 0..<3 { directory.deleteLastPathComponent() }
        if FileManager.default.fileExists(atPath: directory.appendingPathComponent("Peers").path) { return directory }
        return URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("Benchmarks")
    }

    /// Runs every installed peer on fanout yield and timer: the first trial is the cold row, the
    /// median of the rest the warm one. Returns the rows and, for each missing peer, why.
    func runPeers(only: Set<String>?) -> (rows: [BenchResult], skipped: [String]) {
        var rows: [BenchResult] = [], skipped: [String] = []
        let peersDirectory = Self.benchmarksDirectory.appendingPathComponent("Peers")
        for peer in Peer.all where only?.contains(peer.name) ?? true {
            if Self.interrupted { break }
            guard let version = peer.version() else {
                skipped.append("\(peer.name): not installed (\(peer.install); or make bench-peers)")
                continue
            }
            do {
                let command = try peer.prepare(peersDirectory, Self.tools)
                for variant in peer.variants where !Self.interrupted {
                    progress("fanout \(variant): peer \(peer.name), \(trials + 1) trials in one process")
                    let samples = try Peer.trials(command(variant, trials + 1))
                    for (phase, phaseSamples) in [
                        ("cold", Array(samples.prefix(1))), ("warm", Array(samples.dropFirst())),
                    ] where !phaseSamples.isEmpty {
                        let stats = Stats(phaseSamples)
                        rows.append(
                            BenchResult(
                                workload: "fanout", variant: variant, executor: peer.name, metric: "time", unit: "ms",
                                median: stats.median, min: stats.min, max: stats.max, trials: stats.count, phase: phase,
                                per_op: [
                                    "ns_per_step": stats.median * 1e6
                                        / Double(FanoutWorkload.ops * FanoutWorkload.steps)
                                ],
                                note: "peer: \(version)"))
                    }
                }
            } catch {
                skipped.append("\(peer.name): failed: \(error)")
            }
        }
        for line in skipped { progress("peer skipped — \(line)") }
        return (rows, skipped)
    }
}
