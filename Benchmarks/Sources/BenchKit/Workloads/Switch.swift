import CBenchKernels
import Spindle
import SpindleLoop
import SpindleTrace

/// `switch`: two contexts ping-pong; nanoseconds per round trip.
///
/// Variant `""`: a fiber yields and the loop side resumes it (resume + yield). Variant
/// `park-wake`: two fibers hand off to each other, each waking the other and parking (wake +
/// park + the loop side's resume of the other fiber): the primitive blocking I/O and channels use.
/// The C floor is the same raw ping-pong for both.
package enum SwitchWorkload {
    package static let name = "switch"
    package static let variants = ["", "park-wake"]
    package static let baseline = "c-fcontext"

    package static func executors(_ variant: String) -> [String] {
        variant == ""
            ? ["c-fcontext", "fibers", "fibers-traced", "ucontext", "thread-handoff"] : ["c-fcontext", "fibers"]
    }

    /// Round trips per trial, sized so each trial takes tens of milliseconds.
    package static func rounds(_ executor: String) -> UInt64 {
        switch executor {
        case "ucontext": return 200_000
        case "thread-handoff": return 20_000
        default: return 2_000_000
        }
    }

    /// Runs `rounds` round trips once on `executor`; returns nanoseconds and checks the count.
    package static func run(_ executor: String, variant: String = "", rounds: UInt64, loop: EventLoop) throws -> Double
    {
        var completed: UInt64 = 0
        let ns = try measure {
            switch (executor, variant) {
            case ("c-fcontext", _): completed = cb_fcontext_switch(rounds)
            case ("ucontext", ""): completed = cb_ucontext_switch(rounds)
            case ("thread-handoff", ""): completed = cb_thread_handoff_switch(rounds)
            case ("fibers", ""): completed = try fiberPingPong(rounds: rounds, loop: loop)
            case ("fibers-traced", ""):
                // The same ping-pong with the trace recorder on, default ring (1M events,
                // 24 MiB: it wraps, so this is the cost of recording into memory, not cache).
                Trace.start(on: loop)
                defer { Trace.stop(on: loop) }
                completed = try fiberPingPong(rounds: rounds, loop: loop)
            case ("fibers", "park-wake"): completed = try fiberParkWake(rounds: rounds, loop: loop)
            default: throw BenchError.unknownExecutor(executor, workload: name)
            }
        }
        guard completed == rounds else {
            throw BenchError.incorrect("\(executor) did \(completed) of \(rounds) round trips")
        }
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

    /// Two fibers hand off `rounds` times: each wakes the other, then parks.
    package static func fiberParkWake(rounds: UInt64, loop: EventLoop) throws -> UInt64 {
        final class Peers {
            var ping: FiberRef?
            var pong: FiberRef?
            var done = false
        }
        let peers = Peers()
        // "pong" runs first and parks; "ping" then drives the hand-offs.
        loop.spawn(name: "pong") {
            peers.pong = Fiber.current
            while true {
                Fiber.park(.event)
                if peers.done { return }
                peers.ping.unsafelyUnwrapped.wake()
            }
        }
        let ping = loop.spawn(name: "ping") { () -> UInt64 in
            peers.ping = Fiber.current
            let pong = peers.pong.unsafelyUnwrapped
            var count: UInt64 = 0
            // Each round is two hand-offs (ping to pong, pong to ping); count hand-off pairs.
            for _ in 0..<rounds {
                count &+= 1
                pong.wake()
                Fiber.park(.event)
            }
            peers.done = true
            pong.wake()
            return count
        }
        try loop.run()
        return try ping.join()
    }
}
