import Spindle
import SpindleLoop
import Testing

@Suite("Select over clauses (no handlers, no allocation)")
struct SelectClauseTests {
    @Test("a ready receive clause is picked at once and holds the value; the other channel keeps its own")
    func readyReceive() throws {
        let (chosen, got, left) = try withLoop { loop -> (Int?, Int?, Int?) in
            let a = Channel<Int>(capacity: 1), b = Channel<String>(capacity: 1)
            let task = loop.spawn { () -> (Int?, Int?, Int?) in
                try a.send(7)
                var fromA = a.receiving()
                var fromB = b.receiving()
                let chosen = try Fiber.select(&fromB, &fromA)
                #expect(fromB.value == nil)
                try b.send("kept")
                return (chosen, fromA.value, b.tryReceive() == "kept" ? 1 : 0)
            }
            try loop.run()
            return try task.join()
        }
        #expect(chosen == 1)
        #expect(got == 7)
        #expect(left == 1)
    }

    @Test("a waiting select of a receive and a send: the counterpart that comes first decides, once")
    func waitingSendAndReceive() throws {
        let log = try withLoop { loop -> [String] in
            let requests = Channel<String>(), replies = Channel<String>()
            var log: [String] = []
            loop.spawn(name: "selector") {
                var request = requests.receiving()
                var reply = replies.sending("pong")
                let first = try Fiber.select(&request, &reply)
                log.append("first \(first!) \(request.value ?? "-") sent=\(reply.isSent)")
                // The unsent clause keeps its value and can be offered again.
                let second = try Fiber.select(&request, &reply)
                log.append("second \(second!) sent=\(reply.isSent)")
            }
            loop.spawn(name: "peer") {
                try requests.send("ping")
                log.append("peer got \(try replies.receive() ?? "nil")")
            }
            try loop.run()
            return log
        }
        #expect(log == ["first 0 ping sent=false", "second 1 sent=true", "peer got pong"], "\(log)")
    }

    @Test("a waiting send clause hands its value to a receiver that comes later, through the clause itself")
    func waitingSend() throws {
        let (chosen, got, sent) = try withLoop { loop -> (Int?, [String]?, Bool) in
            let words = Channel<[String]>(), idle = Channel<Int>()
            var outcome: (Int?, Bool) = (nil, false)
            loop.spawn(name: "selector") {
                var idleClause = idle.receiving()
                var send = words.sending(["a", "heap", "value"])
                let chosen = try Fiber.select(&idleClause, &send)  // nothing ready: it waits
                outcome = (chosen, send.isSent)
            }
            let receiver = loop.spawn(name: "receiver") { () -> [String]? in
                Fiber.yield()  // the selector is parked on both channels first
                return try words.receive()
            }
            try loop.run()
            return (outcome.0, try receiver.join(), outcome.1)
        }
        #expect(chosen == 1)
        #expect(got == ["a", "heap", "value"])
        #expect(sent)
    }

    @Test("a timeout returns nil; a closed channel picks its receive clause with nil; a send clause on it throws")
    func timeoutAndClose() throws {
        let results = try withLoop { loop -> [String] in
            let a = Channel<Int>(), b = Channel<Int>()
            let task = loop.spawn { () -> [String] in
                var results: [String] = []
                var fromA = a.receiving()
                results.append("zero: \(String(describing: try Fiber.select(&fromA, timeout: .zero)))")
                results.append("1 ms: \(String(describing: try Fiber.select(&fromA, timeout: .milliseconds(1))))")
                loop.spawn { a.close() }
                var toB = b.sending(5)
                let chosen = try Fiber.select(&toB, &fromA)
                results.append("closed: \(chosen!) \(String(describing: fromA.value)) sent=\(toB.isSent)")
                b.close()
                var again = b.sending(6)
                do {
                    try Fiber.select(&again)
                    results.append("sent on a closed channel")
                } catch is ChannelClosedError {
                    results.append("send clause: closed")
                }
                return results
            }
            try loop.run()
            return try task.join()
        }
        #expect(results == ["zero: nil", "1 ms: nil", "closed: 1 nil sent=false", "send clause: closed"], "\(results)")
    }

    @Test("cancelling a fiber waiting in a select of three clauses throws CancellationError and leaves no waiter")
    func cancelThree() throws {
        let (outcome, laterReceiver) = try withLoop { loop -> (String, Int?) in
            let a = Channel<Int>(), b = Channel<Int>(), c = Channel<Int>()
            var outcome = ""
            let selector = loop.spawn {
                var x = a.receiving(), y = b.receiving(), z = c.sending(3)
                do {
                    try Fiber.select(&x, &y, &z)
                    outcome = "returned"
                } catch is CancellationError {
                    outcome = "cancelled"
                }
            }
            let later = loop.spawn { () -> Int? in
                Fiber.yield()
                selector.cancel()
                Fiber.yield()
                // Had the select left its waiter linked on `a`, this send would find a node on the
                // stack of a fiber that has finished instead of this receiver.
                loop.spawn { try? a.send(9) }
                return try a.receive()
            }
            try loop.run()
            return (outcome, try later.join())
        }
        #expect(outcome == "cancelled")
        #expect(laterReceiver == 9)
    }

    @Test("20,000 messages from four channels to 50 consumers selecting over four clauses: none lost or doubled")
    func manyConsumers() throws {
        let received = try withLoop { loop -> [Int] in
            let channels = (0..<4).map { _ in Channel<Int>() }
            var received: [Int] = []
            for (index, channel) in channels.enumerated() {
                loop.spawn {
                    for value in stride(from: index, to: 20_000, by: 4) { try channel.send(value) }
                    channel.close()
                }
            }
            for _ in 0..<50 {
                loop.spawn {
                    var w = channels[0].receiving(), x = channels[1].receiving()
                    var y = channels[2].receiving(), z = channels[3].receiving()
                    var open = 4
                    while open == 4 {
                        let chosen = try Fiber.select(&w, &x, &y, &z)!
                        let value = [w.value, x.value, y.value, z.value][chosen]
                        if let value { received.append(value) } else { open -= 1 }
                    }
                    // One channel closed: drain the rest with plain receives.
                    for channel in channels { while let value = try channel.receive() { received.append(value) } }
                }
            }
            try loop.run()
            return received
        }
        #expect(received.count == 20_000)
        #expect(Set(received).count == 20_000)
    }
}
