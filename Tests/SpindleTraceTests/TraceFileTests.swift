import Foundation
import Spindle
import SpindleLoop
import SpindleTestSupport
import SpindleTrace
import Testing

/// The doctor reading a trace file back (what `spindle-doctor` does for a program run with
/// SPINDLE_TRACE): the loop's totals the writer keeps in `otherData.spindle`, and the slices of
/// its events. The whole-run view has no warm-up, so fresh stacks only count as cold where the
/// pool threw stacks away.
@Suite("Doctor on a trace file", .serialized)
struct TraceFileTests {
    static let operations = 300
    static let waits = 10

    /// Traces `operations` fibers of `body` (spawned all at once, or one after another when
    /// `oneAtATime`), writes the trace and reads it back; also returns the loop's own counters.
    func traced(
        _ name: String, oneAtATime: Bool = false, setUp: @escaping (EventLoop) -> Void = { _ in },
        _ body: @escaping () -> Void
    ) throws -> (file: Doctor.TraceFile, counters: Scheduler.Counters) {
        let path = Self.temporaryPath(name)
        defer { unlink(path) }
        let counters = try withManyFibers {
            try withRunningLoop("tracefile-\(name)") { loop -> Scheduler.Counters in
                setUp(loop)
                Trace.start(on: loop)
                defer { Trace.stop(on: loop) }
                for _ in 0..<(oneAtATime ? Self.operations : 1) {
                    for _ in 0..<(oneAtATime ? 1 : Self.operations) { loop.spawnDetached(body) }
                    if oneAtATime { try loop.run() }
                }
                try loop.run()
                try Trace.write(loop, to: path)
                return loop.scheduler.counters
            }
        }
        // Still the JSON Perfetto opens, with the totals as otherData.
        let json =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any]
        let totals = (json?["otherData"] as? [String: Any])?["spindle"] as? [String: Any]
        #expect(totals?["yields"] as? Int == Int(counters.yields), "\(String(describing: json?["otherData"]))")
        return (try Doctor.TraceFile(path: path), counters)
    }

    /// A file name of this process in the temporary directory.
    static func temporaryPath(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("spindle-tracefile-\(getpid())-\(name).json").path
    }

    static func sleepEachWait() {
        for _ in 0..<waits { try? Fiber.sleep(for: .zero) }
    }

    static func pollEachWait() {
        for _ in 0..<waits {
            var fired = false
            let timer = LoopTimer(loop: Fiber.current.loop) { _ in fired = true }
            timer.start(after: .zero)
            while !fired { Fiber.yield() }
            timer.close()
        }
    }

    @Test("the totals read back are the loop's counters; parked fibers get no finding, first-use stacks included")
    func healthy() throws {
        let (file, counters) = try traced("healthy", Self.sleepEachWait)
        #expect(file.totals["spawns"] == Double(counters.spawns))
        #expect(file.totals["parks"] == Double(Self.operations * Self.waits))
        #expect(file.totals["stacksCold"] == Double(counters.stacksCold) && counters.stacksCold > 0)
        #expect(file.droppedEvents == 0 && file.eventCount > Self.operations * Self.waits)
        // getrusage is left out: other suites run in parallel in this process, and the loop
        // thread's context switches then count their lock waits. Slices are wall time: a loaded
        // machine or a sanitizer may stretch one past 1 ms.
        let report = file.report(waitsPerOperation: Double(Self.waits), includingResourceUsage: false)
        #expect(report.findings.allSatisfy { $0.pathology == .longSlices }, "\(report)")
        #expect(report.evidence.operations == Double(Self.operations), "\(report)")
    }

    @Test("fibers that yield until their timer has fired: busy-yield polling, from the file")
    func busyPolling() throws {
        let report = try traced("busy", Self.pollEachWait).file.report(includingResourceUsage: false)
        #expect(report.names(.busyYield), "\(report)")
        #expect(!report.names(.coldStacks) && !report.names(.excessSwitches), "\(report)")
    }

    @Test("fibers spawned one after another with no pool: cold stacks; with the pool: none")
    func coldStacks() throws {
        let churn = try traced("churn", oneAtATime: true, setUp: { $0.scheduler.stacks.maximumPooledPerSize = 0 }) {
            try? Fiber.sleep(for: .zero)
        }
        #expect(churn.file.totals["stacksDiscarded"] == Double(Self.operations))
        let report = churn.file.report(includingResourceUsage: false)
        #expect(report.names(.coldStacks), "\(report)")
        let pooled = try traced("pooled", oneAtATime: true) { try? Fiber.sleep(for: .zero) }.file
            .report(includingResourceUsage: false)
        #expect(!pooled.names(.coldStacks), "\(pooled)")
    }

    @Test("a slice that holds the loop is named from the file, with its fiber's name")
    func longSlice() throws {
        let path = Self.temporaryPath("hog")
        defer { unlink(path) }
        try withRunningLoop("tracefile-hog") { loop in
            Trace.start(on: loop)
            defer { Trace.stop(on: loop) }
            for _ in 0..<20 { loop.spawnDetached { Fiber.yield() } }
            loop.spawn(name: "hog {\"quoted\"}") {
                let start = ContinuousClock.now
                while ContinuousClock.now - start < .milliseconds(10) {}
            }
            try loop.run()
            try Trace.write(loop, to: path)
        }
        let file = try Doctor.TraceFile(path: path)
        #expect(file.longSlices >= 1)
        #expect((file.longestSlice?.microseconds ?? 0) >= 10_000, "\(String(describing: file.longestSlice))")
        let report = file.report(includingResourceUsage: false)
        #expect(report.names(.longSlices), "\(report)")
        #expect(report.description.contains("in fiber \"hog {\"quoted\"}\""), "\(report)")
    }

    @Test("hand-offs from a file: the loop thread's voluntary switches beyond one a loop turn, and the other threads'")
    func handoffs() throws {
        let path = Self.temporaryPath("handoff")
        defer { unlink(path) }
        func report(switches: Int, preemptions: Int, others: Int) throws -> Doctor.Report {
            let text = """
                {"displayTimeUnit":"ns","otherData":{"droppedEvents":0,"spindle":{"spawns":100,"finishes":100,\
                "switches":1100,"yields":0,"parks":1000,"loopTurns":500,"threadSwitches":\(switches),\
                "preemptions":\(preemptions),"otherThreadsVoluntarySwitches":\(others)}},"traceEvents":[
                {"name":"thread_name","ph":"M","pid":1,"tid":1,"args":{"name":"loop"}}
                ]}

                """
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            return try Doctor.TraceFile(path: path).report()
        }
        // 5,000 switches, 4,000 of them preemptions and 500 waits in epoll: the loop's thread
        // waited 5 times a fiber, and the other threads woke 6 times a fiber.
        let handing = try report(switches: 5_000, preemptions: 4_000, others: 600)
        #expect(handing.names(.threadHandoff), "\(handing)")
        #expect(
            handing.description.contains(
                "6.00 voluntary context switches of other threads per operation and 5.00 waits of the loop's thread"),
            "\(handing)")
        // The same with no other thread woken: not a hand-off.
        #expect(try !report(switches: 5_000, preemptions: 4_000, others: 0).names(.threadHandoff))
        // The same with 4,600 preemptions: nothing left on the loop's side.
        let preempted = try report(switches: 5_000, preemptions: 4_600, others: 600)
        #expect(!preempted.names(.threadHandoff), "\(preempted)")
        #expect(try Doctor.TraceFile(path: path).report(includingResourceUsage: false).evidence.threadSwitches == nil)
    }

    @Test("a file that is missing, not a Spindle trace, or cut short is refused with the reason")
    func badFiles() throws {
        func refusal(_ path: String) -> String {
            do {
                _ = try Doctor.TraceFile(path: path)
                return "read"
            } catch {
                return error.description
            }
        }
        let missing = "/nonexistent-directory/trace.json"
        #expect(refusal(missing) == "\(missing): ENOENT: no such file or directory")

        let foreign = Self.temporaryPath("foreign")
        defer { unlink(foreign) }
        try Data(#"{"traceEvents":[]}"#.utf8).write(to: URL(fileURLWithPath: foreign))
        #expect(refusal(foreign).contains("not a trace written by Spindle"), "\(refusal(foreign))")

        // A real trace without its last lines (a program killed while writing it).
        let whole = Self.temporaryPath("whole")
        let cut = Self.temporaryPath("cut")
        defer { unlink(whole); unlink(cut) }
        try withRunningLoop("tracefile-cut") { loop in
            Trace.start(on: loop)
            defer { Trace.stop(on: loop) }
            for _ in 0..<10 { loop.spawnDetached { Fiber.yield() } }
            try loop.run()
            try Trace.write(loop, to: whole)
        }
        #expect(refusal(whole) == "read")
        let text = try String(contentsOfFile: whole, encoding: .utf8)
        try Data(text.utf8.dropLast(40)).write(to: URL(fileURLWithPath: cut))
        #expect(refusal(cut).contains("cut short"), "\(refusal(cut))")
    }
}
