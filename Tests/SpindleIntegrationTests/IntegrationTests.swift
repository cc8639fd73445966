import Glibc
import Logging
import MetricsTestKit
import ServiceLifecycle
import Spindle
import SpindleLogging
import SpindleLoop
import SpindleMetrics
import SpindleServiceLifecycle
import SpindleTestSupport
import Testing

/// A swift-log handler that keeps what it is given.
struct CapturingLogHandler: LogHandler {
    let records: Locked<[(level: Logger.Level, message: String, metadata: Logger.Metadata)]>
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        records.withLock { $0.append((event.level, "\(event.message)", event.metadata ?? [:])) }
    }
}

@Suite("Swift server ecosystem")
struct IntegrationTests {
    @Test("SpindleLogging logs a slow turn as a warning with its kind and loop")
    func logging() throws {
        try withWarningHandlerExclusively {
            let records = Locked<[(level: Logger.Level, message: String, metadata: Logger.Metadata)]>([])
            SpindleLogging.bootstrap(Logger(label: "test") { _ in CapturingLogHandler(records: records) })
            defer { SpindleLogging.reset() }
            let name = try LoopThread.withLoop { _ -> String in
                let loop = EventLoop(name: "logged")
                loop.scheduler.slowTurnThreshold = .milliseconds(10)
                loop.spawn { usleep(40_000) }
                try loop.run()
                defer { try? loop.close() }
                return "\(loop)"
            }
            let mine = records.withLock { $0 }.filter { $0.metadata["spindle.loop"] == .string(name) }
            #expect(mine.count == 1)
            #expect(mine.first?.level == .warning)
            #expect(mine.first?.metadata["spindle.warning"] == "slow-turn")
            #expect(mine.first?.message.contains("held the thread") == true)
        }
    }

    @Test("SpindleMetrics publishes each loop's counters, fibers and lag with its name")
    func metrics() throws {
        let metrics = TestMetrics()
        let group = LoopGroup(loops: 2, name: "metered")
        defer { try? group.shutdown() }
        let reporter = LoopMetrics.start(on: group, every: .milliseconds(5), factory: metrics)
        for loop in group.loops {
            for _ in 0..<10 { group.spawn(on: loop) { for _ in 0..<100 { Fiber.yield() } } }
        }
        for loop in group.loops {
            let dimensions = [("loop", loop.name!)]
            waitUntil("the spawns of \(loop) are counted") {
                metrics.counters(label: "spindle_fiber_spawns_total", dimensions: dimensions)
                    .reduce(0) { $0 + $1.totalValue } >= 10
            }
            waitUntil("the yields of \(loop) are counted") {
                metrics.counters(label: "spindle_fiber_yields_total", dimensions: dimensions)
                    .reduce(0) { $0 + $1.totalValue } >= 1_000
            }
            #expect(!metrics.timers(label: "spindle_loop_lag", dimensions: dimensions).isEmpty)
            #expect(!metrics.recorders(label: "spindle_fibers_live", dimensions: dimensions).isEmpty)
        }
        reporter.stop()
    }

    @Test("LoopGroupService shuts the group down when the service group shuts down gracefully")
    func serviceLifecycle() async throws {
        let group = LoopGroup(loops: 2, name: "service")
        let cancelled = Locked(0)
        for loop in group.loops {
            group.spawn(on: loop, name: "forever") {
                do { try Fiber.sleep(for: .seconds(3600)) } catch { cancelled.withLock { $0 += 1 } }
            }
        }
        let services = ServiceGroup(
            services: [LoopGroupService(group, shutdownTimeout: .seconds(30))],
            gracefulShutdownSignals: [], logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await services.run() }
            await services.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        #expect(cancelled.withLock { $0 } == 2)
        #expect(group.loops.allSatisfy { $0.isClosed })
    }

    @Test("SIGTERM stops a service group that runs a loop group")
    func sigterm() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardOutputContent]) {
            let group = LoopGroup(loops: 1, name: "signalled")
            group.spawn(name: "forever") { try? Fiber.sleep(for: .seconds(3600)) }
            let services = ServiceGroup(
                services: [LoopGroupService(group)], gracefulShutdownSignals: [.sigterm],
                logger: Logger(label: "test"))
            // Until the service group has installed its handler, a SIGTERM would end the process:
            // ignore it until then, and send it again and again until the group has stopped.
            signal(SIGTERM, SIG_IGN)
            let stopped = Locked(false)
            let sender = LoopThread(name: "sender") {
                while !stopped.withLock({ $0 }) {
                    kill(getpid(), SIGTERM)
                    usleep(20_000)
                }
            }
            try await services.run()
            stopped.withLock { $0 = true }
            sender.join()
            var text = "stopped: \(group.loops[0].isClosed)"
            text.withUTF8 { _ = write(1, $0.baseAddress, $0.count) }
        }
        let text = String(decoding: result?.standardOutputContent ?? [], as: UTF8.self)
        #expect(text == "stopped: true")
    }
}
