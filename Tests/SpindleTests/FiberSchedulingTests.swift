import Spindle
import SpindleLoop
import Testing

@Suite("Fiber scheduling")
struct FiberSchedulingTests {
    @Test("Fiber.spawn inside a fiber runs the child on the same loop")
    func spawnFromFiber() throws {
        let result = try withLoop { loop -> [String] in
            var log: [String] = []
            loop.spawn(name: "parent") {
                log.append("parent start")
                let child = Fiber.spawn(name: "child") { () -> Int in
                    log.append("child")
                    return 7
                }
                log.append("parent waits")
                log.append("joined \(try child.join())")
            }
            try loop.run()
            return log
        }
        #expect(result == ["parent start", "parent waits", "child", "joined 7"])
    }

    @Test("sleeping fibers wake in deadline order and the loop blocks meanwhile")
    func sleepOrder() throws {
        let order = try withLoop { loop -> [Int] in
            var order: [Int] = []
            for delay in [30, 10, 20] {
                loop.spawn(name: "sleeper-\(delay)") {
                    try Fiber.sleep(for: .milliseconds(delay))
                    order.append(delay)
                }
            }
            try loop.run()
            return order
        }
        #expect(order == [10, 20, 30])
    }

    @Test("a sleeping fiber leaves the loop blocked in the poll: no spinning while nothing is runnable")
    func sleepingDoesNotSpin() throws {
        let (iterations, counters) = try withLoop { loop -> (Int, Scheduler.Counters) in
            var iterations = 0
            let watcher = LoopWatcher(loop: loop, kind: .prepare)
            watcher.keepsLoopAlive = false
            watcher.start { iterations += 1 }
            loop.spawn(name: "sleeper") { try Fiber.sleep(for: .milliseconds(30)) }
            try loop.run()
            watcher.close()
            return (iterations, loop.scheduler.counters)
        }
        // A turn to start the fiber, one when the timer fires; a scheduler that kept an idle
        // handle active would count thousands of turns in 30 ms.
        #expect(iterations <= 6)
        #expect(counters.switches == 2)
    }

    @Test("park returns what the waker said, and counters see parks and wakes")
    func parkAndWake() throws {
        let (reasons, counters) = try withLoop { loop -> ([Fiber.WakeReason], Scheduler.Counters) in
            var reasons: [Fiber.WakeReason] = []
            loop.spawn(name: "waiter") {
                let me = Fiber.current
                loop.schedule(after: .milliseconds(1)) { me.wake(.ready) }
                reasons.append(Fiber.park(.event))
                loop.schedule(after: .milliseconds(1)) { me.wake(.timedOut) }
                reasons.append(Fiber.park(.event))
            }
            try loop.run()
            return (reasons, loop.scheduler.counters)
        }
        #expect(reasons == [.ready, .timedOut])
        #expect(counters.parks == 2)
        #expect(counters.wakes == 2)
        #expect(counters.parked == 0)
        #expect(counters.live == 0)
    }

    @Test("a fiber's state reads created, running, parked with its reason, finished")
    func states() throws {
        let seen = try withLoop { loop -> [String] in
            var seen: [String] = []
            var handle: FiberHandle<Void>?
            handle = loop.spawn(name: "subject") {
                let me = Fiber.current
                seen.append("\(me.state)")
                loop.schedule(after: .milliseconds(1)) {
                    seen.append("\(handle!.state)")
                    me.wake()
                }
                Fiber.park(.waitGroup)
            }
            seen.append("\(handle!.state)")
            try loop.run()
            seen.append("\(handle!.state)")
            return seen
        }
        #expect(seen == ["created", "running", "parked on wait group", "finished"])
    }

    @Test("cancel wakes a sleeping fiber with CancellationError")
    func cancelSleep() throws {
        let outcome = try withLoop { loop -> String in
            let sleeper = loop.spawn(name: "sleeper") { () -> String in
                do {
                    try Fiber.sleep(for: .seconds(30))
                    return "slept"
                } catch is CancellationError {
                    return "cancelled"
                }
            }
            loop.schedule(after: .milliseconds(2)) { sleeper.cancel() }
            try loop.run()
            return try sleeper.join()
        }
        #expect(outcome == "cancelled")
    }

    @Test("a cancelled joiner stops waiting; the fiber it joined is unaffected")
    func cancelJoiner() throws {
        let (joinerOutcome, target) = try withLoop { loop -> (String, Int) in
            let slow = loop.spawn(name: "slow") { () -> Int in
                try Fiber.sleep(for: .milliseconds(20))
                return 99
            }
            let joiner = loop.spawn(name: "joiner") { () -> String in
                do {
                    _ = try slow.join()
                    return "joined"
                } catch is CancellationError {
                    return "cancelled"
                }
            }
            loop.schedule(after: .milliseconds(1)) { joiner.cancel() }
            try loop.run()
            return (try joiner.join(), try slow.join())
        }
        #expect(joinerOutcome == "cancelled")
        #expect(target == 99)
    }

    @Test("every fiber parked with nothing pending is a deadlock that names each fiber and reason")
    func deadlock() throws {
        try LoopThread.run {
            let loop = EventLoop()
            var refs: [FiberRef] = []
            loop.spawn(name: "consumer") {
                refs.append(Fiber.current)
                Fiber.park(.channelReceive)
            }
            let producer = loop.spawn(name: "producer") {
                refs.append(Fiber.current)
                Fiber.park(.mutex)
            }
            loop.spawn(name: "waiter") { try producer.join() }
            let error = #expect(throws: LoopError.self) { try loop.run() }
            guard case .deadlock(let waiting)? = error else {
                Issue.record("expected a deadlock, got \(String(describing: error))")
                return
            }
            #expect(waiting.count == 3)
            #expect(waiting.contains("fiber \"consumer\" (#1) parked on channel receive"))
            #expect(waiting.contains("fiber \"producer\" (#2) parked on mutex"))
            #expect(waiting.contains("fiber \"waiter\" (#3) parked on join of fiber #2"))
            #expect(error?.description.hasPrefix("deadlock:") == true)
            // Undo the deadlock so the loop can close.
            for ref in refs { ref.wake() }
            try loop.run()
            try loop.close()
        }
    }

    @Test("closing a loop with a suspended fiber refuses and names it")
    func closeWithSuspendedFiber() throws {
        try LoopThread.run {
            let loop = EventLoop()
            var ref: FiberRef?
            loop.spawn(name: "stuck") {
                ref = Fiber.current
                Fiber.park(.read)
            }
            _ = try? loop.run()
            #expect(
                throws: LoopError.stillOpen([
                    "fiber \"stuck\" (#1) parked on read (suspended; a suspended fiber is never unwound by force)"
                ])
            ) { try loop.close() }
            ref!.wake()
            try loop.run()
            try loop.close()
        }
    }

    @Test("fibers on several loops on several threads run independently")
    func manyLoops() throws {
        let threads = (0..<4).map { index in
            LoopThread(name: "fibers-\(index)") {
                let loop = EventLoop()
                var total = 0
                for _ in 0..<100 {
                    loop.spawn {
                        for _ in 0..<10 {
                            total += 1
                            Fiber.yield()
                        }
                    }
                }
                try? loop.run()
                #expect(total == 1_000)
                try? loop.close()
            }
        }
        for thread in threads { thread.join() }
    }
}
