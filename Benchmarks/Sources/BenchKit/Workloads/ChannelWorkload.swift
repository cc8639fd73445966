import Spindle
import SpindleLoop

/// `channel`: one producer fiber sends `messages` integers to one consumer fiber through a
/// channel; nanoseconds per message. Variants: `unbuffered` (each send waits for the receive)
/// and `buffered` (capacity 64).
package enum ChannelWorkload {
    package static let name = "channel"
    package static let variants = ["unbuffered", "buffered"]
    package static let executors = ["fibers"]
    package static let messages = 200_000

    package static func run(_ executor: String, variant: String, loop: EventLoop) throws -> Double {
        guard executor == "fibers" else { throw BenchError.unknownExecutor(executor, workload: name) }
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
}
