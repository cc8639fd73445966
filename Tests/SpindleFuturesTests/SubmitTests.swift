import Glibc
import Spindle
import SpindleFutures
import SpindleTestSupport
import Synchronization
import Testing

@Suite("Submitting work to another loop")
struct SubmitTests {
    @Test("from a fiber of another loop, the future is the caller's: it waits for it there")
    func submitFromAnotherLoop() throws {
        let group = LoopGroup(loops: 2, name: "submit")
        let (first, second) = (group.loops[0], group.loops[1])
        let seen = Locked<[String]>([])
        group.spawn(on: first) {
            let future = second.submit { () -> UInt64 in
                try Fiber.sleep(for: .milliseconds(1))  // a fiber there: it may block
                return EventLoop.current!.id
            }
            let ranOn = try? future.wait()
            seen.withLock { $0.append("ran on \(ranOn.map(String.init) ?? "?"), future of \(future.loop.id)") }
            let failed = second.submit { () -> Int in throw CancellationError() }
            do { _ = try failed.wait() } catch { seen.withLock { $0.append("\(type(of: error))") } }
        }
        for _ in 0..<60_000 where seen.withLock({ $0.count }) < 2 { usleep(1_000) }
        #expect(seen.withLock { $0 } == ["ran on \(second.id), future of \(first.id)", "CancellationError"])
        try group.shutdown(within: .seconds(30))
    }

    @Test("from a thread without a loop, the future belongs to the target loop; wait() blocks the thread")
    func submitFromPlainThread() throws {
        let group = LoopGroup(loops: 1, name: "submit-plain")
        let loop = group.loops[0]
        let future = loop.submit { () -> UInt64 in
            try Fiber.sleep(for: .milliseconds(5))
            return EventLoop.current!.id
        }
        #expect(future.loop === loop)
        #expect(try future.wait() == loop.id)
        #expect(throws: CancellationError.self) { try loop.submit { () -> Int in throw CancellationError() }.wait() }
        try group.shutdown(within: .seconds(30))
    }

    @Test("submitting to a closed loop fails the future with LoopError.closed")
    func submitToClosedLoop() throws {
        let closed = try LoopThread.withLoop { loop in loop }
        // From a running loop (whose future it is, so the outcome arrives on this thread): the
        // closed loop's thread has exited, and this one must not pass for it.
        let outcome = try withRunningLoop { loop in
            let outcome = Box<String>("")
            loop.deferToNextTurn {
                let future = closed.submit { 1 }
                outcome.value = future.loop === loop ? "" : "the future belongs to \(future.loop), not \(loop)"
                future.whenComplete { outcome.value += "\($0)" }
            }
            return outcome
        }
        #expect(outcome.value == "failure(\(LoopError.closed))")
    }
}
