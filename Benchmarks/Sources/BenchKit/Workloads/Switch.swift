import CBenchKernels
import Spindle
import SpindleLoop

/// `switch`: two contexts ping-pong; nanoseconds per resume+yield round trip.
package enum SwitchWorkload {
    package static let name = "switch"
    package static let executors = ["c-fcontext", "fibers", "ucontext", "thread-handoff"]
    package static let baseline = "c-fcontext"

    /// Round trips per trial, sized so each trial takes tens of milliseconds.
    package static func rounds(_ executor: String) -> UInt64 {
        switch executor {
        case "ucontext": return 200_000
        case "thread-handoff": return 20_000
        default: return 2_000_000
        }
    }

    /// Runs `rounds` round trips once on `executor`; returns nanoseconds and checks the count.
    package static func run(_ executor: String, rounds: UInt64, loop: EventLoop) throws -> Double {
        var completed: UInt64 = 0
        let ns = try measure {
            switch executor {
            case "c-fcontext": completed = cb_fcontext_switch(rounds)
            case "ucontext": completed = cb_ucontext_switch(rounds)
            case "thread-handoff": completed = cb_thread_handoff_switch(rounds)
            case "fibers": completed = try fiberPingPong(rounds: rounds, loop: loop)
            default: throw BenchError.unknownExecutor(executor, workload: name)
            }
        }
        guard completed == rounds else { throw BenchError.incorrect("\(executor) did \(completed) of \(rounds) round trips") }
        return ns
    }

    /// One fiber yields `rounds` times; each yield is a switch to the loop side and back.
    package static func fiberPingPong(rounds: UInt64, loop: EventLoop) throws -> UInt64 {
        // The count lives on the fiber's stack (as the C kernel's lives in its frame), not in a
        // heap box whose address would vary from trial to trial.
        let ping = loop.spawn(name: "ping") { () -> UInt64 in
            var count: UInt64 = 0
            for _ in 0..<rounds {
                count &+= 1
                Fiber.yield()
            }
            return count
        }
        try loop.run()
        return try ping.join()
    }
}
