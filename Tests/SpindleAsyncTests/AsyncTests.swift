import Foundation
import Glibc
import Spindle
import SpindleAsync
import SpindleLoop
import SpindleTestSupport
import Testing

/// A loop running on a thread of its own until stopped, with its executor.
final class RunningLoop: @unchecked Sendable {
    private(set) var loop: EventLoop!
    private(set) var executor: LoopExecutor!
    private let thread: LoopThread
    private let ready = DispatchSemaphore(value: 0)

    init() {
        let box = Box<(EventLoop, LoopExecutor)?>(nil)
        let ready = self.ready
        thread = LoopThread(name: "async-test") {
            let loop = EventLoop()
            box.value = (loop, LoopExecutor.of(loop))
            ready.signal()
            try! loop.run(.untilStopped)
            try! loop.run()
            try! loop.close()
        }
        ready.wait()
        (loop, executor) = box.value!
    }

    func stop() {
        loop.post { [loop] in loop!.stop() }
        thread.join()
    }
}

/// An actor whose jobs run on a loop's thread.
actor LoopBound {
    nonisolated let executor: LoopExecutor
    var count = 0
    init(_ executor: LoopExecutor) { self.executor = executor }
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    func bump() -> (Int, Bool) {
        count += 1
        return (count, executor.loop.isOnLoopThread)
    }
}

/// Suspends until a loop callback (a next-turn deferral, outside any job) resumes it: a
/// nonisolated async function, so its caller hops back to its own isolation on return.
func resumedFromTheLoop(_ loop: EventLoop) async {
    await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
        loop.deferToNextTurn { continuation.resume() }
    }
}

/// Claims to be isolated to `actor` (synchronously, as code called from a C callback would).
func assumeOnLoop(_ actor: LoopBound) {
    actor.assumeIsolated { _ in }
}

enum Probe {
    @TaskLocal static var label = "none"
}

@Suite("Swift concurrency on the loop")
struct AsyncTests {
    @Test("Task(executorPreference:), withTaskExecutorPreference and a loop-bound actor all run on the loop's thread")
    func executors() async throws {
        let running = RunningLoop()
        defer { running.stop() }
        let executor = running.executor!
        let loop = running.loop!
        let viaTask = await Task(executorPreference: executor) { loop.isOnLoopThread }.value
        let viaScope = await withTaskExecutorPreference(executor) { loop.isOnLoopThread }
        let actor = LoopBound(executor)
        var results: [(Int, Bool)] = []
        for _ in 0..<100 { results.append(await actor.bump()) }
        #expect(viaTask)
        #expect(viaScope)
        #expect(results.map(\.0) == Array(1...100))
        #expect(results.allSatisfy { $0.1 })
        #expect(executor.jobsRun > 0)
    }

    @Test("10,000 jobs from four threads all run on the loop thread, each thread's in order")
    func manyJobs() async throws {
        let running = RunningLoop()
        defer { running.stop() }
        let actor = LoopBound(running.executor)
        let counts = try await withThrowingTaskGroup(of: [Int].self) { group in
            for _ in 0..<4 {
                group.addTask {
                    var seen: [Int] = []
                    for _ in 0..<2_500 {
                        let (count, onLoop) = await actor.bump()
                        if !onLoop { throw CancellationError() }
                        seen.append(count)
                    }
                    return seen
                }
            }
            var all: [[Int]] = []
            for try await seen in group { all.append(seen) }
            return all
        }
        #expect(counts.allSatisfy { $0 == $0.sorted() })
        #expect(Set(counts.joined()) == Set(1...10_000))
    }

    @Test("task-locals and the current task are right in async code on the loop; fibers run outside any task")
    func taskContext() async throws {
        let running = RunningLoop()
        defer { running.stop() }
        let loop = running.loop!
        let (label, hasTask) = await Probe.$label.withValue("outer") {
            await Task(executorPreference: running.executor) {
                (Probe.label, withUnsafeCurrentTask { $0 != nil })
            }.value
        }
        #expect(label == "outer")  // Task { } copies the creating task's task-locals
        #expect(hasTask)
        let inScope = await Probe.$label.withValue("scoped") {
            await withTaskExecutorPreference(running.executor) { (Probe.label, loop.isOnLoopThread) }
        }
        #expect(inScope == ("scoped", true))
        let fiberSeesTask = try await loop.withFiber { withUnsafeCurrentTask { $0 != nil } }
        #expect(!fiberSeesTask)
    }

    @Test("a fiber awaits async work without blocking the loop; async code awaits a fiber")
    func bridges() async throws {
        let running = RunningLoop()
        defer { running.stop() }
        let loop = running.loop!
        let (value, ticks) = try await loop.withFiber { () -> (Int, Int) in
            var ticks = 0
            let ticker = Fiber.spawn {
                for _ in 0..<3 {
                    try Fiber.sleep(for: .milliseconds(1))
                    ticks += 1
                }
            }
            let value = try Fiber.awaitAsync {
                try await Task.sleep(for: .milliseconds(20))
                return 42
            }
            try ticker.join()
            return (value, ticks)
        }
        #expect(value == 42)
        #expect(ticks == 3)
        let thrown = try await loop.withFiber { () -> String in
            do {
                _ = try Fiber.awaitAsync { () async throws -> Int in throw CancellationError() }
                return "returned"
            } catch is CancellationError {
                return "CancellationError"
            }
        }
        #expect(thrown == "CancellationError")
    }

    @Test("cancelling a fiber that awaits async work cancels the Task")
    func cancelBridge() async throws {
        let running = RunningLoop()
        defer { running.stop() }
        let loop = running.loop!
        let outcome = try await loop.withFiber { () -> String in
            let waiter = Fiber.spawn { () -> String in
                do {
                    try Fiber.awaitAsync { try await Task.sleep(for: .seconds(30)) }
                    return "slept"
                } catch is CancellationError {
                    return "cancelled"
                }
            }
            try Fiber.sleep(for: .milliseconds(2))
            waiter.cancel()
            return try waiter.join()
        }
        #expect(outcome == "cancelled")
    }

    @Test("a task on the loop's executor resumes each await with one job, and never leaves the loop's thread")
    func oneJobPerAwait() async throws {
        let running = RunningLoop()
        defer { running.stop() }
        let executor = running.executor!
        let loop = running.loop!
        let awaits = 200
        let before = await Task(executorPreference: executor) { executor.jobsRun }.value
        let onLoop = await Task(executorPreference: executor) { () -> Bool in
            var onLoop = true
            for _ in 0..<awaits {
                await resumedFromTheLoop(loop)
                onLoop = onLoop && loop.isOnLoopThread
            }
            return onLoop
        }.value
        let jobs = await Task(executorPreference: executor) { executor.jobsRun }.value - before
        #expect(onLoop)
        // One job per await, plus the task's start and the reading task's. Run isolated to the
        // loop as an actor, each await also hopped off and back (1,004 jobs for 200 awaits).
        #expect(jobs >= UInt64(awaits) && jobs <= UInt64(awaits) + 4, "jobs for \(awaits) awaits: \(jobs)")
    }

    @Test("a loop-bound actor's isolation holds in a loop callback outside any job")
    func actorIsolatedInLoopCallback() async throws {
        let running = RunningLoop()
        defer { running.stop() }
        let actor = LoopBound(running.executor)
        let loop = running.loop!
        let held = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            loop.post {
                assumeOnLoop(actor)  // stops the process if the serial executor disowns the loop's thread
                continuation.resume(returning: loop.isOnLoopThread)
            }
        }
        #expect(held)
        #expect(await actor.bump() == (1, true))
    }

    @Test("isolation checks are precise: assumeIsolated off the loop's thread stops the process")
    func checkIsolated() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let running = RunningLoop()
            assumeOnLoop(LoopBound(running.executor))  // on the test's thread, not the loop's
        }
        let stderr = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(stderr.contains("EventLoop used from the wrong thread: code isolated to a LoopExecutor"))
    }
}
