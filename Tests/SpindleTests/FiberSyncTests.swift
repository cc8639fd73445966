import Spindle
import SpindleLoop
import Testing

@Suite("Fiber synchronisation")
struct FiberSyncTests {
    @Test("a mutex held across yields admits one fiber at a time, in arrival order")
    func mutexExclusion() throws {
        let (maxInside, order) = try withLoop { loop -> (Int, [Int]) in
            let mutex = FiberMutex()
            var inside = 0
            var maxInside = 0
            var order: [Int] = []
            for i in 0..<5 {
                loop.spawn {
                    try mutex.withLock {
                        inside += 1
                        maxInside = max(maxInside, inside)
                        order.append(i)
                        Fiber.yield()
                        Fiber.yield()
                        inside -= 1
                    }
                }
            }
            try loop.run()
            return (maxInside, order)
        }
        #expect(maxInside == 1)
        #expect(order == [0, 1, 2, 3, 4])
    }

    @Test("a semaphore bounds concurrency to its value")
    func semaphoreBound() throws {
        let maxInside = try withLoop { loop -> Int in
            let semaphore = FiberSemaphore(value: 3)
            var inside = 0
            var maxInside = 0
            for _ in 0..<20 {
                loop.spawn {
                    try semaphore.wait()
                    inside += 1
                    maxInside = max(maxInside, inside)
                    try Fiber.sleep(for: .milliseconds(1))
                    inside -= 1
                    semaphore.signal()
                }
            }
            try loop.run()
            #expect(semaphore.available == 3)
            return maxInside
        }
        #expect(maxInside == 3)
    }

    @Test("an event releases every waiter at once and later waiters pass through")
    func event() throws {
        let released = try withLoop { loop -> Int in
            let event = FiberEvent()
            var released = 0
            for _ in 0..<10 {
                loop.spawn {
                    try event.wait()
                    released += 1
                }
            }
            loop.spawn {
                Fiber.yield()
                #expect(released == 0)
                event.set()
                try event.wait()  // already set: passes through
                released += 1
            }
            try loop.run()
            return released
        }
        #expect(released == 11)
    }

    @Test("a wait group's wait returns once every task is done")
    func waitGroup() throws {
        let log = try withLoop { loop -> [String] in
            let group = WaitGroup()
            var log: [String] = []
            group.add(3)
            for i in 0..<3 {
                loop.spawn {
                    try Fiber.sleep(for: .milliseconds(i + 1))
                    log.append("task \(i)")
                    group.done()
                }
            }
            loop.spawn {
                try group.wait()
                log.append("all done")
            }
            try loop.run()
            return log
        }
        #expect(log == ["task 0", "task 1", "task 2", "all done"])
    }

    @Test("a cancelled mutex waiter throws and does not take the lock")
    func cancelledMutexWaiter() throws {
        let (outcome, lockedAfter) = try withLoop { loop -> (String, Bool) in
            let mutex = FiberMutex()
            var lockedAfter = true
            loop.spawn(name: "holder") {
                try mutex.lock()
                try Fiber.sleep(for: .milliseconds(5))
                mutex.unlock()
                lockedAfter = mutex.isLocked
            }
            let waiter = loop.spawn(name: "waiter") { () -> String in
                do {
                    try mutex.lock()
                    mutex.unlock()
                    return "locked"
                } catch is CancellationError {
                    return "cancelled"
                }
            }
            loop.spawn {
                Fiber.yield()
                waiter.cancel()
            }
            try loop.run()
            return (try waiter.join(), lockedAfter)
        }
        #expect(outcome == "cancelled")
        #expect(!lockedAfter)
    }
}

@Suite("Deadlines and groups")
struct DeadlineAndGroupTests {
    @Test("withTimeout interrupts a sleep; a longer limit does not")
    func timeouts() throws {
        let outcomes = try withLoop { loop -> [String] in
            var outcomes: [String] = []
            loop.spawn {
                do {
                    try Fiber.withTimeout(.milliseconds(5)) { try Fiber.sleep(for: .seconds(10)) }
                    outcomes.append("slept")
                } catch is FiberTimeoutError {
                    outcomes.append("timed out")
                }
                try Fiber.withTimeout(.seconds(10)) { try Fiber.sleep(for: .milliseconds(2)) }
                outcomes.append("finished in time")
            }
            try loop.run()
            return outcomes
        }
        #expect(outcomes == ["timed out", "finished in time"])
    }

    @Test("an expired outer limit still applies after an inner one ends")
    func nestedTimeouts() throws {
        let outcome = try withLoop { loop -> String in
            let fiber = loop.spawn { () -> String in
                do {
                    try Fiber.withTimeout(.milliseconds(5)) {
                        do {
                            try Fiber.withTimeout(.seconds(10)) { try Fiber.sleep(for: .seconds(10)) }
                        } catch is FiberTimeoutError {
                            // The outer limit expired inside the inner scope.
                        }
                        try Fiber.sleep(for: .seconds(10))  // must throw at once
                    }
                    return "no timeout"
                } catch is FiberTimeoutError {
                    return "outer timed out"
                }
            }
            try loop.run()
            return try fiber.join()
        }
        #expect(outcome == "outer timed out")
    }

    @Test("a failing child cancels its siblings and the group rethrows its error")
    func groupFailure() throws {
        struct Boom: Error {}
        let (error, siblingCancelled) = try withLoop { loop -> (String, Bool) in
            var siblingCancelled = false
            let parent = loop.spawn { () -> String in
                do {
                    try withFiberGroup { group in
                        group.spawn(name: "sleeper") {
                            do {
                                try Fiber.sleep(for: .seconds(30))
                            } catch is CancellationError {
                                siblingCancelled = true
                                throw CancellationError()
                            }
                        }
                        group.spawn(name: "failer") {
                            try Fiber.sleep(for: .milliseconds(2))
                            throw Boom()
                        }
                    }
                    return "no error"
                } catch is Boom {
                    return "Boom"
                }
            }
            try loop.run()
            return (try parent.join(), siblingCancelled)
        }
        #expect(error == "Boom")
        #expect(siblingCancelled)
    }

    @Test("a group returns the body's value after every child has finished")
    func groupJoinsChildren() throws {
        let (value, finished) = try withLoop { loop -> (Int, Int) in
            var finished = 0
            let parent = loop.spawn { () -> Int in
                try withFiberGroup { group in
                    for i in 0..<10 {
                        group.spawn {
                            try Fiber.sleep(for: .milliseconds(i % 3))
                            finished += 1
                        }
                    }
                    return 99
                }
            }
            try loop.run()
            return (try parent.join(), finished)
        }
        #expect(value == 99)
        #expect(finished == 10)
    }
}
