import Spindle
import SpindleLoop

/// `channel`: one producer fiber sends `messages` integers to one consumer fiber through a
/// channel; nanoseconds per message. Variants: `unbuffered` (each send waits for the receive),
/// `buffered` (capacity 64), `select` (two producers on two unbuffered channels, the consumer
/// taking each message with a two-case `Fiber.select` whose handlers add to a sum: what a
/// select costs, its allocations included) and `select-clauses` (the same select over two
/// receive clauses in the consumer's variables: no handler, no allocation).
package enum ChannelWorkload {
    package static let name = "channel"
    package static let variants = ["unbuffered", "buffered", "select", "select-clauses"]
    package static let executors = ["fibers"]
    package static let messages = 200_000

    package static func run(_ executor: String, variant: String, loop: EventLoop) throws -> Double {
        guard executor == "fibers" else { throw BenchError.unknownExecutor(executor, workload: name) }
        if variant == "select" { return try runSelect(loop: loop) }
        if variant == "select-clauses" { return try runSelectClauses(loop: loop) }
        let channel = Channel<Int>(capacity: variant == "buffered" ? 64 : 0)
        var sum = 0
        let ns = try measure {
            loop.spawnDetached {
                for i in 0..<messages { try? channel.send(i) }
                channel.close()
            }
            loop.spawnDetached {
                for value in channel { sum &+= value }
            }
            try loop.run()
        }
        guard sum == messages * (messages - 1) / 2 else {
            throw BenchError.incorrect("channel \(variant) delivered a sum of \(sum)")
        }
        return ns / Double(messages)
    }

    /// The `select` variant: nanoseconds per message.
    static func runSelect(loop: EventLoop) throws -> Double {
        let (left, right) = (Channel<Int>(), Channel<Int>())
        var sum = 0
        let ns = try measure {
            spawnProducers(left, right, on: loop)
            loop.spawnDetached {
                // Both open: select; once one closes, drain the other.
                var closed: Channel<Int>?
                while closed == nil {
                    // An error (none is expected) ends the consumer: the parked producers then
                    // make `loop.run()` report a deadlock, instead of this loop spinning.
                    do {
                        try Fiber.select(
                            left.onReceive { value in
                                if let value { sum &+= value } else { closed = left }
                            },
                            right.onReceive { value in
                                if let value { sum &+= value } else { closed = right }
                            })
                    } catch { return }
                }
                for value in closed === left ? right : left { sum &+= value }
            }
            try loop.run()
        }
        return try checked(sum: sum, variant: "select", ns: ns)
    }

    /// The `select-clauses` variant: nanoseconds per message.
    static func runSelectClauses(loop: EventLoop) throws -> Double {
        let (left, right) = (Channel<Int>(), Channel<Int>())
        var sum = 0
        let ns = try measure {
            spawnProducers(left, right, on: loop)
            loop.spawnDetached {
                var fromLeft = left.receiving(), fromRight = right.receiving()
                // Both open: select; once one closes, drain the other.
                while true {
                    // An error (none is expected) ends the consumer, as in `select`.
                    guard let chosen = try? Fiber.select(&fromLeft, &fromRight) else { return }
                    guard let value = chosen == 0 ? fromLeft.value : fromRight.value else {
                        for value in chosen == 0 ? right : left { sum &+= value }
                        break
                    }
                    sum &+= value
                }
            }
            try loop.run()
        }
        return try checked(sum: sum, variant: "select-clauses", ns: ns)
    }

    /// The select variants' producers: half the messages each, then a close.
    static func spawnProducers(_ channels: Channel<Int>..., on loop: EventLoop) {
        for channel in channels {
            loop.spawnDetached {
                for i in 0..<messages / 2 { try? channel.send(i) }
                channel.close()
            }
        }
    }

    /// Nanoseconds per message, once the two producers' values add up.
    static func checked(sum: Int, variant: String, ns: Double) throws -> Double {
        let half = messages / 2
        guard sum == half * (half - 1) else {
            throw BenchError.incorrect("channel \(variant) delivered a sum of \(sum)")
        }
        return ns / Double(messages)
    }
}
