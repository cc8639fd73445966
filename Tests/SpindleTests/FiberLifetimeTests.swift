import Spindle
import SpindleLoop
import Testing

@Suite("Fiber lifetime and stacks")
struct FiberLifetimeTests {
    @Test("10,000 fibers release everything they captured and held by the time they finish")
    func noLeaks() throws {
        let counter = DeinitCounter()
        let (finishedBeforeRun, afterRun) = try withLoop { loop -> (Int, Int) in
            for _ in 0..<10_000 {
                let captured = Tracked(counter)
                loop.spawn {
                    let local = Tracked(counter)
                    Fiber.yield()
                    withExtendedLifetime((captured, local)) {}
                }
            }
            let before = counter.count
            try loop.run()
            return (before, counter.count)
        }
        #expect(finishedBeforeRun == 0)
        #expect(afterRun == 20_000)
    }

    @Test("stacks are reused from the pool; prefault fills it ahead of time")
    func pooledStacks() throws {
        let counters = try withLoop { loop -> Scheduler.Counters in
            loop.scheduler.stacks.prefault(count: 8)
            #expect(loop.scheduler.stacks.pooledCount == 8)
            for _ in 0..<3 {
                for _ in 0..<8 { loop.spawn { Fiber.yield() } }
                try loop.run()
            }
            return loop.scheduler.counters
        }
        #expect(counters.spawns == 24)
        #expect(counters.stacksCold == 0)
        #expect(counters.stacksPooled == 24)
    }

    @Test("a fiber gets the stack size it asks for")
    func customStackSize() throws {
        let used = try withLoop { loop -> Int in
            let big = loop.spawn(name: "big", stackSize: 512 * 1024) { () -> Int in
                // 256 KiB of frames would overflow the 64 KiB default.
                withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 256 * 1024) { buffer in
                    buffer.initialize(repeating: 1)
                    return buffer.reduce(0) { $0 + Int($1) }
                }
            }
            try loop.run()
            return try big.join()
        }
        #expect(used == 256 * 1024)
    }

    @Test("an inout held across a yield does not trip exclusivity checking in another fiber")
    func exclusivityAcrossYield() async {
        // Run in a child process: if the access sets were shared, the runtime would stop the
        // process with "Simultaneous accesses".
        await #expect(processExitsWith: .success) {
            final class Shared { var value = 0; var other = 0 }
            try LoopThread.run {
                let loop = EventLoop()
                let shared = Shared()
                func bumpAcrossYield(_ value: inout Int) {
                    value += 1
                    Fiber.yield()  // suspended in the middle of a modify access
                    value += 1
                }
                loop.spawn(name: "holder") { bumpAcrossYield(&shared.value) }
                loop.spawn(name: "toucher") {
                    shared.value += 10  // same storage, while "holder" is suspended inside its access
                    bumpAcrossYield(&shared.other)
                }
                try loop.run()
                precondition(shared.value == 12 && shared.other == 2, "wrong values \(shared.value) \(shared.other)")
                try loop.close()
            }
        }
    }

    @Test("a real exclusivity violation inside one fiber is still caught")
    func exclusivityStillChecked() async {
        await #expect(processExitsWith: .failure) {
            final class Shared { var value = 0 }
            try? LoopThread.run {
                let loop = EventLoop()
                let shared = Shared()
                func modify(_ value: inout Int, _ body: () -> Void) {
                    Fiber.yield()
                    body()
                    value += 1
                }
                loop.spawn { modify(&shared.value) { shared.value += 1 } }
                try loop.run()
            }
        }
    }
}
