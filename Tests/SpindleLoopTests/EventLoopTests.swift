import Glibc
import SpindleLoop
import Synchronization
import Testing

@Suite("EventLoop")
struct EventLoopTests {
    @Test("an empty loop returns from run() at once")
    func emptyLoopReturns() throws {
        try withLoop { loop in try loop.run() }
    }

    @Test("work posted from other threads all runs on the loop thread, in each producer's order")
    func postFromManyThreads() throws {
        let producers = 4
        let perProducer = 2_000
        let seen = try withLoop { loop -> [[Int]] in
            final class Log: @unchecked Sendable {
                var perProducer: [[Int]]
                var total = 0
                var onLoopThread = true
                init(_ n: Int) { perProducer = Array(repeating: [], count: n) }
            }
            let log = Log(producers)
            let threads = (0..<producers).map { producer in
                LoopThread(name: "producer-\(producer)") {
                    for i in 0..<perProducer {
                        loop.post {
                            log.onLoopThread = log.onLoopThread && loop.isOnLoopThread
                            log.perProducer[producer].append(i)
                            log.total += 1
                            if log.total == producers * perProducer { loop.stop() }
                        }
                    }
                }
            }
            try loop.run(.untilStopped)
            for thread in threads { thread.join() }
            #expect(log.onLoopThread)
            return log.perProducer
        }
        for list in seen { #expect(list == Array(0..<perProducer)) }
    }

    @Test("untilStopped waits for posted work; untilNoWork does not")
    func runModes() throws {
        let ran = try withLoop { loop -> Bool in
            let ran = Atomic<Bool>(false)
            let poster = LoopThread(name: "poster") {
                usleep(20_000)
                loop.post {
                    ran.store(true, ordering: .relaxed)
                    loop.stop()
                }
            }
            try loop.run(.untilStopped)
            poster.join()
            return ran.load(ordering: .relaxed)
        }
        #expect(ran)
    }

    @Test("next-turn work runs after the current turn, in order, and never spins the loop")
    func nextTurn() throws {
        let (order, iterations) = try withLoop { loop -> ([String], Int) in
            var order: [String] = []
            let counter = IterationCounter(loop: loop)
            loop.deferToNextTurn {
                order.append("a")
                loop.deferToNextTurn { order.append("c") }
            }
            loop.deferToNextTurn { order.append("b") }
            try loop.run()
            counter.watcher.close()
            return (order, counter.count)
        }
        #expect(order == ["a", "b", "c"])
        #expect(iterations <= 4)
    }

    @Test("close() refuses while a handle is open, names it, and works once it is closed")
    func closeNamesOpenHandles() throws {
        try LoopThread.run {
            let loop = EventLoop()
            let timer = LoopTimer(loop: loop) { _ in }
            timer.start(after: .seconds(60), repeating: .seconds(60))
            #expect(throws: LoopError.stillOpen(["timer (repeating every 60000 ms) handle not closed"])) {
                try loop.close()
            }
            timer.close()
            try loop.close()
            #expect(loop.isClosed)
        }
    }

    @Test("several loops on several threads run at once without sharing state")
    func loopsOnManyThreads() throws {
        let results = Mutex<[Int]>([])
        let threads = (0..<4).map { index in
            LoopThread(name: "loop-\(index)") {
                let loop = EventLoop()
                var ticks = 0
                let timer = LoopTimer(loop: loop) { timer in
                    ticks += 1
                    if ticks == 10 { timer.close() }
                }
                timer.start(after: .milliseconds(1), repeating: .milliseconds(1))
                try? loop.run()
                try? loop.close()
                results.withLock { $0.append(ticks) }
            }
        }
        for thread in threads { thread.join() }
        #expect(results.withLock { $0 } == [10, 10, 10, 10])
    }

    @Test("C callbacks are nonisolated: a @MainActor caller's loop runs them on its own thread")
    @MainActor
    func callbacksAreNonisolated() throws {
        // If any libuv callback were inferred @MainActor, Swift's dynamic isolation check would
        // stop the process when libuv calls it on the loop thread.
        let count = try LoopThread.run { () -> Int in
            let loop = EventLoop()
            let count = Box(0)
            loop.schedule(after: .milliseconds(1)) { count.value += 1 }
            loop.deferToNextTurn { count.value += 1 }
            let watcher = LoopWatcher(loop: loop, kind: .check)
            watcher.keepsLoopAlive = false
            watcher.start { [unowned watcher] in
                count.value += 1
                watcher.stop()
            }
            loop.post { count.value += 1 }
            try loop.run()
            watcher.close()
            try loop.close()
            return count.value
        }
        #expect(count >= 3)
    }

    @Test("using a loop from another thread stops the process with a message naming both threads")
    func wrongThread() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let loop = EventLoop()
            _ = try? LoopThread.run(name: "intruder") {
                loop.schedule(after: .milliseconds(1)) {}
            }
        }
        let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(text.contains("EventLoop used from the wrong thread"))
        #expect(text.contains("\"intruder\""))
        #expect(text.contains("use loop.post"))
    }

    @Test("a loop whose thread has finished is refused on the next thread made, which may reuse its pthread_t")
    func finishedOwner() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let loop = try LoopThread.withLoop { $0 }  // its thread has exited when this returns
            // glibc usually gives the next thread the finished one's pthread_t (and stack).
            _ = try? LoopThread.run(name: "successor") {
                loop.schedule(after: .milliseconds(1)) {}
            }
        }
        let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(text.contains("EventLoop used from the wrong thread"), "\(text)")
    }

    final class Counter: EventLoopAttachment {
        var uses = 0
        func stalledWaiters() -> [String] { [] }
        func openItems() -> [String] { [] }
        func loopWillClose() {}
    }
    final class Other: EventLoopAttachment {
        func stalledWaiters() -> [String] { [] }
        func openItems() -> [String] { [] }
        func loopWillClose() {}
    }

    @Test("an attachment is made once; attachment() and withAttachment give that one, whatever was looked up last")
    func attachments() throws {
        let loop = EventLoop()
        var made = 0
        func make() -> Counter {
            made += 1
            return Counter()
        }
        let first = loop.withAttachment(Counter.self, make) { counter in
            counter.uses += 1
            return ObjectIdentifier(counter)
        }
        let other = loop.attachment(Other.self) { Other() }  // the one-entry cache now holds Other
        let second = loop.withAttachment(Counter.self, make) { counter in
            counter.uses += 1
            return ObjectIdentifier(counter)
        }
        let third = loop.withAttachment(Counter.self, make) { ObjectIdentifier($0) }  // served by the cache
        let counter = loop.attachment(Counter.self, make)
        #expect(made == 1)
        #expect(first == second && second == third && third == ObjectIdentifier(counter))
        #expect(counter.uses == 2)
        #expect(ObjectIdentifier(loop.attachment(Other.self) { Other() }) == ObjectIdentifier(other))
        try loop.close()
    }

    final class Stops: EventLoopAttachment {
        var stops = 0
        func stalledWaiters() -> [String] { [] }
        func openItems() -> [String] { [] }
        func loopWillClose() {}
        func loopDidStop() { stops += 1 }
    }

    // The hot slot is claimed for the whole process by the first type that asks (in the test
    // process, the futures layer's), so these run in processes of their own.
    @Test("the hot attachment is made once, is the one attachment() finds, and hears each time run() returns")
    func hotAttachment() async {
        await #expect(processExitsWith: .success) {
            let stops = try withLoop { loop -> [Int] in
                let hot = loop.hotAttachment(Stops.self) { Stops() }.takeUnretainedValue()
                precondition(loop.hotAttachment(Stops.self) { Stops() }.takeUnretainedValue() === hot, "made twice")
                precondition(loop.attachment(Stops.self) { Stops() } === hot, "not the attachment")
                var stops = [hot.stops]
                try loop.run()
                stops.append(hot.stops)
                loop.post {}
                try loop.run()
                stops.append(hot.stops)
                return stops
            }
            precondition(stops == [0, 1, 2], "loopDidStop calls: \(stops)")
        }
    }

    @Test("a second type asking for the hot attachment stops the process, saying so")
    func hotAttachmentClaimedTwice() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let loop = EventLoop()
            _ = loop.hotAttachment(Counter.self) { Counter() }
            _ = loop.hotAttachment(Other.self) { Other() }
        }
        let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(text.contains("Other asked for the loop's hot attachment, which another layer's type holds"), "\(text)")
    }
}

@Suite("EventLoop identity and handles")
struct EventLoopIdentityTests {
    @Test("EventLoop.current is the loop running on this thread, and only while it runs")
    func currentLoop() throws {
        #expect(EventLoop.current == nil)
        let seen = try withLoop { loop -> [Bool] in
            var seen: [Bool] = [EventLoop.current == nil]
            loop.schedule(after: .zero) {
                seen.append(EventLoop.current === loop)
                // A second loop run inside the first's callback is current while it runs.
                let inner = EventLoop(name: "inner")
                inner.schedule(after: .zero) { seen.append(EventLoop.current === inner) }
                try? inner.run()
                try? inner.close()
                seen.append(EventLoop.current === loop)
            }
            try loop.run()
            seen.append(EventLoop.current == nil)
            return seen
        }
        #expect(seen == [true, true, true, true, true])
    }

    @Test("loops have distinct ids; a named loop says its name")
    func names() throws {
        let (a, b) = (EventLoop(), EventLoop(name: "shard"))
        #expect(a.id != b.id)
        #expect("\(b)" == "loop #\(b.id) \"shard\"")
        #expect("\(a)" == "loop #\(a.id)")
        try a.close()
        try b.close()
    }

    @Test("closeOpenHandles closes the user's handles, so the loop can close")
    func closeOpenHandles() throws {
        try withLoop { loop in
            let timer = LoopTimer(loop: loop) { _ in }
            timer.start(after: .seconds(3600))
            let watcher = LoopWatcher(loop: loop, kind: .check)
            watcher.start {}
            #expect(throws: LoopError.self) { try loop.close() }
            #expect(loop.closeOpenHandles() == 2)
            #expect(timer.isClosed && watcher.isClosed)
            try loop.run()
        }
    }
}
