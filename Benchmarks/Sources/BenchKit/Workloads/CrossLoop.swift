import CBenchKernels
import Glibc
import Spindle
import SpindleFutures
import SpindleLoop
import Synchronization

/// `crossloop`: fibers of two loops, on two pinned threads, meeting.
///
/// - `call-idle`: a fiber of loop 0 calls `loop1.call { 1 }` in a loop; nanoseconds per round
///   trip. Loop 1 has nothing else to do (it sleeps in epoll between calls). Floor:
///   `c-async-pingpong`, two libuv loops on two pinned threads waking each other with
///   `uv_async_send` (an eventfd write, an epoll return and a callback each way).
/// - `call-busy`: the same while loop 1 is never idle: a fiber there yields without end, so the
///   call waits for the scheduler's turn (up to `resumesPerTurn` resumes) before the loop polls.
///   Floor: the same ping-pong with an idle handle spinning loop 1.
/// - `channel`: a fiber of loop 0 sends 500,000 integers through a `CrossLoopChannel` of 1,024
///   slots to a fiber of loop 1; nanoseconds per message, wake-up batching included: `fibers`
///   sends and receives one message a call, `fibers-batched` 64 a call (`send(contentsOf:)`,
///   `receive(upTo:into:)`: one claim of the ring a batch). Floor:
///   `c-spsc-ring`, a single-producer single-consumer ring of 1,024 slots between two pinned
///   threads that spin: the cache-line cost alone.
package enum CrossLoopWorkload {
    package static let name = "crossloop"
    package static let variants = ["call-idle", "call-busy", "channel"]
    package static let executors = ["c-async-pingpong", "c-spsc-ring", "fibers", "fibers-batched"]
    /// The floor each variant's ratio is taken against.
    package static let baselines = [
        "call-idle": "c-async-pingpong", "call-busy": "c-async-pingpong", "channel": "c-spsc-ring",
    ]
    package static let callRounds = 1_000
    package static let messages = 500_000
    package static let capacity = 1_024

    /// The executors that run `variant`: its floor and the fibers (for the channel, also the
    /// batched calls: `fibers-batched`).
    package static func executors(_ variant: String) -> [String] {
        [baselines[variant] ?? "", "fibers"] + (variant == "channel" ? ["fibers-batched"] : [])
    }
    /// Messages per `send(contentsOf:)` and `receive(upTo:into:)` in `fibers-batched`.
    package static let batch = 64

    /// Two loops on two pinned threads, kept for every trial of the workload.
    package final class State {
        let group = LoopGroup(loops: 2, pinning: true, name: "crossloop")
        package init() {}
        deinit { try? group.shutdown(within: .seconds(10)) }
    }

    /// Parks of both loops' fibers so far (each is a wait that a wake-up across threads ends).
    package static func parks(_ state: State) throws -> UInt64 {
        try state.group.loops.map { loop in try loop.submit { loop.scheduler.counters.parks }.wait() }.reduce(0, +)
    }

    /// Nanoseconds per round trip (calls) or per message (channel).
    package static func run(_ executor: String, variant: String, state: State) throws -> Double {
        let ns: Double
        switch (executor, variant) {
        case ("c-async-pingpong", "call-idle"), ("c-async-pingpong", "call-busy"):
            ns = cb_async_pingpong_ns_per_round(UInt64(callRounds), variant == "call-busy" ? 1 : 0)
        case ("c-spsc-ring", "channel"):
            ns = cb_spsc_ring_ns_per_message(UInt64(messages), UInt32(capacity))
        case ("fibers", "call-idle"), ("fibers", "call-busy"):
            ns = try calls(busy: variant == "call-busy", group: state.group)
        case ("fibers", "channel"):
            ns = try channel(group: state.group, batched: false)
        case ("fibers-batched", "channel"):
            ns = try channel(group: state.group, batched: true)
        default:
            throw BenchError.unknownExecutor(executor, workload: "\(name) \(variant)")
        }
        guard ns > 0 else { throw BenchError.incorrect("crossloop \(variant) on \(executor) miscounted") }
        return ns
    }

    static func calls(busy: Bool, group: LoopGroup) throws -> Double {
        let (caller, target) = (group.loops[0], group.loops[1])
        let stop = Atomic<Bool>(false)
        let spinning = Atomic<Bool>(false)
        if busy {
            group.spawn(on: target, name: "busy") {
                spinning.store(true, ordering: .releasing)
                while !stop.load(ordering: .relaxed) { Fiber.yield() }
            }
            while !spinning.load(ordering: .acquiring) { sched_yield() }
        }
        defer { stop.store(true, ordering: .relaxed) }
        let rounds = callRounds
        let (ns, total) = try caller.submit { () -> (Double, Int) in
            var total = 0
            let ns = try measure { for _ in 0..<rounds { total += try target.call { 1 } } }
            return (ns, total)
        }.wait()
        guard total == rounds else { throw BenchError.incorrect("crossloop call: \(total) answers of \(rounds)") }
        return ns / Double(rounds)
    }

    static func channel(group: LoopGroup, batched: Bool) throws -> Double {
        let (sending, receiving) = (group.loops[0], group.loops[1])
        let channel = CrossLoopChannel<Int>(capacity: capacity)
        let (count, batch) = (messages, Self.batch)
        let start = nowNanoseconds()
        let sent = sending.submit {
            if batched {
                var values: [Int] = []
                values.reserveCapacity(batch)
                for first in stride(from: 0, to: count, by: batch) {
                    values.removeAll(keepingCapacity: true)
                    values.append(contentsOf: first..<min(first + batch, count))
                    try channel.send(contentsOf: values)
                }
            } else {
                for value in 0..<count { try channel.send(value) }
            }
        }
        let sum = receiving.submit { () -> Int in
            var sum = 0
            if batched {
                var values: [Int] = []
                values.reserveCapacity(batch)
                var received = 0
                while received < count {
                    values.removeAll(keepingCapacity: true)
                    received += try channel.receive(upTo: batch, into: &values)
                    for value in values { sum &+= value }
                }
            } else {
                for _ in 0..<count { sum &+= try channel.receive() ?? 0 }
            }
            return sum
        }
        try sent.wait()
        let received = try sum.wait()
        let ns = Double(nowNanoseconds() - start)
        guard received == count * (count - 1) / 2 else {
            throw BenchError.incorrect("crossloop channel delivered a sum of \(received)")
        }
        return ns / Double(count)
    }
}
