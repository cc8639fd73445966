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
            #expect(
                kinds == [.spawn, .resume, .yield, .resume, .park, .wake, .resume, .finish], "fiber \(fiber): \(kinds)")
            #expect(events.first { $0.fiber == fiber && $0.kind == .park }?.parkReason == .sleep)
        }
        #expect(events.contains { $0.kind == .loopTurn })
        #expect(zip(events, events.dropFirst()).allSatisfy { $0.timestamp <= $1.timestamp })

        // The export: every slice opened is closed, named after its fiber, ended with why.
        let json =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
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
        // Histograms: power-of-two buckets, in order, holding every sample.
        for summary in [stats.runnableToRunning, stats.slices, stats.parks[.sleep]!] {
            #expect(summary.histogram.map(\.count).reduce(0, +) == summary.count)
            #expect(zip(summary.histogram, summary.histogram.dropFirst()).allSatisfy { $0.upperBound < $1.upperBound })
            #expect(
                summary.histogram.allSatisfy {
                    $0.upperBound == 0 || $0.upperBound.nonzeroBitCount == 1 || $0.upperBound == .max
                })
            #expect(summary.histogram.last!.upperBound >= summary.max)
        }
        #expect(stats.parks[.sleep]!.histogram.last!.upperBound >= 1 << 20)  // ≥ 1 ms sleeps land ≥ 2^20 ns
        // Per fiber: the 50 sleepers, each with its three slices and one sleep.
        #expect(stats.fibers.count == 50)
        for fiber in stats.fibers.values {
            #expect(fiber.slices.count == 3)
            #expect(fiber.runnableToRunning.count == 3)
            #expect(fiber.parks[.sleep]?.count == 1)
            #expect(fiber.runningNanoseconds >= fiber.slices.max)
        }
    }

    @Test("histogram buckets are the powers of two above each sample")
    func histogramBuckets() {
        let summary = Trace.Statistics.Summary([1025, 0, 1, 2, 3, 4, 5, 1000, 1024])
        #expect(
            summary.histogram == [
                .init(upperBound: 0, count: 1), .init(upperBound: 1, count: 1), .init(upperBound: 2, count: 1),
                .init(upperBound: 4, count: 2), .init(upperBound: 8, count: 1), .init(upperBound: 1024, count: 2),
                .init(upperBound: 2048, count: 1),
            ])
    }

    @Test("a read's completion is recorded before the reader's wake, with whether the reader ran from it")
    func ioCompletion() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("spindle-trace-io-\(getpid()).json")
            .path
        defer { unlink(path) }
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0)
        let (events, reader, json) = try withRunningLoop("trace-io") { loop -> ([Trace.Event], UInt64, String) in
            let a = try PipeConnection(adopting: fds[0], loop: loop)
            let b = try PipeConnection(adopting: fds[1], loop: loop)
            Trace.start(on: loop)
            let reader = loop.spawn(name: "reader") {
                var byte: [UInt8] = [0]
                _ = try b.read(into: &byte)
            }
            loop.spawn(name: "writer") {
                try Fiber.sleep(for: .milliseconds(1))
                try a.write([7])
            }
            try loop.run()
            a.close()
            b.close()
            let events = Trace.events(of: loop)
            try Trace.write(loop, to: path)
            Trace.stop(on: loop)
            return (events, reader.id, try String(contentsOfFile: path, encoding: .utf8))
        }
        let kinds = events.filter { $0.fiber == reader }.map(\.kind)
        #expect(kinds == [.spawn, .resume, .park, .ioCompletion, .wake, .resume, .finish], "\(kinds)")
        #expect(json.contains("I/O completion for fiber #\(reader) reader"), "\(json.prefix(2000))")
        #expect(json.contains("runs it at once"))
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
