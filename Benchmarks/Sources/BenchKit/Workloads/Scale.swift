import CBenchKernels
import Glibc
import Spindle
import SpindleLoop

/// `scale`: 1,000,000 fibers parked at once, each sleeping on its own libuv timer. Reports the
/// time to prefault their stacks (map the slabs and touch each stack's top page, as a service
/// does at start-up), the time to spawn them all from that pool and run each to its park, the
/// resident memory each one costs while parked, and the time from the first timer firing to the
/// last fiber finishing. Prefault plus spawn is what a cold start costs: nearly all of the
/// prefault is the kernel clearing one page per fiber.
///
/// A million guarded stacks would be two million mappings, past Linux's default
/// `vm.max_map_count` (65,530): the fibers get 16 KiB stacks without guard pages, carved from
/// slabs (what a service holding a million connections would configure).
package enum ScaleWorkload {
    package static let name = "scale"
    package static let variants = [""]
    package static let executors = ["fibers"]

    package struct Outcome {
        package var prefaultSeconds: Double
        /// The same mappings and first writes in C with nothing around them, measured just
        /// before (``CBenchKernels``' `cb_prefault_floor_seconds`; its second of two runs).
        package var prefaultFloorSeconds: Double
        package var spawnSeconds: Double
        package var residentBytesPerFiber: Double
        package var wakeSeconds: Double
        package var parkedAtOnce: UInt64
    }

    /// Runs `fibers` sleepers once on `loop` (a fresh pool each time: every stack is cold).
    package static func run(fibers: Int = 1_000_000, loop: EventLoop) throws -> Outcome {
        let scheduler = loop.scheduler
        let stacks = scheduler.stacks
        let (guarded, turnBudget) = (stacks.guardPages, scheduler.resumesPerTurn)
        stacks.guardPages = false
        // One turn resumes every new fiber, so all of them are parked before any timer fires.
        scheduler.resumesPerTurn = Int.max
        defer {
            stacks.guardPages = guarded
            scheduler.resumesPerTurn = turnBudget
            stacks.trim()
        }
        stacks.trim()
        let before = scheduler.counters
        let residentBefore = residentBytes()
        // The floor first, its memory freed before the pool's is taken. Twice, the second
        // counted: on a VM the first touch of memory the guest has not used for a while costs
        // the host's faults too (one make bench measured the floor at 14.96 s, then the prefault
        // at 4.66 s on the pages it had just freed).
        var floor = -1.0
        for _ in 0..<2 {
            floor = cb_prefault_floor_seconds(
                UInt64(fibers + 1), StackPool.minimumStackSize, UInt32(StackPool.slabStacks))
            guard floor >= 0 else {
                throw BenchError.incorrect(
                    "scale: the prefault floor's mmap of \(fibers + 1) 16 KiB stacks failed: \(UVError(code: Int32(floor)))"
                )
            }
        }
        // The page each parked fiber uses: its control block and its frames (about 2 KiB).
        let prefaultStart = nowNanoseconds()
        stacks.prefault(count: fibers + 1, stackSize: StackPool.minimumStackSize, touching: 0)
        let prefaultSeconds = Double(nowNanoseconds() - prefaultStart) / 1e9
        final class Marks {
            var allParked: UInt64 = 0
            var parked: UInt64 = 0
            var resident = 0
            var firstWake: UInt64 = 0
            var lastFinish: UInt64 = 0
            var finished = 0
        }
        let marks = Marks()
        let start = nowNanoseconds()
        // One closure for all of them: the per-fiber state is on each fiber's own stack.
        let sleeper = {
            try? Fiber.sleep(for: .milliseconds(1))
            if marks.firstWake == 0 { marks.firstWake = nowNanoseconds() }
            marks.finished += 1
            if marks.finished == fibers { marks.lastFinish = nowNanoseconds() }
        }
        for _ in 0..<fibers { loop.spawnDetached(stackSize: StackPool.minimumStackSize, sleeper) }
        // Spawned last, it runs last in the first turn: every sleeper is parked by then.
        loop.spawnDetached(stackSize: StackPool.minimumStackSize) {
            marks.allParked = nowNanoseconds()
            marks.parked = loop.scheduler.counters.parked
            marks.resident = residentBytes()
        }
        try loop.run()
        let after = scheduler.counters
        let finished = after.finishes - before.finishes
        guard marks.finished == fibers, finished == UInt64(fibers + 1), marks.parked >= UInt64(fibers) else {
            throw BenchError.incorrect(
                "scale: \(marks.finished) of \(fibers) sleepers finished, \(marks.parked) parked at once")
        }
        guard after.stacksCold == before.stacksCold else {
            throw BenchError.incorrect(
                "scale: \(after.stacksCold - before.stacksCold) stacks mapped during the spawn, none expected")
        }
        return Outcome(
            prefaultSeconds: prefaultSeconds, prefaultFloorSeconds: floor,
            spawnSeconds: Double(marks.allParked - start) / 1e9,
            residentBytesPerFiber: Double(marks.resident - residentBefore) / Double(fibers),
            wakeSeconds: Double(marks.lastFinish - marks.firstWake) / 1e9,
            parkedAtOnce: marks.parked)
    }

    /// This process's resident set (/proc/self/statm's second field), in bytes.
    package static func residentBytes() -> Int {
        guard let file = fopen("/proc/self/statm", "r") else { return 0 }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 256)
        guard fgets(&line, Int32(line.count), file) != nil else { return 0 }
        let fields = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            .split(separator: " ")
        guard fields.count >= 2, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
