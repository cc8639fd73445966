import Spindle
import SpindleLoop
import SpindleTestSupport
import Testing

@testable import SpindleTrace

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

    @Test("a value destroyed when its fiber is reclaimed is loop-side time, not the next fiber's slice")
    func reclaimIsNotTheNextSlice() throws {
        let report = try withRunningLoop("doctor-reclaim") { loop -> Doctor.Report in
            Trace.start(on: loop)
            // The handle is dropped at once: the reclaim right after the fiber's last switch
            // destroys its value, whose deinit holds the loop for 10 ms.
            _ = loop.spawn(name: "maker") { SlowDeinit() }
            loop.spawn(name: "innocent") {}
            try loop.run()
            let report = Doctor.report(for: loop, includingResourceUsage: false)
            Trace.stop(on: loop)
            return report
        }
        #expect(!report.description.contains("in fiber \"innocent\""), "\(report)")
        #expect(!report.description.contains("in fiber \"maker\""), "\(report)")
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
        // A switch that makes a system call: rt_sigprocmask counted on the loop's thread once a
        // switch. Kernel time alone, with nothing counted, names nothing.
        var ucontext = Doctor.Evidence(operations: 1_000, waitsPerOperation: 10)
        ucontext.switches = 22_000
        ucontext.userSeconds = 0.7
        ucontext.systemSeconds = 0.3
        #expect(Doctor.diagnose(ucontext).isEmpty)
        ucontext.loopSyscalls = ["rt_sigprocmask": 22_000, "epoll_wait": 12]
        let named = Doctor.diagnose(ucontext)
        #expect(named.map(\.pathology) == [.syscallPerSwitch])
        #expect(named.description.contains("rt_sigprocmask ran 1.00 times per switch"), "\(named)")
        #expect(named.description.contains("swapcontext"), "\(named)")
        // A blocking call once a switch is not the switch's own system call.
        var sleeping = ucontext
        sleeping.loopSyscalls = ["clock_nanosleep": 22_000]
        #expect(Doctor.diagnose(sleeping).isEmpty)
        // A loop turn per switch matters with many operations in flight, not with one.
        var polling = Doctor.Evidence(operations: 1_000, waitsPerOperation: 10)
        polling.switches = 22_000
        polling.loopTurns = 11_000
        polling.concurrency = 1_000
        #expect(Doctor.diagnose(polling).map(\.pathology) == [.loopTurnPerSwitch])
        polling.concurrency = 1
        #expect(Doctor.diagnose(polling).isEmpty)
        // Thread hand-offs: the loop's thread waits and another thread wakes, a wait each.
        var handoff = Doctor.Evidence(operations: 1_000, waitsPerOperation: 10)
        handoff.threadSwitches = 20_000
        handoff.otherThreadSwitches = 20_000
        #expect(Doctor.diagnose(handoff).map(\.pathology) == [.threadHandoff])
        // The loop's thread sleeping with no other thread woken is no hand-off, and without the
        // time the fibers held the loop it is nothing the doctor can tell.
        handoff.otherThreadSwitches = 0
        #expect(Doctor.diagnose(handoff).isEmpty)
        // With that time: fibers held the loop 1 s while the thread ran 0.15 s: a blocking call.
        handoff.fiberSeconds = 1
        handoff.userSeconds = 0.1
        handoff.systemSeconds = 0.05
        #expect(Doctor.diagnose(handoff).map(\.pathology) == [.loopBlockingCall])
        // The same switches with the thread busy on the CPU all that time: not a sleep.
        handoff.userSeconds = 0.9
        #expect(Doctor.diagnose(handoff).isEmpty)
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

    @Test("the gallery-two rules: each fires on its own evidence, and stays quiet below it")
    func secondGalleryRules() {
        func only(_ evidence: Doctor.Evidence) -> [Doctor.Pathology] { Doctor.diagnose(evidence).map(\.pathology) }
        var evidence = Doctor.Evidence(operations: 500)
        evidence.zeroSleeps = 15_000
        #expect(only(evidence) == [.timerPolling])
        evidence.waitsPerOperation = 30  // the sleeps are the declared waits
        #expect(only(evidence).isEmpty)

        evidence = Doctor.Evidence(operations: 500)
        evidence.oneSliceChildren = 5_000
        #expect(only(evidence) == [.fiberPerStep])
        evidence.oneSliceChildren = 400
        #expect(only(evidence).isEmpty)

        evidence = Doctor.Evidence(operations: 500)
        evidence.parks = 5_000
        evidence.parksByReason = [.mutex: 5_000]
        #expect(only(evidence) == [.lockConvoy])
        evidence.parksByReason = [.mutex: 1_000, .read: 4_000]
        #expect(only(evidence).isEmpty)

        evidence = Doctor.Evidence(operations: 100)
        evidence.channelsMade = 3_000
        evidence.parksByReason = [.channelReceive: 3_000]
        #expect(only(evidence) == [.channelPerMessage])
        evidence.parksByReason = [.channelReceive: 30_000]  // a channel for ten messages
        #expect(only(evidence).isEmpty)

        evidence = Doctor.Evidence(operations: 100)
        evidence.groupWakes = 60_000
        evidence.futileWakes = 59_000
        #expect(only(evidence) == [.wakeStorm])
        evidence.futileWakes = 500
        #expect(only(evidence).isEmpty)

        evidence = Doctor.Evidence(operations: 200)
        evidence.parksByReason = [.async: 2_000]
        #expect(only(evidence) == [.asyncHops])
        evidence.parksByReason = [.async: 200]
        #expect(only(evidence).isEmpty)

        // Cold stacks: said as varied sizes when the pool held other sizes, as a full pool when
        // stacks were unmapped.
        evidence = Doctor.Evidence(operations: 1_000)
        evidence.spawns = 1_000
        evidence.stacksCold = 900
        evidence.stacksColdBesidePooled = 900
        evidence.stackSizes = 1_000
        #expect(Doctor.diagnose(evidence).description.contains("1000 different stack sizes"))
        evidence.stacksColdBesidePooled = 0
        evidence.stackSizes = 1
        evidence.stacksUnmapped = 900
        #expect(Doctor.diagnose(evidence).description.contains("the pool was full"))
    }

    @Test("the event tally: helpers that finish in one slice, polls, and wakes that find nothing")
    func eventTally() {
        var tally = Doctor.EventTally()
        var now: UInt64 = 1_000
        func add(_ kind: Doctor.EventTally.Kind, _ fiber: UInt64, after nanoseconds: UInt64 = 100) {
            now += nanoseconds
            tally.add(kind, fiber: fiber, at: now)
        }
        // Fiber 1 spawns helper 2, which finishes in its first slice; 3 parks on an event twice.
        add(.spawn, 1)
        add(.spawn, 3)
        add(.spawn, 4)
        add(.resume, 1)
        add(.spawn, 2)
        add(.park(.join), 1)
        add(.resume, 2)
        add(.finish, 2)
        add(.resume, 3)
        add(.park(.event), 3)
        add(.resume, 4)
        add(.park(.event), 4)
        // Fiber 1 wakes both event waiters in one slice: a group; 3 parks on the event again
        // (nothing found), 4 moves on.
        add(.wake, 1)
        add(.resume, 1)
        add(.wake, 3)
        add(.wake, 4)
        add(.yield, 1)
        add(.resume, 3)
        add(.park(.event), 3)
        add(.resume, 4)
        add(.park(.sleep), 4)
        // Fiber 1 yields again at once, twice: polls.
        add(.resume, 1)
        add(.yield, 1)
        add(.resume, 1)
        add(.yield, 1)
        #expect(tally.oneSliceChildren == 1)
        #expect(tally.finishes == 1)
        #expect(tally.groupWakes == 2)
        #expect(tally.futileWakes == 1)
        #expect(tally.yieldSlices == 3)
        #expect(tally.spinYields == 2)
        // A timer's wakes from loop callbacks are each fiber's own, not a group.
        var timers = Doctor.EventTally()
        timers.add(.resume, fiber: 5, at: 1)
        timers.add(.park(.other), fiber: 5, at: 2)
        timers.add(.resume, fiber: 6, at: 3)
        timers.add(.park(.other), fiber: 6, at: 4)
        timers.add(.loopTurn, fiber: 0, at: 5)
        timers.add(.wake, fiber: 5, at: 6)
        timers.add(.wake, fiber: 6, at: 7)
        timers.add(.resume, fiber: 5, at: 8)
        timers.add(.park(.other), fiber: 5, at: 9)
        #expect(timers.groupWakes == 0)
        #expect(timers.futileWakes == 0)
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

/// Holds the loop for 10 ms when it is destroyed.
private final class SlowDeinit {
    deinit {
        let start = ContinuousClock.now
        while ContinuousClock.now - start < .milliseconds(10) {}
    }
}
