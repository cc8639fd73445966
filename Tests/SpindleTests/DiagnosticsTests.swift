import Glibc
import Spindle
import SpindleLoop
import Testing

@Suite("Runtime warnings")
struct DiagnosticsTests {
    @Test("a turn in which a fiber holds the thread past the threshold is counted and reported once")
    func slowTurn() throws {
        // An interval far longer than the run, however slow the machine (valgrind, a busy
        // host): the second slow turn always falls within it.
        try withWarningHandlerExclusively { try checkSlowTurn(interval: .seconds(3600), warnings: 1) }
    }

    @Test("with no interval between slow-turn warnings, each slow turn is reported")
    func slowTurnEveryTime() throws {
        try withWarningHandlerExclusively { try checkSlowTurn(interval: .zero, warnings: 2) }
    }

    func checkSlowTurn(interval: Duration, warnings: Int) throws {
        let received = Locked<[SpindleDiagnostics.Warning]>([])
        SpindleDiagnostics.setWarningHandler { warning in received.withLock { $0.append(warning) } }
        defer { SpindleDiagnostics.setWarningHandler(nil) }
        let (slowTurns, loopName) = try LoopThread.withLoop { _ -> (UInt64, String) in
            let loop = EventLoop(name: "slow-turns")
            loop.scheduler.slowTurnThreshold = .milliseconds(20)
            loop.scheduler.slowTurnWarningInterval = interval
            loop.spawn(name: "blocks") {
                usleep(60_000)  // holds the thread: no park, no yield
                try? Fiber.sleep(for: .milliseconds(1))  // ends the turn
                usleep(60_000)  // a second slow turn: reported only past the interval
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
        #expect(mine.count == warnings)
        #expect(mine.first?.kind == .slowTurn)
        #expect(mine.first?.message.contains("its fibers held the thread for") == true)
    }
}
