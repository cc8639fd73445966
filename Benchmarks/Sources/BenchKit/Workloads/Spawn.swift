import Spindle
import SpindleLoop

/// `spawn`: create, run to completion and reclaim 100,000 fibers, in waves of 10,000 (100,000
/// guarded stacks alive at once would need 200,000 mappings, past Linux's default
/// `vm.max_map_count`); nanoseconds per fiber. Variants: `detached` (`loop.spawnDetached`: no
/// handle), `join` (`loop.spawn`, then every handle joined; each body returns its own fiber's
/// id, which its join must give back) and `join-capturing` (the same with a body that captures
/// its index, as `{ index }`: Swift allocates that closure's context, and at 10,000 outstanding
/// malloc walks its free list through cold chunks, so the row shows what a capture costs on
/// top of Spindle's own). The bodies of `detached` and `join` capture nothing. Cold trials
/// start with an empty stack pool (the first wave maps fresh stacks); warm ones take every
/// stack from the pool.
package enum SpawnWorkload {
    package static let name = "spawn"
    package static let variants = ["detached", "join", "join-capturing"]
    package static let executors = ["fibers"]
    package static let fibers = 100_000
    package static let wave = 10_000

    /// Nanoseconds for all `fibers` (spawned from the loop's thread, run by `loop.run()`).
    package static func run(_ executor: String, variant: String, loop: EventLoop) throws -> Double {
        guard executor == "fibers" else { throw BenchError.unknownExecutor(executor, workload: name) }
        let before = loop.scheduler.counters
        var joined = 0
        let ns = try measure {
            // Only the variant's own array is allocated (the detached row counts no malloc of it).
            var handles: [FiberHandle<Int>] = []
            if variant == "join-capturing" { handles.reserveCapacity(wave) }
            var ids: [FiberHandle<UInt64>] = []
            if variant == "join" { ids.reserveCapacity(wave) }
            for _ in 0..<(fibers / wave) {
                if variant == "join" {
                    for _ in 0..<wave { ids.append(loop.spawn { Fiber.current.id }) }
                    try loop.run()
                    for handle in ids where try handle.join() == handle.id { joined += 1 }
                    ids.removeAll(keepingCapacity: true)
                } else if variant == "join-capturing" {
                    for index in 0..<wave { handles.append(loop.spawn { index }) }
                    try loop.run()
                    for (index, handle) in handles.enumerated() where try handle.join() == index { joined += 1 }
                    handles.removeAll(keepingCapacity: true)
                } else {
                    for _ in 0..<wave { loop.spawnDetached {} }
                    try loop.run()
                    joined += wave
                }
            }
        }
        let finished = loop.scheduler.counters.finishes - before.finishes
        guard finished == UInt64(fibers), joined == fibers else {
            throw BenchError.incorrect("spawn \(variant): \(finished) fibers finished, \(joined) joined, of \(fibers)")
        }
        return ns
    }
}
