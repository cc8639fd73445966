import Spindle
import SpindleLoop
import SpindleTestSupport
import SpindleTrace
import Testing

/// The doctor on real fibers: two classic mistakes reproduced on Spindle, and the healthy design
/// they are compared with. The evidence is the loop's own counters (getrusage is left out: other
/// suites run in parallel in this process and would blur it).
@Suite("Doctor", .serialized)
struct DoctorTests {
    #if SPINDLE_SANITIZERS
    // Each live fiber costs the sanitizer mappings of its own; other suites run alongside.
    static let operations = 500
    #else
    static let operations = 2_000
    #endif
    static let waits = 10

    /// Runs `operations` fibers of `body` twice on a fresh loop and returns the doctor's report
    /// on the second round (the first maps the stacks a healthy pool then reuses).
    func diagnose(_ setUp: @escaping (EventLoop) -> Void = { _ in }, _ body: @escaping () -> Void) throws
        -> Doctor.Report
    {
        try withManyFibers { try diagnoseAlone(setUp, body) }
    }

    private func diagnoseAlone(_ setUp: @escaping (EventLoop) -> Void, _ body: @escaping () -> Void) throws
        -> Doctor.Report
    {
        try withRunningLoop("doctor-test") { loop -> Doctor.Report in
            setUp(loop)
            for _ in 0..<Self.operations { loop.spawnDetached(body) }
            try loop.run()
            let warm = Doctor.snapshot(of: loop)
            for _ in 0..<Self.operations { loop.spawnDetached(body) }
            try loop.run()
            return Doctor.report(
                for: loop, since: warm, waitsPerOperation: Double(Self.waits), includingResourceUsage: false)
        }
    }

    @Test("fibers that park on their timers get no finding")
    func healthy() throws {
        let report = try diagnose {
            for _ in 0..<DoctorTests.waits { try? Fiber.sleep(for: .zero) }
        }
        #expect(report.findings.isEmpty, "\(report)")
        #expect(report.evidence.operations == Double(Self.operations))
        #expect(report.evidence.parks == Double(Self.operations * Self.waits))
    }

    @Test("fibers that yield until their timer has fired: busy-yield polling")
    func busyPolling() throws {
        let report = try diagnose {
            for _ in 0..<DoctorTests.waits {
                var fired = false
                let timer = LoopTimer(loop: Fiber.current.loop) { _ in fired = true }
                timer.start(after: .zero)
                while !fired { Fiber.yield() }
                timer.close()
            }
        }
        #expect(report.names(.busyYield), "\(report)")
        #expect(!report.names(.coldStacks), "\(report)")
        #expect(report.description.contains("yields and 0.00 parks per operation"), "\(report)")
    }

    @Test("fibers on freshly mapped stacks (the pool turned off): cold stacks")
    func coldStacks() throws {
        let report = try diagnose({ loop in loop.scheduler.stacks.maximumPooledPerSize = 0 }) {
            for _ in 0..<DoctorTests.waits { try? Fiber.sleep(for: .zero) }
        }
        #expect(report.names(.coldStacks), "\(report)")
        #expect(!report.names(.busyYield), "\(report)")
        #expect(report.description.contains("100% of fibers started on a freshly mapped stack"), "\(report)")
    }

    @Test("with a trace on, a slice that holds the loop for milliseconds is named, with its fiber")
    func longSlice() throws {
        let report = try withRunningLoop("doctor-slices") { loop -> Doctor.Report in
            Trace.start(on: loop)
            for _ in 0..<100 { loop.spawnDetached { Fiber.yield() } }
            loop.spawn(name: "hog") {
                let start = ContinuousClock.now
                // Never yields. Long enough to stay the longest slice when a loaded machine (or a
                // sanitizer) stretches another past 1 ms too.
                while ContinuousClock.now - start < .milliseconds(10) {}
            }
            try loop.run()
            let report = Doctor.report(for: loop, includingResourceUsage: false)
            Trace.stop(on: loop)
            return report
        }
        #expect(report.names(.longSlices), "\(report)")
        #expect(!report.names(.busyYield), "\(report)")  // (cold stacks may be named: no warm-up here)
        #expect(report.description.contains(" ran longer than 1 ms"), "\(report)")
        #expect(report.description.contains("in fiber \"hog\""), "\(report)")
    }

    @Test("the time split counts a loop blocked on a 50 ms sleep as idle in epoll")
    func timeSplit() throws {
        let report = try withRunningLoop("doctor-time") { loop -> Doctor.Report in
            let before = Doctor.snapshot(of: loop)
            loop.spawn { try? Fiber.sleep(for: .milliseconds(50)) }
            try loop.run()
            return Doctor.report(for: loop, since: before, includingResourceUsage: false)
        }
        // Nothing else was there to do: the loop waited for the timer blocked in epoll_wait (a
        // little under 50 ms at worst, libuv's loop time being cached).
        #expect(report.time.idle >= .milliseconds(10), "\(report.time)")
        #expect(report.description.contains("idle in epoll"), "\(report)")
    }

    #if SPINDLE_SANITIZERS
    static let sanitizerBuild = true
    #else
    static let sanitizerBuild = false
    #endif

    @Test(
        "painting mode measures how deep fibers go; a stack 80% used is named, a shallow one is not",
        .disabled(if: sanitizerBuild, "ASan keeps large locals off the fiber's own stack"))
    func stackHighWater() throws {
        func run(_ body: @escaping () -> Void) throws -> Doctor.Report {
            try withRunningLoop("doctor-stacks") { loop -> Doctor.Report in
                loop.scheduler.stacks.paintsStacks = true
                loop.spawn(name: "deep", body)
                try loop.run()
                return Doctor.report(for: loop, includingResourceUsage: false)
            }
        }
        // Constant sizes, so the buffers are on the fiber's stack (not the heap).
        let deep = try run {
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 52 * 1024) { buffer in
                buffer.initialize(repeating: 1)
                Fiber.yield()
            }
        }
        #expect(deep.names(.stackNearLimit), "\(deep)")
        #expect(deep.description.contains("fiber \"deep\" (#1) used 5"), "\(deep)")
        let mark = try #require(deep.evidence.stackHighWater)
        #expect(mark.usedBytes >= 52 * 1024 && mark.usedBytes < mark.stackBytes)
        let shallow = try run {
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 4 * 1024) { buffer in
                buffer.initialize(repeating: 1)
                Fiber.yield()
            }
        }
        #expect(!shallow.names(.stackNearLimit), "\(shallow)")
        // Per fiber, while it runs: a parked fiber's own mark, none without painting.
        let (live, unpainted, afterFinish) = try withRunningLoop("doctor-stack-live") {
            loop -> (Scheduler.StackHighWater?, Scheduler.StackHighWater?, Scheduler.StackHighWater?) in
            loop.scheduler.stacks.paintsStacks = true
            let deepRef = Box<FiberRef?>(nil)
            let release = Channel<Int>()
            loop.spawn(name: "parked-deep") {
                withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20 * 1024) { buffer in
                    buffer.initialize(repeating: 1)
                    deepRef.value = Fiber.current
                    _ = try? release.receive()
                }
            }
            var marks: (Scheduler.StackHighWater?, Scheduler.StackHighWater?) = (nil, nil)
            loop.spawn {
                Fiber.yield()
                marks.0 = deepRef.value?.stackHighWater
                loop.scheduler.stacks.paintsStacks = false
                loop.spawn(name: "unpainted") { marks.1 = Fiber.current.stackHighWater }
                Fiber.yield()
                try? release.send(1)
            }
            try loop.run()
            return (marks.0, marks.1, deepRef.value?.stackHighWater)
        }
        let liveMark = try #require(live)
        #expect(liveMark.usedBytes >= 20 * 1024 && liveMark.usedBytes < 64 * 1024, "\(liveMark)")
        #expect(liveMark.fiber.contains("parked-deep"))
        #expect(unpainted == nil)
        #expect(afterFinish == nil)
        #expect((shallow.evidence.stackHighWater?.usedBytes ?? 0) >= 4 * 1024)
    }

    @Test("each rule reads only its own counters")
    func rules() {
        // A switch that makes a system call: kernel time with nothing to explain it.
        var ucontext = Doctor.Evidence(operations: 1_000, waitsPerOperation: 10)
        ucontext.switches = 22_000
        ucontext.userSeconds = 0.7
        ucontext.systemSeconds = 0.3
        ucontext.ioSyscalls = 0
        #expect(Doctor.diagnose(ucontext).map(\.pathology) == [.syscallPerSwitch])
        // The same kernel time with a read and a write per wait is I/O, not a pathology.
        var io = ucontext
        io.ioSyscalls = 20_000
        #expect(Doctor.diagnose(io).isEmpty)
        // A loop turn per switch matters with many operations in flight, not with one.
        var polling = Doctor.Evidence(operations: 1_000, waitsPerOperation: 10)
        polling.switches = 22_000
        polling.loopTurns = 11_000
        polling.concurrency = 1_000
        #expect(Doctor.diagnose(polling).map(\.pathology) == [.loopTurnPerSwitch])
        polling.concurrency = 1
        #expect(Doctor.diagnose(polling).isEmpty)
        // Thread hand-offs: two OS thread switches a wait.
        var handoff = Doctor.Evidence(operations: 1_000, waitsPerOperation: 10)
        handoff.threadSwitches = 20_000
        #expect(Doctor.diagnose(handoff).map(\.pathology) == [.threadHandoff])
        // Long slices are named either way; the caveat comes when the OS preempted the loop's
        // thread at least once a long slice (each may be a short slice that waited for the CPU).
        var slices = Doctor.Evidence(operations: 1_000)
        slices.longSlices = 2
        slices.longestSliceSeconds = 0.0017
        slices.preemptions = 1
        let fewer = Doctor.diagnose(slices)
        #expect(fewer.map(\.pathology) == [.longSlices])
        #expect(!fewer.description.contains("preempted"), "\(fewer)")
        slices.preemptions = 3
        let more = Doctor.diagnose(slices)
        #expect(more.map(\.pathology) == [.longSlices])
        #expect(more.description.contains("The OS preempted the loop's thread 3 times over the run"), "\(more)")
    }

    @Test("every pathology has one rule, and each rule names evidence fields that exist")
    func ruleTable() {
        #expect(
            Doctor.rules.map(\.pathology).sorted { $0.rawValue < $1.rawValue }
                == Doctor.Pathology.allCases.sorted { $0.rawValue < $1.rawValue })
        let fields = Set(Mirror(reflecting: Doctor.Evidence(operations: 1)).children.compactMap(\.label))
        for rule in Doctor.rules {
            #expect(!rule.evidence.isEmpty, "\(rule.pathology)")
            #expect(
                Set(rule.evidence).isSubset(of: fields), "\(rule.pathology): \(Set(rule.evidence).subtracting(fields))")
        }
    }
}
