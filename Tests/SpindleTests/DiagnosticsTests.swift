import Glibc
import Spindle
import SpindleLoop
import Testing

@Suite("Runtime warnings")
struct DiagnosticsTests {
    @Test("a turn in which a fiber holds the thread past the threshold is counted and reported once")
    func slowTurn() throws {
        try withWarningHandlerExclusively { try checkSlowTurn() }
    }

    func checkSlowTurn() throws {
        let received = Locked<[SpindleDiagnostics.Warning]>([])
        SpindleDiagnostics.setWarningHandler { warning in received.withLock { $0.append(warning) } }
        defer { SpindleDiagnostics.setWarningHandler(nil) }
        let (slowTurns, loopName) = try LoopThread.withLoop { _ -> (UInt64, String) in
            let loop = EventLoop(name: "slow-turns")
            loop.scheduler.slowTurnThreshold = .milliseconds(20)
            loop.spawn(name: "blocks") {
                usleep(60_000)  // holds the thread: no park, no yield
                try? Fiber.sleep(for: .milliseconds(1))  // ends the turn
                usleep(60_000)  // a second slow turn within the second: counted, not reported
            }
            loop.spawn(name: "polite") {
                for _ in 0..<100 { Fiber.yield() }
            }
            try loop.run()
            let result = (loop.scheduler.slowTurns, "\(loop)")
            try loop.close()
            return result
        }
        #expect(slowTurns == 2)
        let mine = received.withLock { $0 }.filter { $0.loop == loopName }
        #expect(mine.count == 1)
        #expect(mine.first?.kind == .slowTurn)
        #expect(mine.first?.message.contains("its fibers held the thread for") == true)
    }
}
