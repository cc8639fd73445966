import Glibc
import Spindle
import SpindleLoop
import Synchronization
import Testing

/// Fibers of different loops meeting: CrossLoopChannel and EventLoop.call.
@Suite("Across loops")
struct CrossLoopTests {
    /// One message: who sent it and its place in that sender's sequence.
    struct Message: Sendable {
        let sender: Int
        let sequence: Int
    }

    /// What the receivers saw together: a bitmap of every message, duplicates, order violations.
    struct Tally {
        var seen: [[Bool]]
        var duplicates = 0
        var outOfOrder = 0
        var received = 0
        init(senders: Int, perSender: Int) {
            seen = Array(repeating: Array(repeating: false, count: perSender), count: senders)
        }
        /// Folds in one receiver's messages (in the order it got them).
        mutating func record(_ messages: [Message], senders: Int) {
            var last = Array(repeating: -1, count: senders)
            for message in messages {
                if seen[message.sender][message.sequence] { duplicates += 1 }
                seen[message.sender][message.sequence] = true
                if message.sequence <= last[message.sender] { outOfOrder += 1 }
                last[message.sender] = message.sequence
                received += 1
            }
        }
        var missing: Int { seen.reduce(0) { $0 + $1.filter { !$0 }.count } }
    }

    /// Every loop of `group` runs `senders/loops` senders and `receivers/loops` receivers; the
    /// last sender to finish closes the channel.
    func exchange(loops: Int, senders: Int, receivers: Int, perSender: Int, capacity: Int) throws -> Tally {
        let group = LoopGroup(loops: loops, name: "exchange")
        let channel = CrossLoopChannel<Message>(capacity: capacity)
        let tally = Locked(Tally(senders: senders, perSender: perSender))
        let sendersLeft = Atomic<Int>(senders)
        let receiversLeft = Atomic<Int>(receivers)
        for sender in 0..<senders {
            group.spawn(on: group.loops[sender % loops], name: "sender-\(sender)") {
                do {
                    for sequence in 0..<perSender { try channel.send(Message(sender: sender, sequence: sequence)) }
                } catch {
                    Issue.record("sender \(sender) stopped: \(error)")
                }
                if sendersLeft.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { channel.close() }
            }
        }
        for receiver in 0..<receivers {
            group.spawn(on: group.loops[receiver % loops], name: "receiver-\(receiver)") {
                var messages: [Message] = []
                messages.reserveCapacity(senders * perSender / receivers)
                for message in channel { messages.append(message) }
                tally.withLock { $0.record(messages, senders: senders) }
                receiversLeft.subtract(1, ordering: .releasing)
            }
        }
        waitUntil("every receiver has seen the channel close") { receiversLeft.load(ordering: .acquiring) == 0 }
        try group.shutdown(within: .seconds(30))
        return tally.withLock { $0 }
    }

    /// A million; a tenth under the sanitizers, whose instrumentation makes each message about a
    /// hundred times dearer (the full count would take minutes there).
    #if SPINDLE_SANITIZERS
    static let messages = 100_000
    #else
    static let messages = 1_000_000
    #endif

    @Test("1,000,000 messages between two loops arrive exactly once, in order")
    func millionBetweenTwoLoops() throws {
        let tally = try exchange(loops: 2, senders: 1, receivers: 1, perSender: Self.messages, capacity: 256)
        #expect(tally.received == Self.messages)
        #expect(tally.missing == 0)
        #expect(tally.duplicates == 0)
        #expect(tally.outOfOrder == 0)
    }

    @Test("1,000,000 messages among four loops arrive exactly once, in order per sender")
    func millionAmongFourLoops() throws {
        let tally = try exchange(loops: 4, senders: 8, receivers: 8, perSender: Self.messages / 8, capacity: 64)
        #expect(tally.received == Self.messages)
        #expect(tally.missing == 0)
        #expect(tally.duplicates == 0)
        #expect(tally.outOfOrder == 0)
    }

    @Test("batches sent with send(contentsOf:) arrive whole and in order through receive(upTo:into:)")
    func batches() throws {
        let group = LoopGroup(loops: 3, name: "batches")
        let channel = CrossLoopChannel<Int>(capacity: 64)
        let total = Self.messages / 10
        let received = Locked<[[Int]]>([])
        let sendersLeft = Atomic<Int>(2)
        // Two senders of odd-sized batches (larger than the ring, too) and two receivers.
        for sender in 0..<2 {
            group.spawn(on: group.loops[sender]) {
                var next = 0
                var size = 1
                while next < total {
                    let batch = (next..<min(next + size, total)).map { $0 * 2 + sender }
                    do { try channel.send(contentsOf: batch) } catch { Issue.record("send: \(error)") }
                    next += batch.count
                    size = size % 150 + 7
                }
                // The last sender closes: the receivers drain what is buffered, then see the end.
                if sendersLeft.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { channel.close() }
            }
        }
        for receiver in 0..<2 {
            group.spawn(on: group.loops[1 + receiver]) {
                var mine: [Int] = []
                var buffer: [Int] = []
                while true {
                    buffer.removeAll(keepingCapacity: true)
                    guard let count = try? channel.receive(upTo: 1 + receiver * 40, into: &buffer), count > 0 else {
                        break
                    }
                    #expect(buffer.count == count)
                    mine += buffer
                }
                received.withLock { $0.append(mine) }
            }
        }
        waitUntil("both receivers saw the close") { received.withLock { $0.count } == 2 }
        let lists = received.withLock { $0 }
        let all = lists.flatMap { $0 }
        #expect(all.count == 2 * total)
        #expect(Set(all).count == 2 * total)
        for list in lists {
            for sender in 0..<2 {
                let fromSender = list.filter { $0 % 2 == sender }
                #expect(fromSender == fromSender.sorted(), "values of sender \(sender) out of order")
            }
        }
        try group.shutdown(within: .seconds(30))
    }

    @Test("values still queued when a channel is dropped are released, each once")
    func droppedChannelReleasesItsValues() {
        final class Token: @unchecked Sendable {
            let counter: DeinitCounter
            init(_ counter: DeinitCounter) { self.counter = counter }
            deinit { counter.count += 1 }
        }
        let counter = DeinitCounter()
        do {
            let channel = CrossLoopChannel<Token>(capacity: 4)
            for _ in 0..<4 { #expect(channel.trySend(Token(counter))) }
            #expect(!channel.trySend(Token(counter)))  // full: the refused token goes at once
            #expect(counter.count == 1)
            _ = channel.tryReceive()  // taken and dropped
            #expect(counter.count == 2)
            #expect(channel.trySend(Token(counter)))  // the ring wraps
        }
        #expect(counter.count == 6)
    }

    @Test("close wakes senders and receivers parked on both loops; buffered values stay receivable")
    func closeWithParkedFibers() throws {
        let group = LoopGroup(loops: 2, name: "close")
        let full = CrossLoopChannel<Int>(capacity: 2)
        let empty = CrossLoopChannel<Int>(capacity: 2)
        #expect(full.trySend(1) && full.trySend(2) && !full.trySend(3))
        let outcomes = Locked<[String]>([])
        for loop in group.loops {
            for index in 0..<2 {
                group.spawn(on: loop, name: "sender-\(index)") {
                    do {
                        try full.send(100 + index)
                        outcomes.withLock { $0.append("sent") }
                    } catch is ChannelClosedError {
                        outcomes.withLock { $0.append("send: closed") }
                    } catch {
                        outcomes.withLock { $0.append("send: \(error)") }
                    }
                }
                group.spawn(on: loop, name: "receiver-\(index)") {
                    do {
                        let value = try empty.receive()
                        outcomes.withLock { $0.append(value == nil ? "receive: nil" : "receive: \(value!)") }
                    } catch {
                        outcomes.withLock { $0.append("receive: \(error)") }
                    }
                }
            }
        }
        waitUntil("four senders and four receivers are parked") {
            group.loops.map { parkedFibers(on: $0) }.reduce(0, +) == 8
        }
        // Closed from a thread with no loop.
        full.close()
        empty.close()
        waitUntil("every fiber has finished") { outcomes.withLock { $0.count } == 8 }
        let counts = Dictionary(outcomes.withLock { $0 }.map { ($0, 1) }, uniquingKeysWith: +)
        #expect(counts == ["send: closed": 4, "receive: nil": 4])
        #expect(full.tryReceive() == 1)
        #expect(full.tryReceive() == 2)
        #expect(full.tryReceive() == nil)
        #expect(!full.trySend(9))
        try group.shutdown(within: .seconds(30))
    }

    @Test("a receiver cancelled after a sender claimed it passes the wake on to the next receiver")
    func cancelledWaiterPassesItsWakeOn() throws {
        let group = LoopGroup(loops: 2, name: "cancel")
        let channel = CrossLoopChannel<Int>(capacity: 2)
        let got = Locked<[String]>([])
        let first = Locked<FiberRef?>(nil)
        for (index, loop) in group.loops.enumerated() {
            group.spawn(on: loop, name: "receiver-\(index)") {
                if index == 0 { first.withLock { $0 = Fiber.current } }
                let value = try? channel.receive()
                got.withLock { $0.append("\(index): \(String(describing: value))") }
            }
            // The first receiver parks first: it is the one the send claims.
            waitUntil("receiver \(index) is parked") { parkedFibers(on: loop) == 1 }
        }
        // Hold the first loop's thread while a send from this thread claims the first receiver
        // (its wake is then on the way to that loop), and cancel the receiver before the wake
        // arrives: it must hand the wake to the second receiver, or the value waits forever.
        let holding = Atomic<Bool>(false)
        let sent = Atomic<Bool>(false)
        let receiver = first.withLock { $0! }
        receiver.loop.post {
            holding.store(true, ordering: .releasing)
            while !sent.load(ordering: .acquiring) { sched_yield() }
            receiver.cancel()
        }
        waitUntil("the first loop is held") { holding.load(ordering: .acquiring) }
        #expect(channel.trySend(7))
        sent.store(true, ordering: .releasing)
        waitUntil("both receivers have finished") { got.withLock { $0.count } == 2 }
        #expect(Set(got.withLock { $0 }) == ["0: nil", "1: Optional(7)"])
        try group.shutdown(within: .seconds(30))
    }

    @Test("a send cancelled while the channel is full delivers nothing")
    func cancelledSendDeliversNothing() throws {
        let group = LoopGroup(loops: 1, name: "cancel-send")
        let channel = CrossLoopChannel<Int>(capacity: 2)
        #expect(channel.trySend(1) && channel.trySend(2))
        let outcome = Locked<String?>(nil)
        let sender = Locked<FiberRef?>(nil)
        group.spawn(name: "sender") {
            sender.withLock { $0 = Fiber.current }
            do { try channel.send(3); outcome.withLock { $0 = "sent" } } catch {
                outcome.withLock { $0 = error is CancellationError ? "cancelled" : "\(error)" }
            }
        }
        waitUntil("the sender is parked") { parkedFibers(on: group.loops[0]) == 1 }
        let ref = sender.withLock { $0! }
        ref.loop.post { ref.cancel() }
        waitUntil("the send ended") { outcome.withLock { $0 } != nil }
        #expect(outcome.withLock { $0 } == "cancelled")
        #expect(channel.tryReceive() == 1)
        #expect(channel.tryReceive() == 2)
        #expect(channel.tryReceive() == nil)
        try group.shutdown(within: .seconds(30))
    }

    @Test("call runs the body in a fiber of the other loop and returns its value; errors cross too")
    func callAcrossLoops() throws {
        let group = LoopGroup(loops: 2, name: "call")
        let (first, second) = (group.loops[0], group.loops[1])
        struct Refused: Error, Equatable {}
        let results = Locked<[String]>([])
        group.spawn(on: first) {
            do {
                let answer = try second.call(name: "remote") { () -> String in
                    // A fiber of the other loop: it may block.
                    try Fiber.sleep(for: .milliseconds(1))
                    return "\(EventLoop.current!.id) \(Fiber.current.name)"
                }
                results.withLock { $0.append(answer) }
                let local = try first.call { EventLoop.current!.id }
                results.withLock { $0.append("same loop: \(local)") }
                _ = try second.call { () -> Int in throw Refused() }
            } catch {
                results.withLock { $0.append("\(error is Refused ? "Refused" : "\(error)")") }
            }
        }
        waitUntil("three answers") { results.withLock { $0.count } == 3 }
        #expect(results.withLock { $0 } == ["\(second.id) remote", "same loop: \(first.id)", "Refused"])
        try group.shutdown(within: .seconds(30))
    }

    @Test("cancelling a fiber parked in a call cancels the remote body and waits for it")
    func cancelDuringCall() throws {
        let group = LoopGroup(loops: 2, name: "cancel-call")
        let (first, second) = (group.loops[0], group.loops[1])
        let log = Locked<[String]>([])
        let caller = Locked<FiberRef?>(nil)
        group.spawn(on: first, name: "caller") {
            caller.withLock { $0 = Fiber.current }
            do {
                try second.call {
                    do {
                        try Fiber.sleep(for: .seconds(3600))
                    } catch {
                        log.withLock { $0.append("remote: \(error is CancellationError ? "cancelled" : "\(error)")") }
                        throw error
                    }
                }
                log.withLock { $0.append("caller: returned") }
            } catch {
                log.withLock { $0.append("caller: \(error is CancellationError ? "cancelled" : "\(error)")") }
            }
        }
        waitUntil("the caller and the remote body are parked") {
            parkedFibers(on: first) == 1 && parkedFibers(on: second) == 1
        }
        let ref = caller.withLock { $0! }
        first.post { ref.cancel() }
        waitUntil("both sides ended") { log.withLock { $0.count } == 2 }
        // The remote body saw the cancellation before the caller returned.
        #expect(log.withLock { $0 } == ["remote: cancelled", "caller: cancelled"])

        // A body that finishes with a value despite the cancellation: the value is not lost.
        let value = Locked<String?>(nil)
        group.spawn(on: first, name: "caller-2") {
            caller.withLock { $0 = Fiber.current }
            let answer = try? second.call { () -> Int in
                while !Fiber.isCancelled { try? Fiber.sleep(for: .seconds(3600)) }
                return 42
            }
            value.withLock { $0 = "\(String(describing: answer))" }
        }
        waitUntil("the second caller is parked") {
            parkedFibers(on: first) == 1 && parkedFibers(on: second) == 1
        }
        let ref2 = caller.withLock { $0! }
        first.post { ref2.cancel() }
        waitUntil("the second call returned") { value.withLock { $0 } != nil }
        #expect(value.withLock { $0 } == "Optional(42)")
        try group.shutdown(within: .seconds(30))
    }

    @Test("a call whose timeout expires throws FiberTimeoutError once the remote body has ended")
    func callTimeout() throws {
        let group = LoopGroup(loops: 2, name: "timeout")
        let outcome = Locked<String?>(nil)
        let other = group.loops[1]
        group.spawn(on: group.loops[0]) {
            do {
                try Fiber.withTimeout(.milliseconds(20)) { try other.call { try Fiber.sleep(for: .seconds(3600)) } }
                outcome.withLock { $0 = "returned" }
            } catch {
                outcome.withLock { $0 = error is FiberTimeoutError ? "timed out" : "\(error)" }
            }
        }
        waitUntil("the call ended") { outcome.withLock { $0 } != nil }
        #expect(outcome.withLock { $0 } == "timed out")
        try group.shutdown(within: .seconds(30))
    }

    @Test("a call to a closed loop throws LoopError.closed")
    func callToClosedLoop() throws {
        let closed = try LoopThread.withLoop { loop in loop }
        let outcome = try withRunningLoop { loop in
            let outcome = Box<String>("")
            loop.spawn {
                do { _ = try closed.call { 1 } } catch { outcome.value = "\(error)" }
            }
            return outcome
        }
        #expect(outcome.value == "\(LoopError.closed)")
    }
}
