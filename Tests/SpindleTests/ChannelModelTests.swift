import Spindle
import SpindleLoop
import Testing

/// Channels under random traffic with the interruptions that make exchanges hard: senders and
/// receivers cancelled while they wait, deadlines that expire around sends, receives and
/// selects, and select cases over channels of different capacities. What must hold whatever
/// the order: a value whose send returned is received exactly once (by a receiver, or left in a
/// buffer); a value whose send threw is never received.
@Suite("Channels against a model")
struct ChannelModelTests {
    /// What one run saw.
    struct Tally {
        var sent = Set<Int>()
        var failed = Set<Int>()
        var received: [Int: Int] = [:]
        var interruptions = 0

        mutating func receive(_ value: Int) { received[value, default: 0] += 1 }

        /// Every rule the run broke, in words.
        var violations: [String] {
            var found: [String] = []
            for (value, times) in received where times > 1 { found.append("\(value) received \(times) times") }
            for value in received.keys where failed.contains(value) {
                found.append("\(value) received though its send threw")
            }
            for value in received.keys where !sent.contains(value) && !failed.contains(value) {
                found.append("\(value) received though never sent")
            }
            for value in sent where received[value] == nil { found.append("\(value) sent but never received") }
            return found
        }
    }

    @Test(
        "random sends, receives and selects with cancellations and deadlines: a sent value arrives once, a failed send's never"
    )
    func randomTraffic() throws {
        var totals = Tally()
        for seed in 1...40 as ClosedRange<UInt64> {
            let tally = try withLoop { loop -> Tally in
                var random = SeededGenerator(seed: seed)
                let channels = (0..<3).map { _ in Channel<Int>(capacity: Int.random(in: 0...2, using: &random)) }
                var tally = Tally()
                var nextValue = 0

                // Producers: each value goes out by a plain send, a select over two channels, or
                // a send under a deadline; some producers are cancelled part way.
                var producers: [FiberHandle<Void>] = []
                for _ in 0..<6 {
                    let plan = (0..<25).map { _ in
                        (
                            kind: Int.random(in: 0..<3, using: &random), first: Int.random(in: 0..<3, using: &random),
                            second: Int.random(in: 0..<3, using: &random), yields: Bool.random(using: &random)
                        )
                    }
                    producers.append(
                        loop.spawn {
                            for step in plan {
                                let value = nextValue
                                nextValue += 1
                                do {
                                    switch step.kind {
                                    case 0: try channels[step.first].send(value)
                                    case 1:
                                        try Fiber.select(
                                            channels[step.first].onSend(value), channels[step.second].onSend(value))
                                    default:
                                        try Fiber.withTimeout(.milliseconds(1)) { try channels[step.first].send(value) }
                                    }
                                    tally.sent.insert(value)
                                } catch {
                                    tally.failed.insert(value)
                                    tally.interruptions += 1
                                }
                                if step.yields { Fiber.yield() }
                            }
                        })
                }

                // Consumers: plain receives, selects over every channel, receives under a
                // deadline; the first two may be cancelled, the rest drain to the end.
                var consumers: [FiberHandle<Void>] = []
                for index in 0..<5 {
                    var plan = SeededGenerator(seed: seed &* 31 &+ UInt64(index))
                    consumers.append(
                        loop.spawn {
                            var open = Set(0..<channels.count)
                            while !open.isEmpty {
                                let kind = Int.random(in: 0..<3, using: &plan)
                                let channel = open.randomElement(using: &plan)!
                                do {
                                    switch kind {
                                    case 0:
                                        if let value = try channels[channel].receive() {
                                            tally.receive(value)
                                        } else {
                                            open.remove(channel)
                                        }
                                    case 1:
                                        let cases = open.sorted().map { index in
                                            channels[index].onReceive { value in
                                                if let value { tally.receive(value) } else { open.remove(index) }
                                            }
                                        }
                                        try Fiber.select(cases, timeout: Bool.random(using: &plan) ? .zero : nil)
                                    default:
                                        let value = try Fiber.withTimeout(.milliseconds(1)) {
                                            try channels[channel].receive()
                                        }
                                        if let value { tally.receive(value) } else { open.remove(channel) }
                                    }
                                } catch is CancellationError {
                                    tally.interruptions += 1
                                    return
                                } catch {
                                    tally.interruptions += 1  // a deadline: try again
                                }
                            }
                        })
                }

                // Chaos: cancels two producers and two consumers at random moments.
                var chaos = SeededGenerator(seed: ~seed)
                loop.spawn {
                    for victim in [producers[0], consumers[0], producers[1], consumers[1]] {
                        for _ in 0..<Int.random(in: 0..<40, using: &chaos) { Fiber.yield() }
                        if Bool.random(using: &chaos) { try? Fiber.sleep(for: .milliseconds(1)) }
                        victim.cancel()
                    }
                }

                // Once every producer is done, close the channels: the consumers drain them. A
                // producer can wait forever on a channel no consumer is receiving from (they each
                // wait on one at times), so after 30 ms the channels close anyway, and its send
                // fails with ChannelClosedError: a failed send like any other.
                loop.spawn {
                    _ = try? Fiber.withTimeout(.milliseconds(30)) {
                        for producer in producers { try producer.join() }
                    }
                    for channel in channels { channel.close() }
                }
                try loop.run()
                // What the cancelled consumers left behind is still the channels' to give.
                loop.spawn {
                    for channel in channels {
                        while let value = channel.tryReceive() { tally.receive(value) }
                    }
                }
                try loop.run()
                return tally
            }
            #expect(tally.violations.isEmpty, "seed \(seed): \(tally.violations.prefix(5))")
            totals.sent.formUnion(tally.sent.map { $0 + Int(seed) * 1_000 })
            totals.failed.formUnion(tally.failed.map { $0 + Int(seed) * 1_000 })
            totals.interruptions += tally.interruptions
        }
        // The runs did exercise both outcomes.
        #expect(totals.sent.count > 1_000)
        #expect(totals.failed.count > 50)
    }
}
