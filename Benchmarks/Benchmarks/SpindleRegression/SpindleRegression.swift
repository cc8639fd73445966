import BenchKit
// Regression guard for Spindle's hot paths (ordo-one/benchmark; `make bench-check`).
//
// Committed thresholds live in Thresholds/: allocation counts must match exactly (the hot paths
// allocate nothing: a yield, a park and wake, a channel hand-off, a pooled spawn; the futures
// fanout allocates only its closures and its chains' first futures), and wall-clock
// p90 may drift by the generous tolerance below before the check fails (these are shared VMs).
// Regenerate after a deliberate change with
//   swift package --allow-writing-to-package-directory benchmark thresholds update
import Benchmark
import Spindle
import SpindleLoop

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .mallocCountTotal],
        warmupIterations: 2,
        scalingFactor: .one,
        maxDuration: .seconds(2),
        maxIterations: 25,
        thresholds: [
            .wallClock: .init(relative: [.p90: 100.0]),  // twice as slow fails
            .mallocCountTotal: .init(absolute: [.p90: 0]),  // one allocation more fails
        ])

    // One loop for every benchmark, so the stack pool is warm after the warm-up iterations.
    let loop = EventLoop()

    Benchmark("switch-yield-100k") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try SwitchWorkload.fiberPingPong(rounds: 100_000, loop: loop))
        }
    }

    Benchmark("switch-park-wake-100k") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try SwitchWorkload.fiberParkWake(rounds: 100_000, loop: loop))
        }
    }

    Benchmark("fanout-yield-10k-fibers-x10") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try FanoutWorkload.fibersYield(loop: loop)) }
    }

    Benchmark("fanout-timer-10k-fibers-x10") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try FanoutWorkload.fibersTimer(loop: loop)) }
    }

    // The futures reuse their spent futures (a flatMap chain's, a timer fire's, a next-turn
    // deferral's, a read's): what is left per operation is the closures the workload makes
    // and its chain's first futures. One allocation more per run fails.
    Benchmark("fanout-yield-10k-futures-x10") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try FanoutWorkload.futuresYield(loop: loop)) }
    }

    Benchmark("fanout-timer-10k-futures-x10") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try FanoutWorkload.futuresTimer(loop: loop)) }
    }

    Benchmark("fanout-io-10k-futures-x10") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try FanoutWorkload.futuresIO(loop: loop)) }
    }

    Benchmark("channel-unbuffered-200k") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try ChannelWorkload.run("fibers", variant: "unbuffered", loop: loop))
        }
    }

    Benchmark("spawn-detached-pooled-100k") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try SpawnWorkload.run("fibers", variant: "detached", loop: loop))
        }
    }
}
