import CBenchKernels
import Glibc
import Spindle
import SpindleLoop

/// `fanout`: the seed's experiment — 10,000 concurrent operations of 10 asynchronous steps each,
/// all on one loop. The `yield` variant: each step completes on the next scheduler turn.
package enum FanoutWorkload {
    package static let name = "fanout"
    package static let executors = [
        "c-fcontext", "fibers", "callbacks", "futures", "swift-async-loop", "swift-async-global", "threads",
    ]
    package static let variants = ["yield", "timer", "io"]
    /// Ratios are against the callback executor (the C floor only runs `yield`).
    package static let baseline = "callbacks"

    /// Executors that run a variant: the C scheduler has no sockets; the pitfall gallery runs
    /// the `timer` variant (the one where coroutines really wait).
    package static func executors(_ variant: String) -> [String] {
        switch variant {
        case "io": return executors.filter { $0 != "c-fcontext" }
        case "timer": return executors + pitfalls
        default: return executors
        }
    }
    /// Operations a run starts. Only `spindle-bench doctor`'s system call counting child, a
    /// process of its own, lowers it (ptrace makes each system call slow); set it before any run.
    package nonisolated(unsafe) static var ops = 10_000
    package static let steps = 10
    /// How deep `spindle-bench` prefaults each pooled stack before its "prefaulted" trials: the
    /// top page, the one a fanout fiber touches (one page fault an operation on fresh stacks).
    package static let prefaultDepth = 0

    /// Per-executor state that survives between trials (stack pools: what makes a run warm).
    package final class State {
        package let loop: EventLoop
        var cPool: OpaquePointer?
        /// The pitfall executors' own counters from their last run, per operation.
        package var evidence: [String: [String: Double]] = [:]
        package init(loop: EventLoop) { self.loop = loop }
        deinit { if let cPool { cb_stack_pool_destroy(cPool) } }

        /// Drops every pooled stack so the next trial maps and faults fresh ones.
        package func makeCold(_ executor: String) {
            switch executor {
            case "c-fcontext", "ucontext", "poll-io-every-switch":
                if let cPool { cb_stack_pool_destroy(cPool) }
                cPool = nil
            case "fibers":
                loop.scheduler.stacks.trim()
            default:
                break
            }
        }
    }

    package static func run(_ executor: String, variant: String, state: State) throws -> Double {
        var completed = 0
        let ns = try measure {
            switch (executor, variant) {
            case ("c-fcontext", "yield"):
                if state.cPool == nil { state.cPool = cb_stack_pool_create(StackPool.defaultStackSize) }
                completed = Int(cb_fcontext_fanout(state.cPool, UInt32(ops), UInt32(steps))) / steps
            case (_, "timer") where executor == "c-fcontext" || pitfalls.contains(executor):
                completed = try runPitfall(executor, state: state, evidence: &state.evidence[executor, default: [:]])
            case ("fibers", "yield"):
                completed = try fibersYield(loop: state.loop)
            case ("fibers", "timer"):
                completed = try fibersTimer(loop: state.loop)
            case ("fibers", "io"):
                completed = try fibersIO(loop: state.loop)
            case ("callbacks", "yield"): completed = try callbacksYield(loop: state.loop)
            case ("callbacks", "timer"): completed = try callbacksTimer(loop: state.loop)
            case ("callbacks", "io"): completed = try callbacksIO(loop: state.loop)
            case ("futures", "yield"): completed = try futuresYield(loop: state.loop)
            case ("futures", "timer"): completed = try futuresTimer(loop: state.loop)
            case ("futures", "io"): completed = try futuresIO(loop: state.loop)
            case ("swift-async-loop", _): completed = try asyncOnLoop(variant, loop: state.loop)
            case ("swift-async-global", _): completed = try asyncOnGlobal(variant, loop: state.loop)
            case ("threads", _): completed = try threads(variant)
            default:
                throw BenchError.unknownExecutor(executor, workload: name)
            }
        }
        guard completed == ops else { throw BenchError.incorrect("\(executor) completed \(completed) of \(ops) ops") }
        return ns
    }

    package static func fibersYield(loop: EventLoop) throws -> Int {
        try runDetached(loop: loop, counting: \.yields, as: "yielded") {
            for _ in 0..<FanoutWorkload.steps { Fiber.yield() }
        }
    }

    /// Each step waits for a zero-delay libuv timer (it fires on the next loop iteration).
    package static func fibersTimer(loop: EventLoop) throws -> Int {
        try runDetached(loop: loop, counting: \.parks, as: "parked") {
            for _ in 0..<FanoutWorkload.steps { try? Fiber.sleep(for: .zero) }
        }
    }

    /// Runs `ops` detached fibers of `body` and returns how many finished, after checking with
    /// the scheduler's counters that they took `ops * steps` of the counted steps. Detached
    /// fibers (no handles: the operations report nothing back) whose body captures nothing
    /// (like the C kernel's tasks, they keep their state on their own stacks) allocate nothing.
    private static func runDetached(
        loop: EventLoop, counting step: KeyPath<Scheduler.Counters, UInt64>, as verb: String,
        _ body: @escaping () -> Void
    ) throws -> Int {
        let before = loop.scheduler.counters
        for _ in 0..<ops { loop.spawnDetached(body) }
        try loop.run()
        let after = loop.scheduler.counters
        let taken = after[keyPath: step] - before[keyPath: step]
        guard taken == UInt64(ops * steps) else {
            throw BenchError.incorrect("fibers \(verb) \(taken) times, expected \(ops * steps)")
        }
        return Int(after.finishes - before.finishes)
    }

    /// Each step writes one byte into a socketpair and reads one back, through the loop.
    /// Operations share pairs two by two (each writes on its own end and reads the other's
    /// byte), so 10,000 operations use 10,000 descriptors.
    package static func fibersIO(loop: EventLoop) throws -> Int {
        let before = loop.scheduler.counters
        let connections = try socketPairs(ops / 2) { try PipeConnection(adopting: $0, loop: loop) }
        let bytesRead = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        bytesRead.initialize(to: 0)
        defer { bytesRead.deallocate() }
        for connection in connections {
            loop.spawnDetached {
                var byte: UInt8 = 1
                for _ in 0..<FanoutWorkload.steps {
                    try? withUnsafeBytes(of: &byte) { try connection.write($0) }
                    if let n = try? withUnsafeMutableBytes(of: &byte, { try connection.read(into: $0) }) {
                        bytesRead.pointee += n
                    }
                }
            }
        }
        try loop.run()
        for connection in connections { connection.close() }
        try loop.runOnce(blocking: false)  // let the close callbacks run
        let after = loop.scheduler.counters
        guard bytesRead.pointee == ops * steps else {
            throw BenchError.incorrect("fibers read \(bytesRead.pointee) bytes, expected \(ops * steps)")
        }
        return Int(after.finishes - before.finishes)
    }
}
