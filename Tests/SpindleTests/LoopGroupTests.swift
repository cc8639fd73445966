import CSpindleSupport
import Glibc
import Spindle
import SpindleLoop
import Synchronization
import Testing

/// The number of parked fibers on `loop`, asked on its thread.
func parkedFibers(on loop: EventLoop) -> Int {
    let answer = Atomic<Int>(-1)
    loop.post { answer.store(Int(loop.scheduler.counters.parked), ordering: .releasing) }
    waitUntil("\(loop) answers") { answer.load(ordering: .acquiring) >= 0 }
    return answer.load(ordering: .acquiring)
}

@Suite("Loop groups")
struct LoopGroupTests {
    @Test("each loop runs on its own thread, is current there, and next() goes round the loops")
    func threadsAndPlacement() throws {
        let group = LoopGroup(loops: 3, name: "placement")
        defer { try? group.shutdown() }
        #expect(group.loops.count == 3)
        // Numbered in order, whichever thread started first.
        #expect(group.loops.map(\.id) == (0..<3).map { group.loops[0].id + UInt64($0) })
        #expect(group.loops.map(\.name) == ["placement-0", "placement-1", "placement-2"])
        #expect(EventLoop.current == nil)
        let picked = (0..<6).map { _ in group.next().id }
        #expect(picked == (group.loops + group.loops).map(\.id))
        // loop(for:) is stable for a key and spreads keys over the loops.
        let placements = (0..<300).map { group.loop(for: "user-\($0)").id }
        #expect(placements == (0..<300).map { group.loop(for: "user-\($0)").id })
        #expect(Set(placements).count == 3)
        // Inside each loop's fibers, EventLoop.current is that loop, on a thread of its own.
        let seen = Locked<[UInt64: (current: UInt64?, onThread: Bool)]>([:])
        group.spawnOnEach(name: "where-am-i") { loop in
            let current = EventLoop.current?.id
            seen.withLock { $0[loop.id] = (current, loop.isOnLoopThread) }
        }
        waitUntil("every loop answered") { seen.withLock { $0.count } == 3 }
        for loop in group.loops {
            let entry = seen.withLock { $0[loop.id] }
            #expect(entry?.current == loop.id)
            #expect(entry?.onThread == true)
        }
    }

    @Test("pinning puts loop i on the i-th usable CPU")
    func pinning() throws {
        let group = LoopGroup(loops: 2, pinning: true, name: "pinned")
        defer { try? group.shutdown() }
        let cpus = Locked<[Int: (cpu: Int32, allowed: Int32)]>([:])
        for (index, loop) in group.loops.enumerated() {
            group.spawn(on: loop) {
                cpus.withLock { $0[index] = (spindle_current_cpu(), spindle_current_thread_cpu_count()) }
            }
        }
        waitUntil("both loops answered") { cpus.withLock { $0.count } == 2 }
        // Each loop's thread may run on one CPU only; with two CPUs or more, not the same one.
        #expect(cpus.withLock { $0[0]?.allowed == 1 && $0[1]?.allowed == 1 })
        if LoopGroup.defaultLoopCount >= 2 { #expect(cpus.withLock { $0[0]?.cpu != $0[1]?.cpu }) }
    }

    @Test("shutdown cancels fibers blocked in I/O, sleeps, channels and calls on every loop, and closes their handles")
    func shutdownWithBlockedFibers() throws {
        let group = LoopGroup(loops: 2, name: "blocked")
        let channel = CrossLoopChannel<Int>(capacity: 4)
        let ports = Locked<[Int]>([])
        let endings = Locked<[String]>([])
        @Sendable func ended(_ what: String, _ error: (any Error)?) {
            let how: String
            switch error {
            case nil: how = "returned"
            case is CancellationError: how = "cancelled"
            case let error as UVError where error == .cancelled: how = "ECANCELED"
            case let error?: how = "\(error)"
            }
            endings.withLock { $0.append("\(what): \(how)") }
        }
        for (index, loop) in group.loops.enumerated() {
            let other = group.loops[1 - index]
            group.spawn(on: loop, name: "listener") {
                do {
                    let listener = try TCPListener(address: SocketAddress(ip: "127.0.0.1", port: 0))
                    ports.withLock { $0.append(try! listener.localAddress.port) }
                    // The connection's reader is a fiber of its own; the listener is left open.
                    let connection = try listener.accept()
                    Fiber.spawnDetached(name: "reader") {
                        var buffer = [UInt8](repeating: 0, count: 16)
                        do { _ = try connection.read(into: &buffer); ended("read", nil) } catch { ended("read", error) }
                    }
                    _ = try listener.accept()
                    ended("accept", nil)
                } catch {
                    ended("accept", error)
                }
            }
            group.spawn(on: loop, name: "sleeper") {
                do { try Fiber.sleep(for: .seconds(3600)); ended("sleep", nil) } catch { ended("sleep", error) }
            }
            group.spawn(on: loop, name: "receiver") {
                do { _ = try channel.receive(); ended("receive", nil) } catch { ended("receive", error) }
            }
            group.spawn(on: loop, name: "caller") {
                do {
                    try other.call { try Fiber.sleep(for: .seconds(3600)) }
                    ended("call", nil)
                } catch {
                    ended("call", error)
                }
            }
            // A handle nobody closes: shutdown closes it.
            loop.post { _ = LoopTimer(loop: loop) { _ in } }
        }
        waitUntil("both listeners are up") { ports.withLock { $0.count } == 2 }
        var clients: [Int32] = []
        for port in ports.withLock({ $0 }) { clients.append(try ServiceProcess.connect(port: port)) }
        // Every loop: listener (accept), reader, sleeper, receiver, caller, and the fiber of the
        // other loop's call: six parked fibers.
        waitUntil("every fiber is parked") { group.loops.allSatisfy { parkedFibers(on: $0) == 6 } }
        try group.shutdown(within: .seconds(30))
        let counts = Dictionary(endings.withLock { $0 }.map { ($0, 1) }, uniquingKeysWith: +)
        #expect(
            counts == [
                "accept: cancelled": 2, "read: cancelled": 2, "sleep: cancelled": 2, "receive: cancelled": 2,
                "call: cancelled": 2,
            ])
        // The server side of each connection was closed: the client reads end of stream.
        for client in clients {
            var byte: UInt8 = 0
            #expect(Glibc.read(client, &byte, 1) == 0)
            Glibc.close(client)
        }
        // A second shutdown returns at once.
        try group.shutdown(within: .seconds(1))
    }

    @Test("a loop that cannot stop by the deadline is named with the fibers that hold it")
    func stuckLoopIsNamed() throws {
        let group = LoopGroup(loops: 2, name: "stuck")
        let release = Atomic<Bool>(false)
        let started = Atomic<Bool>(false)
        group.spawn(on: group.loops[1], name: "stubborn") {
            started.store(true, ordering: .releasing)
            // Ignores its cancellation until released: yields, so its loop keeps turning.
            while !release.load(ordering: .acquiring) { Fiber.yield() }
        }
        waitUntil("the stubborn fiber runs") { started.load(ordering: .acquiring) }
        let error = #expect(throws: LoopGroup.ShutdownError.self) {
            try group.shutdown(within: .milliseconds(200))
        }
        #expect(error?.stuck.count == 1)
        #expect(error?.stuck.first?.loop == "\(group.loops[1])")
        let holders = error?.stuck.first?.holders ?? []
        #expect(holders.count == 1)
        #expect(holders.first?.hasPrefix("fiber \"stubborn\" (#") == true)
        #expect(error.map { "\($0)" }?.contains("loop #\(group.loops[1].id) \"stuck-1\" did not stop") == true)
        // Once the fiber gives way, shutting down again finishes.
        release.store(true, ordering: .releasing)
        try group.shutdown(within: .seconds(30))
    }

    @Test("a loop whose thread is blocked is named as such")
    func blockedThreadIsNamed() throws {
        let group = LoopGroup(loops: 1, name: "blocked-thread")
        let release = Atomic<Bool>(false)
        let started = Atomic<Bool>(false)
        group.spawn(name: "sleeps-the-thread") {
            started.store(true, ordering: .releasing)
            while !release.load(ordering: .acquiring) { usleep(1_000) }
        }
        waitUntil("the blocking fiber runs") { started.load(ordering: .acquiring) }
        let error = #expect(throws: LoopGroup.ShutdownError.self) {
            try group.shutdown(within: .milliseconds(100))
        }
        #expect(error?.stuck.first?.holders.first?.contains("its thread did not come back to the loop") == true)
        release.store(true, ordering: .releasing)
        try group.shutdown(within: .seconds(30))
    }

    @Test("a fiber parked on something nothing can deliver is named at shutdown")
    func deadlockedFiberIsNamed() async {
        let result = await #expect(
            processExitsWith: .success, observing: [\.standardOutputContent, \.standardErrorContent]
        ) {
            let group = LoopGroup(loops: 1, name: "deadlocked")
            group.spawn(name: "forgotten") { Fiber.park(.event) }
            var text: String
            do {
                try group.shutdown(within: .seconds(30))
                text = "no error"
            } catch {
                text = "\(error)"
            }
            text.withUTF8 { _ = write(1, $0.baseAddress, $0.count) }
            // The parked fiber's loop cannot close: leave without running exit handlers.
            _exit(0)
        }
        let text = String(decoding: result?.standardOutputContent ?? [], as: UTF8.self)
        let errors = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(text.contains("did not stop:\n  - fiber \"forgotten\" (#1) parked on event"), "\(text)\n\(errors)")
    }
}

@Suite("A busy loop answers other threads")
struct BusyLoopTests {
    @Test("work posted to a loop whose fiber never parks runs within 64 of its resumes, not a whole turn")
    func postedWorkEndsABusyTurn() throws {
        let group = LoopGroup(loops: 1, name: "busy")
        let loop = group.loops[0]
        let yields = Atomic<Int>(0)
        let posted = Atomic<Bool>(false)
        let seenPostedAt = Atomic<Int>(-1)
        let ranAt = Atomic<Int>(-1)
        let stop = Atomic<Bool>(false)
        group.spawn(on: loop, name: "busy") {
            while !stop.load(ordering: .relaxed) {
                let count = yields.add(1, ordering: .relaxed).newValue
                if posted.load(ordering: .acquiring), seenPostedAt.load(ordering: .relaxed) < 0 {
                    seenPostedAt.store(count, ordering: .relaxed)
                }
                Fiber.yield()
            }
        }
        waitUntil("the busy fiber runs") { yields.load(ordering: .relaxed) > 10_000 }
        loop.post { ranAt.store(yields.load(ordering: .relaxed), ordering: .relaxed) }
        posted.store(true, ordering: .releasing)
        waitUntil("the posted work ran") { ranAt.load(ordering: .relaxed) >= 0 }
        stop.store(true, ordering: .relaxed)
        try group.shutdown(within: .seconds(30))
        // The busy fiber saw the post in one of its slices; the drain then ended its run of 64
        // resumes and the loop ran the post (scheduler.resumesPerTurn is 1,024).
        let seen = seenPostedAt.load(ordering: .relaxed)
        let ran = ranAt.load(ordering: .relaxed)
        #expect(seen >= 0)
        #expect(ran - seen <= 66, "the post ran \(ran - seen) yields after the busy fiber saw it")
    }
}
