import SpindleLoop
import Testing

@Suite("Timers")
struct TimerTests {
    @Test("a one-shot timer fires once and run() returns when nothing is left")
    func oneShot() throws {
        let fired = try withLoop { loop -> Int in
            var fired = 0
            loop.schedule(after: .milliseconds(1)) { fired += 1 }
            try loop.run()
            return fired
        }
        #expect(fired == 1)
    }

    @Test("timers fire in deadline order")
    func deadlineOrder() throws {
        let order = try withLoop { loop -> [Int] in
            var order: [Int] = []
            loop.schedule(after: .milliseconds(30)) { order.append(30) }
            loop.schedule(after: .milliseconds(10)) { order.append(10) }
            loop.schedule(after: .milliseconds(20)) { order.append(20) }
            try loop.run()
            return order
        }
        #expect(order == [10, 20, 30])
    }

    @Test("a repeating timer fires until stopped, then the loop ends")
    func repeating() throws {
        let ticks = try withLoop { loop -> Int in
            var ticks = 0
            let timer = LoopTimer(loop: loop) { timer in
                ticks += 1
                if ticks == 5 { timer.stop() }
            }
            timer.start(after: .milliseconds(1), repeating: .milliseconds(1))
            try loop.run()
            #expect(!timer.isActive)
            timer.close()
            return ticks
        }
        #expect(ticks == 5)
    }

    @Test("an active timer keeps itself alive without a reference")
    func selfRetained() throws {
        let fired = try withLoop { loop -> Bool in
            var fired = false
            do {
                let timer = LoopTimer(loop: loop) { timer in
                    fired = true
                    timer.close()
                }
                timer.start(after: .milliseconds(1))
            }
            try loop.run()
            return fired
        }
        #expect(fired)
    }

    @Test("a one-shot timer restarted from its own callback stays alive, and lets go once it is not restarted")
    func restartedFromItsCallback() throws {
        let (fires, released, closedFires) = try withLoop { loop -> (Int, Bool, Int) in
            weak var weakTimer: LoopTimer?
            var fires = 0
            do {
                let timer = LoopTimer(loop: loop) { timer in
                    fires += 1
                    if fires < 3 { timer.start(after: .zero) }  // no other reference holds it
                }
                weakTimer = timer
                timer.start(after: .zero)
            }
            // Restarted, then closed, from its own callback: the close lets it go, once.
            var closedFires = 0
            do {
                let timer = LoopTimer(loop: loop) { timer in
                    closedFires += 1
                    timer.start(after: .zero)
                    timer.close()
                }
                timer.start(after: .zero)
            }
            try loop.run()
            return (fires, weakTimer == nil, closedFires)
        }
        #expect(fires == 3)
        #expect(released, "the timer outlived its last callback")
        #expect(closedFires == 1)
    }

    @Test("a stopped timer does not fire")
    func stopped() throws {
        let fired = try withLoop { loop -> Bool in
            var fired = false
            let timer = loop.schedule(after: .milliseconds(5)) { fired = true }
            timer.stop()
            timer.close()
            try loop.run()
            return fired
        }
        #expect(!fired)
    }

    @Test("waiting for a timer blocks in the poll instead of spinning")
    func noBusyPolling() throws {
        let iterations = try withLoop { loop -> Int in
            let counter = IterationCounter(loop: loop)
            loop.schedule(after: .milliseconds(30)) {}
            try loop.run()
            counter.watcher.close()
            return counter.count
        }
        // One iteration to start the timer's wait, one when it fires; a spinning loop would
        // count thousands. The bound is generous for spurious wakeups, never for spinning.
        #expect(iterations <= 5)
    }

    @Test("durations round up to whole milliseconds")
    func rounding() throws {
        let fired = try withLoop { loop -> Bool in
            var fired = false
            loop.schedule(after: .microseconds(1)) { fired = true }
            try loop.run()
            return fired
        }
        #expect(fired)
    }
}
