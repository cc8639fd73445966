import Spindle
import SpindleLoop
import Testing

@Suite("Select over channels")
struct SelectTests {
    @Test("a ready receive is taken at once; the other channel keeps its value")
    func readyCase() throws {
        let (chosen, got, left) = try withLoop { loop -> (Int?, Int?, Int?) in
            let a = Channel<Int>(capacity: 1), b = Channel<Int>(capacity: 1)
            let task = loop.spawn { () -> (Int?, Int?, Int?) in
                try b.send(42)
                var got: Int?
                let chosen = try Fiber.select(a.onReceive { got = $0 }, b.onReceive { got = $0 })
                return (chosen, got, a.tryReceive())
            }
            try loop.run()
            return try task.join()
        }
        #expect(chosen == 1)
        #expect(got == 42)
        #expect(left == nil)
    }

    @Test("a waiting select takes exactly one value; a later send on its other channel reaches a plain receiver")
    func exactlyOne() throws {
        let log = try withLoop { loop -> [String] in
            let a = Channel<String>(), b = Channel<String>()
            var log: [String] = []
            loop.spawn(name: "selector") {
                try Fiber.select(
                    a.onReceive { log.append("select got \($0 ?? "nil") from a") },
                    b.onReceive { log.append("select got \($0 ?? "nil") from b") })
                log.append("select done")
            }
            loop.spawn(name: "plain receiver of b") {
                Fiber.yield()  // the selector is waiting on both channels first
                log.append("plain got \(try b.receive() ?? "nil")")
            }
            loop.spawn(name: "senders") {
                Fiber.yield()
                Fiber.yield()
                try a.send("x")
                try b.send("y")  // the select already chose a: y must go to the plain receiver
            }
            try loop.run()
            return log
        }
        #expect(log.contains("select got x from a"))
        #expect(log.contains("plain got y"))
        #expect(!log.contains { $0.contains("from b") })
    }

    @Test(
        "when both cases are always ready, each is chosen about half the time over 20,000 trials",
        arguments: ["handlers", "clauses"])
    func fairness(api: String) throws {
        let counts = try withLoop { loop -> [Int] in
            let a = Channel<Int>(capacity: 1), b = Channel<Int>(capacity: 1)
            let task = loop.spawn { () -> [Int] in
                var counts = [0, 0]
                var fromA = a.receiving(), fromB = b.receiving()
                for _ in 0..<20_000 {
                    if a.count == 0 { try a.send(0) }
                    if b.count == 0 { try b.send(1) }
                    if api == "handlers" {
                        try Fiber.select(a.onReceive { counts[$0!] += 1 }, b.onReceive { counts[$0!] += 1 })
                    } else {
                        let chosen = try Fiber.select(&fromA, &fromB)
                        counts[chosen == 0 ? fromA.value! : fromB.value!] += 1
                    }
                }
                return counts
            }
            try loop.run()
            return try task.join()
        }
        // A fair coin: 10,000 ± 71 (one standard deviation); 8,000 is 28 deviations away, so
        // this fails only for a biased select, never by chance.
        #expect(counts[0] + counts[1] == 20_000)
        #expect(counts[0] > 8_000 && counts[1] > 8_000, "chosen \(counts)")
    }

    @Test("with nothing ready, a timeout returns nil (zero: at once, without waiting) and leaves no waiter behind")
    func timeout() throws {
        let (immediate, later, afterwards) = try withLoop { loop -> (Int?, Int?, Int?) in
            let a = Channel<Int>()
            let task = loop.spawn { () -> (Int?, Int?, Int?) in
                let immediate = try Fiber.select(a.onReceive { _ in }, timeout: .zero)
                let later = try Fiber.select(a.onReceive { _ in }, timeout: .milliseconds(5))
                // The timed-out select left a's queue: a plain receive now gets the next send.
                Fiber.spawn { try a.send(7) }
                return (immediate, later, try a.receive())
            }
            try loop.run()
            return try task.join()
        }
        #expect(immediate == nil)
        #expect(later == nil)
        #expect(afterwards == 7)
    }

    @Test("an enclosing withTimeout that expires throws out of select, not nil")
    func enclosingTimeout() throws {
        let outcome = try withLoop { loop -> String in
            let a = Channel<Int>()
            let task = loop.spawn { () -> String in
                do {
                    try Fiber.withTimeout(.milliseconds(2)) {
                        _ = try Fiber.select(a.onReceive { _ in }, timeout: .seconds(10))
                    }
                    return "returned"
                } catch is FiberTimeoutError {
                    return "timed out"
                }
            }
            try loop.run()
            return try task.join()
        }
        #expect(outcome == "timed out")
    }

    @Test(
        "send cases: to a waiting receiver, and ChannelClosedError on a closed channel; a receive case on a closed channel gets nil"
    )
    func sendAndClosed() throws {
        let (received, closedSend, closedReceive) = try withLoop { loop -> (Int?, String, String) in
            let a = Channel<Int>(), closed = Channel<Int>()
            closed.close()
            var received: Int?
            loop.spawn { received = try a.receive() }
            let task = loop.spawn { () -> (String, String) in
                Fiber.yield()  // the receiver waits
                var sent = false
                try Fiber.select(a.onSend(5) { sent = true })
                #expect(sent)
                var closedSend = "no error"
                do { try Fiber.select(closed.onSend(1)) } catch is ChannelClosedError {
                    closedSend = "ChannelClosedError"
                }
                var closedReceive = "not run"
                try Fiber.select(closed.onReceive { closedReceive = $0 == nil ? "nil" : "value" })
                return (closedSend, closedReceive)
            }
            try loop.run()
            let (closedSend, closedReceive) = try task.join()
            return (received, closedSend, closedReceive)
        }
        #expect(received == 5)
        #expect(closedSend == "ChannelClosedError")
        #expect(closedReceive == "nil")
    }

    @Test("closing a channel wakes a select waiting on it with nil; cancelling a select throws and unlinks it")
    func closeAndCancel() throws {
        let (closedWith, cancelled, afterCancel) = try withLoop { loop -> (String, Bool, Int?) in
            let a = Channel<Int>(), b = Channel<Int>()
            var closedWith = "not woken"
            loop.spawn {
                try Fiber.select(
                    a.onReceive { closedWith = $0 == nil ? "nil from a" : "value" },
                    b.onReceive { _ in closedWith = "b" })
            }
            let victim = loop.spawn { () -> Bool in
                do {
                    try Fiber.select(b.onReceive { _ in })
                    return false
                } catch is CancellationError {
                    return true
                }
            }
            var afterCancel: Int?
            loop.spawn {
                Fiber.yield()
                a.close()
                victim.cancel()
                Fiber.yield()
                Fiber.spawn { try b.send(9) }  // neither select may swallow it
                afterCancel = try b.receive()
            }
            try loop.run()
            return (closedWith, try victim.join(), afterCancel)
        }
        #expect(closedWith == "nil from a")
        #expect(cancelled)
        #expect(afterCancel == 9)
    }

    @Test("20,000 messages from two channels to 100 selecting consumers: none lost, none duplicated")
    func stress() throws {
        let (received, total) = try withLoop { loop -> (Set<Int>, Int) in
            let odd = Channel<Int>(), even = Channel<Int>(capacity: 8)
            var received = Set<Int>()
            var total = 0
            let done = WaitGroup()
            for _ in 0..<100 {
                done.add(1)
                loop.spawn {
                    defer { done.done() }
                    // As in Go, a drained, closed channel leaves the select (its case is dropped).
                    var oddOpen = true, evenOpen = true
                    func record(_ value: Int) {
                        received.insert(value)
                        total += 1
                    }
                    while oddOpen || evenOpen {
                        var cases: [SelectCase] = []
                        if oddOpen {
                            cases.append(odd.onReceive { if let value = $0 { record(value) } else { oddOpen = false } })
                        }
                        if evenOpen {
                            cases.append(
                                even.onReceive { if let value = $0 { record(value) } else { evenOpen = false } })
                        }
                        try Fiber.select(cases)
                    }
                }
            }
            loop.spawn {
                let producers = [(odd, 1), (even, 0)].map { channel, parity in
                    Fiber.spawn {
                        for i in 0..<10_000 { try channel.send(2 * i + parity) }
                    }
                }
                for producer in producers { try producer.join() }
                odd.close()
                even.close()
            }
            loop.spawn { try done.wait() }
            try loop.run()
            return (received, total)
        }
        #expect(total == 20_000)
        #expect(received == Set(0..<20_000))
    }
}
