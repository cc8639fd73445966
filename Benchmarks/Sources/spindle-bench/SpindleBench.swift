import ArgumentParser
import BenchKit
import Foundation
import Spindle
import SpindleLoop

@main
struct SpindleBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spindle-bench",
        abstract: "Measures what a context switch, a yield and a coroutine design cost on one libuv loop.",
        subcommands: [List.self, Run.self, DoctorCommand.self, TraceCost.self, Count.self, ServeEcho.self],
        defaultSubcommand: Run.self)

    static let workloads: [(name: String, variants: [String], executors: [String], baseline: String)] = [
        (SwitchWorkload.name, SwitchWorkload.variants, SwitchWorkload.executors(""), SwitchWorkload.baseline),
        (FanoutWorkload.name, FanoutWorkload.variants, FanoutWorkload.executors, FanoutWorkload.baseline),
        (SpawnWorkload.name, SpawnWorkload.variants, SpawnWorkload.executors, ""),
        (ChannelWorkload.name, ChannelWorkload.variants, ChannelWorkload.executors, ""),
        (CrossLoopWorkload.name, CrossLoopWorkload.variants, CrossLoopWorkload.executors, "per variant: its C floor"),
        (EchoWorkload.name, EchoWorkload.variants, EchoWorkload.executors, EchoWorkload.baseline),
        (ScaleWorkload.name, ScaleWorkload.variants, ScaleWorkload.executors, ""),
    ]
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Lists workloads and executors.")

    func run() throws {
        for workload in SpindleBench.workloads {
            let names = workload.variants.map { $0.isEmpty ? "(default)" : $0 }
            let variants = workload.variants == [""] ? "" : " (variants: \(names.joined(separator: ", ")))"
            print("\(workload.name)\(variants)")
            print("  executors: \(workload.executors.joined(separator: ", ")); baseline: \(workload.baseline)")
            if workload.name == FanoutWorkload.name {
                print("  pitfall gallery (timer variant): \(FanoutWorkload.pitfalls.joined(separator: ", "))")
            }
        }
        print("peers (run beside the fanout executors on \(Peer.variantsRun)):")
        for peer in Peer.all {
            print("  \(peer.name): \(peer.version() ?? "not installed (\(peer.install); or make bench-peers)")")
        }
        print(
            "instruction counts: \(Instructions.available ? "valgrind found" : "valgrind not installed (apt-get install -y valgrind)")"
        )
    }
}

/// Runs one executor's echo server until SIGINT/SIGTERM. Hidden: the `echo` workload starts it
/// as a process of its own.
struct ServeEcho: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve-echo", shouldDisplay: false)
    @Option var executor: String
    @Option var port: Int = 0

    func run() throws { try EchoWorkload.serve(executor, port: port) }
}

/// Runs one kernel once, for callgrind to count. Hidden: `run` calls it.
struct Count: ParsableCommand {
    static let configuration = CommandConfiguration(shouldDisplay: false)
    @Argument var workload: String
    @Option var variant: String = ""
    @Option var executor: String
    @Option var rounds: UInt64

    func run() throws {
        let loop = EventLoop()
        switch workload {
        case SwitchWorkload.name:
            _ = try SwitchWorkload.run(executor, variant: variant, rounds: rounds, loop: loop)
        case FanoutWorkload.name:
            // `rounds` warm runs after one cold run: (I(2) - I(1)) is one warm run.
            let state = FanoutWorkload.State(loop: loop)
            for _ in 0..<rounds {
                _ = try FanoutWorkload.run(executor, variant: variant.isEmpty ? "yield" : variant, state: state)
            }
            state.makeCold(executor)
        case ChannelWorkload.name, SpawnWorkload.name:
            // `rounds` runs of the whole workload; (I(2) - I(1)) is one run.
            for _ in 0..<rounds {
                _ = try AllocationProbe.run(
                    workload: workload, variant: variant, executor: executor, size: 1, state: .init(loop: loop))
            }
        default:
            throw BenchError.unknownWorkload(workload)
        }
        try loop.close()
    }
}
