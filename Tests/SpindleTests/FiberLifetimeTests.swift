import Spindle
import SpindleLoop
import Testing

@Suite("Fiber lifetime and stacks")
struct FiberLifetimeTests {
    @Test("10,000 fibers release everything they captured and held by the time they finish")
    func noLeaks() throws {
        let counter = DeinitCounter()
        // 10,000 fibers alive at once: alone among such tests under the sanitizers.
        let (finishedBeforeRun, afterRun) = try withManyFibers {
            try withLoop { loop -> (Int, Int) in
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
        }
        #expect(finishedBeforeRun == 0)
        #expect(afterRun == 20_000)
    }

    @Test("detached fibers run, release their captures, and can spawn more detached fibers")
    func detached() throws {
        let counter = DeinitCounter()
        let (ran, released) = try withLoop { loop -> (Int, Int) in
            var ran = 0
            for _ in 0..<1_000 {
                let captured = Tracked(counter)
                loop.spawnDetached {
                    Fiber.yield()
                    withExtendedLifetime(captured) { ran += 1 }
                    Fiber.spawnDetached { ran += 1 }
                }
            }
            try loop.run()
            return (ran, counter.count)
        }
        #expect(ran == 2_000)
        #expect(released == 1_000)
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

    @Test("a finished fiber's stack is back in the pool before the next fiber of the same turn runs")
    func stackBackAtOnce() throws {
        // A spawner that starts a child and yields: the child runs and finishes in the same
        // drain, and the spawner's next spawn there must get the child's stack, not map a new
        // one (a chain of short-lived fibers in one turn would otherwise hold a stack each).
        let (counters, liveSeen, finishesSeen) = try withLoop { loop -> (Scheduler.Counters, [Int], [UInt64]) in
            var live: [Int] = []
            var finishes: [UInt64] = []
            loop.spawnDetached {
                for _ in 0..<5 {
                    Fiber.spawnDetached {}
                    Fiber.yield()
                    live.append(loop.scheduler.liveFiberDescriptions.count)
                    finishes.append(loop.scheduler.counters.finishes)
                }
            }
            try loop.run()
            return (loop.scheduler.counters, live, finishes)
        }
        #expect(liveSeen == [1, 1, 1, 1, 1])
        #expect(finishesSeen == [1, 2, 3, 4, 5])
        // The spawner's stack and the first child's are mapped; every later child reuses one.
        #expect(counters.stacksCold == 2)
        #expect(counters.stacksPooled == 4)
    }

    @Test("the doctor's counters: zero-delay sleeps, channels made in fibers, stacks mapped beside pooled ones")
    func doctorCounters() throws {
        let (counters, beside, sizes) = try withLoop { loop -> (Scheduler.Counters, UInt64, Int) in
            let outside = Channel<Int>()  // made outside any fiber: not counted
            _ = outside
            loop.spawn {
                try? Fiber.sleep(for: .zero)
                try? Fiber.sleep(for: .zero)
                try? Fiber.sleep(for: .microseconds(10))  // rounds up to a 1 ms timer: not zero
                _ = Channel<Int>(capacity: 1)
            }
            try loop.run()
            // One fiber at a time, each with a stack size of its own: from the second on, each
            // maps while the pool holds the earlier sizes' stacks.
            for index in 0..<3 {
                loop.spawn(stackSize: 96 * 1024 + index * 8192) {}
                try loop.run()
            }
            let stacks = loop.scheduler.stacks
            return (loop.scheduler.counters, stacks.coldTakesBesidePooled, stacks.sizesMapped.count)
        }
        #expect(counters.zeroSleeps == 2)
        #expect(counters.channelsMade == 1)
        #expect(beside == 3)  // the default-size stack of the first fiber sits pooled from the start
        #expect(sizes == 4)
    }

    @Test(
        "the default-size pool grows past its first capacity, gives each live fiber its own stack, and keeps at most its maximum"
    )
    func defaultPoolGrowsAndCaps() throws {
        let (intact, afterWaves, afterCap, afterTrim, counters) = try withLoop {
            loop -> (Int, (Int, Int), (Int, Int), Int, Scheduler.Counters) in
            let stacks = loop.scheduler.stacks
            let count = 300  // the pool's array starts with room for 64
            stacks.prefault(count: count)
            var intact = 0
            func wave() throws {
                for index in 0..<count {
                    loop.spawnDetached {
                        // Kept on this fiber's stack across switches to all the others: two
                        // fibers on one stack would overwrite each other's.
                        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: 8) { mine in
                            for slot in 0..<8 { mine[slot] = UInt64(index) &* 31 &+ UInt64(slot) }
                            Fiber.yield()
                            Fiber.yield()
                            if (0..<8).allSatisfy({ mine[$0] == UInt64(index) &* 31 &+ UInt64($0) }) { intact += 1 }
                        }
                    }
                }
                try loop.run()
            }
            try wave()
            try wave()
            let afterWaves = (stacks.pooledCount, stacks.mappedCount)
            stacks.maximumPooledPerSize = 10
            try wave()
            let afterCap = (stacks.pooledCount, stacks.mappedCount)
            stacks.trim()
            stacks.maximumPooledPerSize = 1 << 20
            return (intact, afterWaves, afterCap, stacks.mappedCount, loop.scheduler.counters)
        }
        #expect(intact == 900)
        // Every fiber of a wave alive at once, on the 300 prefaulted stacks, three times over.
        #expect(afterWaves == (300, 300))
        #expect(afterCap == (10, 10))
        #expect(afterTrim == 0)
        #expect(counters.stacksCold == 0)
        #expect(counters.stacksPooled == 900)
        #expect(counters.runQueueHighWater >= 300)
    }

    @Test(
        "prefaulting unguarded stacks maps whole slabs, only as many as asked for, and spawns then take no fresh stack")
    func prefaultSlabs() throws {
        let (pooled, mapped, counters) = try withLoop { loop -> (Int, Int, Scheduler.Counters) in
            let stacks = loop.scheduler.stacks
            stacks.guardPages = false
            defer { stacks.guardPages = true }
            let asked = StackPool.slabStacks * 3 + 5  // four slabs' worth
            stacks.prefault(count: asked, stackSize: StackPool.minimumStackSize)
            let pooled = stacks.pooledCount
            let mapped = stacks.mappedCount
            for _ in 0..<asked { loop.spawnDetached(stackSize: StackPool.minimumStackSize) { Fiber.yield() } }
            try loop.run()
            return (pooled, mapped, loop.scheduler.counters)
        }
        #expect(mapped == StackPool.slabStacks * 4)
        #expect(pooled == mapped)
        #expect(counters.stacksCold == 0)
        #expect(counters.stacksPooled == UInt64(StackPool.slabStacks * 3 + 5))
    }

    @Test("unguarded stacks come in slabs: 40,000 parked fibers, more than guarded stacks allow")
    func unguardedSlabs() throws {
        #if SPINDLE_SANITIZERS
        // Under ASan/TSan each fiber also gets a sanitizer mapping of its own (TSan: a shadow
        // stack), which the slabs cannot share: 4,000 keep within vm.max_map_count.
        let fibers = 4_000
        #else
        let fibers = 40_000  // guarded, that is 80,000 mappings: over the default vm.max_map_count
        #endif
        let (parkedAtOnce, finished, mapped, slabbed) = try withManyFibers {
            try withLoop { loop -> (UInt64, Int, Int, Bool) in
                let stacks = loop.scheduler.stacks
                stacks.guardPages = false
                defer { stacks.guardPages = true }
                var finished = 0
                var parkedAtOnce: UInt64 = 0
                for _ in 0..<fibers {
                    loop.spawnDetached(stackSize: StackPool.minimumStackSize) {
                        try? Fiber.sleep(for: .milliseconds(1))
                        finished += 1
                    }
                }
                // Spawned last, runs last in the first turn: every sleeper is parked by then.
                loop.spawnDetached { parkedAtOnce = loop.scheduler.counters.parked }
                let turnBudget = loop.scheduler.resumesPerTurn
                loop.scheduler.resumesPerTurn = Int.max
                defer { loop.scheduler.resumesPerTurn = turnBudget }
                try loop.run()
                // Whole slabs: the count of stacks mapped is a multiple of the slab size.
                return (parkedAtOnce, finished, stacks.mappedCount, stacks.mappedCount % StackPool.slabStacks == 0)
            }
        }
        #expect(parkedAtOnce == UInt64(fibers))
        #expect(finished == fibers)
        #expect(mapped >= fibers)
        #expect(slabbed)
    }

    @Test(
        "join returns every kind of result: small, large, reference-counted, Void, a thrown error; kept values are released"
    )
    func joinResults() throws {
        struct Large { var words: (Int, Int, Int, Int, Int, Int) }  // 48 bytes: kept in a buffer
        final class Tracked { let tag: String; init(_ tag: String) { self.tag = tag } }
        struct Boom: Error, Equatable { let code: Int }
        weak var released: Tracked?
        weak var releasedFromLarge: Tracked?
        let outcome = try withLoop { loop -> [String] in
            var log: [String] = []
            let small = loop.spawn { 42 }
            let text = loop.spawn { String(repeating: "fiber ", count: 20) }  // heap-backed: not POD
            let large = loop.spawn { Large(words: (1, 2, 3, 4, 5, 6)) }
            let tracked = loop.spawn { () -> Tracked in
                let object = Tracked("kept")
                released = object
                return object
            }
            let mixed = loop.spawn { () -> (Large, Tracked) in
                let object = Tracked("in large")
                releasedFromLarge = object
                return (Large(words: (7, 7, 7, 7, 7, 7)), object)
            }
            let nothing = loop.spawn { () -> Void in log.append("void ran") }
            let failing = loop.spawn { () throws -> Int in throw Boom(code: 7) }
            try loop.run()
            log.append("small \(try small.join()) \(try small.join())")  // every join gets the value
            log.append("text \(try text.join().count)")
            log.append("large \(try large.join().words.5)")
            log.append("tracked \(try tracked.join().tag)")
            log.append("mixed \(try mixed.join().0.words.0) \(try mixed.join().1.tag)")
            try nothing.join()
            do { _ = try failing.join() } catch let error as Boom { log.append("threw \(error.code)") }
            if case .failure(let error as Boom)? = failing.result { log.append("result threw \(error.code)") }
            if case .success(let value)? = small.result { log.append("result \(value)") }
            // Handles dropped here: their bodies and the values they keep go too.
            return log
        }
        #expect(
            outcome == [
                "void ran", "small 42 42", "text 120", "large 6", "tracked kept", "mixed 7 in large",
                "threw 7", "result threw 7", "result 42",
            ])
        #expect(released == nil)
        #expect(releasedFromLarge == nil)
    }

    @Test("a value its fiber's reclaim destroys is destroyed on the loop side, outside any fiber")
    func valueDestroyedOutsideFiber() throws {
        // The handle is dropped at once, so the reclaim that follows the fiber's last switch
        // destroys its value: the deinit must not see the finished fiber as the current one (a
        // yield there would switch out of a fiber that no longer exists).
        let seen = try withLoop { loop -> [Bool] in
            var seen: [Bool] = []
            _ = loop.spawn { Probe { seen.append(Fiber.isInFiber) } }
            loop.spawnDetached {}
            try loop.run()
            return seen
        }
        #expect(seen == [false])
    }

    @Test("a detached fiber keeps its closure's captures until the body returns, then releases them")
    func detachedCapturesKeptThenReleased() throws {
        let deinits = DeinitCounter()
        let (deinitsInside, finishes) = try withLoop { loop -> ([Int], UInt64) in
            var deinitsInside: [Int] = []
            let before = loop.scheduler.counters.finishes
            do {
                // The spawner's reference is gone once this scope ends: only the fiber's copy of
                // the closure keeps `object` (a missing retain frees it before the fiber runs).
                let object = Tracked(deinits)
                loop.spawnDetached {
                    Fiber.yield()
                    withExtendedLifetime(object) { deinitsInside.append(deinits.count) }
                }
            }
            for _ in 0..<3 { loop.spawnDetached { Fiber.yield() } }  // capture nothing: no context
            try loop.run()
            return (deinitsInside, loop.scheduler.counters.finishes - before)
        }
        #expect(deinitsInside == [0])
        #expect(deinits.count == 1)  // an extra retain would keep it
        #expect(finishes == 4)
    }

    @Test("a finished fiber's body is reused once its handles are gone, never while one lives")
    func bodiesReusedAfterHandles() throws {
        let (made, values, kept, keptID) = try withLoop { loop -> ([UInt64], [Int], Int, Bool) in
            var made: [UInt64] = []
            var values: [Int] = []
            let keeper = loop.spawn { 4242 }  // its handle lives through every wave below
            let keeperID = keeper.id
            for wave in 0..<3 {
                let before = loop.scheduler.counters.bodiesMade
                var handles = (0..<100).map { index in loop.spawn { wave * 1_000 + index } }
                try loop.run()
                values.append(try handles.map { try $0.join() }.reduce(0, +))
                handles.removeAll()  // the bodies are now only the pool's
                made.append(loop.scheduler.counters.bodiesMade - before)
            }
            return (made, values, try keeper.join(), keeper.id == keeperID)
        }
        // The first wave makes its bodies; later ones reuse them (the keeper's is never taken).
        #expect(made == [100, 0, 0])
        #expect(values == [4_950, 104_950, 204_950])
        #expect(kept == 4242)
        #expect(keptID)
    }

    @Test("a finished fiber's object result or error goes with its last handle, not later with the pool")
    func heldResultsReleasedWithHandle() throws {
        struct Boom: Error, @unchecked Sendable { let tracked: Tracked }
        let counter = DeinitCounter()
        let (whileHeld, afterDrop) = try withLoop { loop -> (Int, Int) in
            var object: FiberHandle<Tracked>? = loop.spawn { Tracked(counter) }
            var failing: FiberHandle<Int>? = loop.spawn { () throws -> Int in throw Boom(tracked: Tracked(counter)) }
            try loop.run()
            let whileHeld = counter.count
            object = nil
            failing = nil
            withExtendedLifetime((object, failing)) {}
            return (whileHeld, counter.count)
        }
        #expect(whileHeld == 0)
        #expect(afterDrop == 2)
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
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
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
                // Both fibers ran to the end. (The held access writes back when it ends, so with
                // optimisation the toucher's +10 may be overwritten: an inout is exclusive to its
                // holder, as across an `await` in a Task; only the checker must not trip.)
                precondition(shared.other == 2, "the toucher did not finish")
                precondition(shared.value == 12 || shared.value == 2, "unexpected value \(shared.value)")
                try loop.close()
            }
        }
        if let text = result.map({ String(decoding: $0.standardErrorContent, as: UTF8.self) }), !text.isEmpty {
            Issue.record("the child process said: \(text)")
        }
    }

    @Test("calibration finds the runtime's access-set head on a loop thread")
    func exclusivityFastPath() throws {
        let fast = try withLoop { loop in loop.scheduler.usesExclusivityFastPath }
        #expect(fast)
    }

    @Test("the runtime-call path keeps an inout across a yield private to its fiber too")
    func exclusivityRuntimePath() async {
        await #expect(processExitsWith: .success) {
            final class Shared { var value = 0; var other = 0 }
            try LoopThread.run {
                let loop = EventLoop()
                loop.scheduler.useExclusivityRuntimeCalls()
                precondition(!loop.scheduler.usesExclusivityFastPath)
                let shared = Shared()
                func bumpAcrossYield(_ value: inout Int) {
                    value += 1
                    Fiber.yield()
                    value += 1
                }
                loop.spawn(name: "holder") { bumpAcrossYield(&shared.value) }
                loop.spawn(name: "toucher") {
                    shared.value += 10
                    bumpAcrossYield(&shared.other)
                }
                try loop.run()
                precondition(shared.other == 2, "the toucher did not finish")
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

/// Runs a closure when it is destroyed.
private final class Probe {
    let onDeinit: () -> Void
    init(_ onDeinit: @escaping () -> Void) { self.onDeinit = onDeinit }
    deinit { onDeinit() }
}
