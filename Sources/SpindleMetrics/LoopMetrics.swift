import CoreMetrics
import Spindle
import SpindleLoop

/// Each loop's scheduler counters and its lag, published through swift-metrics, so a service's
/// metrics backend (swift-prometheus, StatsD, ...) exports them.
///
/// ```swift
/// let group = LoopGroup()
/// let metrics = LoopMetrics.start(on: group)          // every second, on every loop
/// ```
///
/// Every `interval`, on each loop's own thread, a timer of the loop reads its scheduler's
/// counters (plain integers: nothing on the fibers' hot paths changes) and records, with the
/// dimension `loop` set to the loop's name:
///
/// | metric | kind | what |
/// | --- | --- | --- |
/// | `spindle_fiber_spawns_total` | counter | fibers spawned |
/// | `spindle_fiber_switches_total` | counter | resumes of a fiber (each ends in a yield, park or finish) |
/// | `spindle_fiber_yields_total` | counter | slices ended by a yield |
/// | `spindle_fiber_parks_total` | counter | slices ended by a park |
/// | `spindle_loop_turns_total` | counter | loop iterations |
/// | `spindle_loop_slow_turns_total` | counter | turns past the scheduler's `slowTurnThreshold` |
/// | `spindle_fibers_live` | gauge | fibers spawned and not finished |
/// | `spindle_fibers_parked` | gauge | fibers parked now |
/// | `spindle_loop_lag` | timer | how late the loop ran this timer: the time its thread was busy past the interval |
///
/// The lag is the classic event-loop lag: a loop whose fibers or callbacks hold its thread runs
/// its timers late by as much.
public final class LoopMetrics: Sendable {
    private let loops: [EventLoop]

    private init(loops: [EventLoop]) { self.loops = loops }

    /// Starts publishing every loop of `group` every `interval` (at least a millisecond), through
    /// `factory` (default: the process's bootstrapped `MetricsSystem`). Safe from any thread.
    @discardableResult
    public static func start(
        on group: LoopGroup, every interval: Duration = .seconds(1), factory: any MetricsFactory = MetricsSystem.factory
    ) -> LoopMetrics {
        precondition(interval >= .milliseconds(1), "LoopMetrics: the interval must be at least 1 ms")
        let box = FactoryBox(factory)
        for loop in group.loops {
            loop.post { LoopReporter.start(on: loop, every: interval, factory: box.factory) }
        }
        return LoopMetrics(loops: group.loops)
    }

    /// Starts publishing `loop` every `interval`. Call it on the loop's thread.
    @discardableResult
    public static func start(
        on loop: EventLoop, every interval: Duration = .seconds(1), factory: any MetricsFactory = MetricsSystem.factory
    ) -> LoopMetrics {
        precondition(interval >= .milliseconds(1), "LoopMetrics: the interval must be at least 1 ms")
        LoopReporter.start(on: loop, every: interval, factory: factory)
        return LoopMetrics(loops: [loop])
    }

    /// Stops publishing (on each loop's thread, soon). Safe from any thread.
    public func stop() {
        for loop in loops {
            loop.post { loop.existingAttachment(LoopReporter.self)?.stop() }
        }
    }
}

/// A metrics factory carried to the loops' threads (factories are made to be shared).
private struct FactoryBox: @unchecked Sendable {
    let factory: any MetricsFactory
    init(_ factory: any MetricsFactory) { self.factory = factory }
}

/// One loop's reporter: its metric objects and the timer that records them, attached to the
/// loop (it closes its timer when the loop closes).
final class LoopReporter: EventLoopAttachment {
    private unowned(unsafe) let loop: EventLoop
    private var timer: LoopTimer?
    private var interval: Duration = .seconds(1)
    private var expected: ContinuousClock.Instant = .now
    private var last: Scheduler.Counters?
    private var slowTurnsSeen: UInt64 = 0
    private let spawns, switches, yields, parks, turns, slowTurns: Counter
    private let live, parked: Gauge
    private let lag: CoreMetrics.Timer

    private init(loop: EventLoop, factory: any MetricsFactory) {
        self.loop = loop
        let dimensions = [("loop", loop.name ?? "\(loop.id)")]
        func counter(_ label: String) -> Counter { Counter(label: label, dimensions: dimensions, factory: factory) }
        spawns = counter("spindle_fiber_spawns_total")
        switches = counter("spindle_fiber_switches_total")
        yields = counter("spindle_fiber_yields_total")
        parks = counter("spindle_fiber_parks_total")
        turns = counter("spindle_loop_turns_total")
        slowTurns = counter("spindle_loop_slow_turns_total")
        live = Gauge(label: "spindle_fibers_live", dimensions: dimensions, factory: factory)
        parked = Gauge(label: "spindle_fibers_parked", dimensions: dimensions, factory: factory)
        lag = CoreMetrics.Timer(label: "spindle_loop_lag", dimensions: dimensions, factory: factory)
    }

    static func start(on loop: EventLoop, every interval: Duration, factory: any MetricsFactory) {
        let reporter = loop.attachment(LoopReporter.self) { LoopReporter(loop: loop, factory: factory) }
        reporter.begin(every: interval)
    }

    private func begin(every interval: Duration) {
        self.interval = interval
        let timer = self.timer ?? LoopTimer(loop: loop) { [unowned self] _ in record() }
        timer.isLoopMachinery = true
        timer.keepsLoopAlive = false
        self.timer = timer
        expected = .now + interval
        timer.start(after: interval, repeating: interval)
    }

    func stop() { timer?.stop() }

    private func record() {
        let now = ContinuousClock.now
        let late = now - expected
        lag.recordNanoseconds(late > .zero ? Int64(late / .nanoseconds(1)) : 0)
        expected = now + interval
        let scheduler = loop.scheduler
        let counters = scheduler.counters
        let before = last
        last = counters
        func delta(_ path: KeyPath<Scheduler.Counters, UInt64>) -> Int64 {
            Int64(counters[keyPath: path] &- (before?[keyPath: path] ?? 0))
        }
        spawns.increment(by: delta(\.spawns))
        switches.increment(by: delta(\.switches))
        yields.increment(by: delta(\.yields))
        parks.increment(by: delta(\.parks))
        turns.increment(by: delta(\.loopTurns))
        slowTurns.increment(by: Int64(scheduler.slowTurns &- slowTurnsSeen))
        slowTurnsSeen = scheduler.slowTurns
        live.record(Int64(counters.live))
        parked.record(Int64(counters.parked))
    }

    // MARK: EventLoopAttachment

    func stalledWaiters() -> [String] { [] }
    func openItems() -> [String] { [] }
    func loopWillClose() {
        timer?.close()
        timer = nil
    }
}
