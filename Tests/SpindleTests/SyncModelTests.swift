import Spindle
import SpindleLoop
import Testing

/// A mutex and a semaphore under random contention, with waiters cancelled and deadlines
/// expiring while they queue: the limits hold at every moment, a wait that threw holds nothing,
/// and once everyone is done the mutex is free and every permit is back.
@Suite("Mutex and semaphore against a model")
struct SyncModelTests {
    /// What one run saw.
    struct Tally {
        var mostInMutex = 0
        var mostInSemaphore = 0
        var acquired = 0
        var failed = 0
        var mutexLockedAtEnd = true
        var permitsAtEnd = -1
    }

    @Test(
        "random lockers, cancellations and deadlines: one holder of the mutex, at most n of the semaphore, nothing lost"
    )
    func randomContention() throws {
        var acquired = 0
        var failed = 0
        for seed in 1...40 as ClosedRange<UInt64> {
            var random = SeededGenerator(seed: seed)
            let permits = Int.random(in: 1...3, using: &random)
            let tally = try withLoop { loop -> Tally in
                let mutex = FiberMutex()
                let semaphore = FiberSemaphore(value: permits)
                var tally = Tally()
                var inMutex = 0
                var inSemaphore = 0
                var workers: [FiberHandle<Void>] = []
                for index in 0..<12 {
                    var plan = SeededGenerator(seed: seed &* 131 &+ UInt64(index))
                    workers.append(
                        loop.spawn {
                            for _ in 0..<10 {
                                let useMutex = Bool.random(using: &plan)
                                let deadline = Int.random(in: 0..<4, using: &plan) == 0
                                do {
                                    let acquire = useMutex ? { try mutex.lock() } : { try semaphore.wait() }
                                    if deadline {
                                        try Fiber.withTimeout(.milliseconds(1), acquire)
                                    } else {
                                        try acquire()
                                    }
                                } catch is CancellationError {
                                    tally.failed += 1
                                    return
                                } catch {
                                    tally.failed += 1  // the deadline passed: try the next round
                                    continue
                                }
                                tally.acquired += 1
                                if useMutex {
                                    inMutex += 1
                                    tally.mostInMutex = max(tally.mostInMutex, inMutex)
                                } else {
                                    inSemaphore += 1
                                    tally.mostInSemaphore = max(tally.mostInSemaphore, inSemaphore)
                                }
                                // Hold it a while: the others queue behind.
                                for _ in 0..<Int.random(in: 0..<4, using: &plan) { Fiber.yield() }
                                if Int.random(in: 0..<5, using: &plan) == 0 { try? Fiber.sleep(for: .zero) }
                                if useMutex {
                                    inMutex -= 1
                                    mutex.unlock()
                                } else {
                                    inSemaphore -= 1
                                    semaphore.signal()
                                }
                            }
                        })
                }
                // Cancels four workers at random moments, queued or not.
                var chaos = SeededGenerator(seed: ~seed)
                loop.spawn {
                    for _ in 0..<4 {
                        for _ in 0..<Int.random(in: 0..<30, using: &chaos) { Fiber.yield() }
                        workers.randomElement(using: &chaos)!.cancel()
                    }
                }
                try loop.run()
                tally.mutexLockedAtEnd = mutex.isLocked
                tally.permitsAtEnd = semaphore.available
                return tally
            }
            #expect(tally.mostInMutex <= 1, "seed \(seed): \(tally.mostInMutex) fibers held the mutex at once")
            #expect(tally.mostInSemaphore <= permits, "seed \(seed): \(tally.mostInSemaphore) held \(permits) permits")
            #expect(!tally.mutexLockedAtEnd, "seed \(seed): the mutex is still locked with every fiber done")
            #expect(tally.permitsAtEnd == permits, "seed \(seed): \(tally.permitsAtEnd) of \(permits) permits back")
            acquired += tally.acquired
            failed += tally.failed
        }
        // Both outcomes were exercised.
        #expect(acquired > 1_000)
        #expect(failed > 40)
    }

    @Test("a waiter handed the mutex or a permit, then cancelled before it runs, still has it and does not throw")
    func cancelledAfterHandOff() throws {
        let outcomes = try withLoop { loop -> [String] in
            let mutex = FiberMutex()
            let semaphore = FiberSemaphore(value: 0)
            let channel = Channel<Int>()
            var outcomes: [String] = []
            func waiter(_ name: String, _ wait: @escaping () throws -> Void) -> FiberHandle<Void> {
                loop.spawn {
                    do {
                        try wait()
                        outcomes.append("\(name): got it")
                    } catch {
                        outcomes.append("\(name): threw \(error)")
                    }
                }
            }
            loop.spawn {
                try mutex.lock()
                let locker = waiter("mutex") {
                    try mutex.lock()
                    mutex.unlock()
                }
                let taker = waiter("semaphore") { try semaphore.wait() }
                let receiver = waiter("receive") { _ = try channel.receive() }
                Fiber.yield()  // all three wait now
                // Hand each its due, then cancel it before it has run: the cancellation comes
                // too late to take back what it was given.
                mutex.unlock()
                locker.cancel()
                semaphore.signal()
                taker.cancel()
                try channel.send(1)
                receiver.cancel()
            }
            try loop.run()
            outcomes.append("mutex locked: \(mutex.isLocked), permits: \(semaphore.available)")
            return outcomes
        }
        #expect(
            outcomes == ["mutex: got it", "semaphore: got it", "receive: got it", "mutex locked: false, permits: 0"])
    }
}
