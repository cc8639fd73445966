import Foundation
import Spindle
import SpindleLoop
import SpindleTestSupport
import SpindleTrace
import Testing

@Suite("Trace recorder")
struct TraceTests {
    @Test("records each fiber's spawn, slices and their ends in order, and exports Perfetto JSON")
    func recordsAndExports() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("spindle-trace-\(getpid()).json").path
        defer { unlink(path) }
        let events = try withRunningLoop("trace-test") { loop -> [Trace.Event] in
            Trace.start(on: loop)
            for index in 0..<3 {
                loop.spawn(name: "worker-\(index)") {
                    Fiber.yield()
                    try? Fiber.sleep(for: .zero)
                }
            }
            try loop.run()
            let events = Trace.events(of: loop)
            try Trace.write(loop, to: path)
            Trace.stop(on: loop)
            #expect(!Trace.isRecording(loop))
            return events
        }
        // Per fiber: spawn, resume, yield, resume, park (sleep), wake, resume, finish.
        let fibers = Set(events.map(\.fiber).filter { $0 != 0 })
        #expect(fibers.count == 3)
        for fiber in fibers {
            let kinds = events.filter { $0.fiber == fiber }.map(\.kind)
            #expect(kinds == [.spawn, .resume, .yield, .resume, .park, .wake, .resume, .finish], "fiber \(fiber): \(kinds)")
            #expect(events.first { $0.fiber == fiber && $0.kind == .park }?.parkReason == .sleep)
        }
        #expect(events.contains { $0.kind == .loopTurn })
        #expect(zip(events, events.dropFirst()).allSatisfy { $0.timestamp <= $1.timestamp })

        // The export: every slice opened is closed, named after its fiber, ended with why.
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        let trace = json["traceEvents"] as! [[String: Any]]
        let begins = trace.filter { $0["ph"] as? String == "B" }
        let ends = trace.filter { $0["ph"] as? String == "E" }
        #expect(begins.count == 9 && ends.count == 9)
        #expect(begins.contains { ($0["name"] as? String)?.hasSuffix("worker-1") ?? false })
        let reasons = ends.compactMap { ($0["args"] as? [String: Any])?["end"] as? String }
        #expect(reasons.filter { $0 == "yield" }.count == 3)
        #expect(reasons.filter { $0 == "park: sleep" }.count == 3)
        #expect(reasons.filter { $0 == "finish" }.count == 3)
    }

    @Test("statistics from the trace: runnable delays, slices, and parks by reason")
    func statistics() throws {
        let parks = Box<[Fiber.ParkReason: UInt64]>([:])
        let stats = try withRunningLoop("trace-stats") { loop -> Trace.Statistics in
            Trace.start(on: loop)
            for _ in 0..<50 {
                loop.spawnDetached {
                    Fiber.yield()
                    try? Fiber.sleep(for: .milliseconds(20))
                }
            }
            try loop.run()
            defer { Trace.stop(on: loop) }
            parks.value = loop.scheduler.counters.parksByReason
            return Trace.statistics(of: loop)
        }
        // The always-on counters agree: 50 parks, all of them sleeps.
        #expect(parks.value == [.sleep: 50])
        // Each fiber: spawn→run, yield→run, wake→run; three slices; one sleep.
        #expect(stats.runnableToRunning.count == 150)
        #expect(stats.slices.count == 150)
        #expect(stats.parks.keys.sorted { $0.rawValue < $1.rawValue } == [.sleep])
        #expect(stats.parks[.sleep]?.count == 50)
        // A 20 ms sleep lasts (libuv's cached loop time can make it end a little early, never
        // near zero).
        #expect(stats.parks[.sleep]!.p50 >= 1_000_000, "\(stats)")
        #expect(stats.description.contains("parked on sleep: 50 ×"), "\(stats)")
    }

    @Test("a trace that cannot be written says which file and why")
    func unwritable() throws {
        let message = try withRunningLoop("trace-unwritable") { loop -> String in
            Trace.start(on: loop)
            defer { Trace.stop(on: loop) }
            do {
                try Trace.write(loop, to: "/nonexistent-directory/trace.json")
                return "written"
            } catch {
                return "\(error)"
            }
        }
        #expect(message.contains("ENOENT"), "\(message)")
        #expect(message.contains("/nonexistent-directory/trace.json"), "\(message)")
    }

    @Test("off records nothing; the ring keeps the newest events")
    func ring() throws {
        let (untraced, kept, fibers) = try withRunningLoop("trace-ring") { loop -> (Int, Int, Set<UInt64>) in
            for _ in 0..<10 { loop.spawnDetached { Fiber.yield() } }
            try loop.run()
            let untraced = Trace.events(of: loop).count
            Trace.start(on: loop, capacity: 8)
            for _ in 0..<10 { loop.spawnDetached { Fiber.yield() } }
            try loop.run()
            let kept = Trace.events(of: loop)
            Trace.stop(on: loop)
            return (untraced, kept.count, Set(kept.map(\.fiber)))
        }
        #expect(untraced == 0)
        #expect(kept == 8)
        #expect(fibers.contains(20))  // the last fiber's events are the newest
        #expect(!fibers.contains(11))  // the first traced fiber's were overwritten
    }
}
