import Spindle
import SpindleLoop
import Testing

@Suite("Channels")
struct ChannelTests {
    @Test("an unbuffered send waits for its receiver; values arrive in order")
    func unbufferedRendezvous() throws {
        let log = try withLoop { loop -> [String] in
            var log: [String] = []
            let channel = Channel<Int>()
            loop.spawn(name: "sender") {
                for i in 1...3 {
                    log.append("send \(i)")
                    try channel.send(i)
                    log.append("sent \(i)")
                }
                channel.close()
            }
            loop.spawn(name: "receiver") {
                for value in channel { log.append("got \(value)") }
                log.append("end")
            }
            try loop.run()
            return log
        }
        // The sender arrives first, so its first send waits until the receiver has the value.
        // (Later sends find the receiver already waiting: they hand over and return at once.)
        #expect(log.firstIndex(of: "got 1")! < log.firstIndex(of: "sent 1")!)
        #expect(log.filter { $0.hasPrefix("got") } == ["got 1", "got 2", "got 3"])
        #expect(log.last == "end")
        #expect(log.firstIndex(of: "send 1")! < log.firstIndex(of: "sent 1")!)
    }

    @Test("a fiber counts as waiting on a channel only while it waits there, and no later fiber on its stack does")
    func waitingOnChannelOnlyWhileThere() throws {
        let seen = try withLoop { loop -> [Bool] in
            var seen: [Bool] = []
            let channel = Channel<Int>()
            var first: FiberRef?
            var later: FiberRef?
            loop.spawnDetached {
                first = Fiber.current
                _ = try? channel.receive()
                Fiber.park(.other)  // parked again, on nothing of the channel's
            }
            loop.spawnDetached {
                Fiber.yield()  // the first now waits to receive
                seen.append(first!.isParked(waitingFor: channel))
                try? channel.send(1)
                Fiber.yield()  // the first has its value and is parked on something else
                seen.append(first!.isParked(waitingFor: channel))
                first!.wake()
                Fiber.yield()  // the first finishes; its stack goes back to the pool
                Fiber.spawnDetached {
                    later = Fiber.current
                    Fiber.park(.other)
                }
                Fiber.yield()
                seen.append(later!.isParked && later!.isParked(waitingFor: channel))
                later!.wake()
            }
            try loop.run()
            return seen
        }
        #expect(seen == [true, false, false])
    }

    @Test("a buffered channel takes capacity values without a receiver, then blocks the sender")
    func bufferedCapacity() throws {
        let (sentBeforeReceive, received) = try withLoop { loop -> (Int, [Int]) in
            let channel = Channel<Int>(capacity: 3)
            var sent = 0
            var sentBeforeReceive = -1
            loop.spawn(name: "sender") {
                for i in 0..<5 {
                    try channel.send(i)
                    sent += 1
                }
                channel.close()
            }
            var received: [Int] = []
            loop.spawn(name: "receiver") {
                Fiber.yield()
                Fiber.yield()
                sentBeforeReceive = sent
                while let value = try channel.receive() { received.append(value) }
            }
            try loop.run()
            return (sentBeforeReceive, received)
        }
        #expect(sentBeforeReceive == 3)
        #expect(received == [0, 1, 2, 3, 4])
    }

    @Test("close wakes every waiter: receivers drain what is buffered then get nil, senders an error")
    func closeBehaviour() throws {
        let (received, senderErrors, lateSend) = try withLoop { loop -> ([Int?], Int, Bool) in
            let channel = Channel<Int>(capacity: 1)
            let unbuffered = Channel<Int>()
            var received: [Int?] = []
            var senderErrors = 0
            var lateSendFailed = false
            for _ in 0..<3 {
                loop.spawn(name: "blocked-sender") {
                    do { try unbuffered.send(1) } catch is ChannelClosedError { senderErrors += 1 }
                }
            }
            loop.spawn(name: "buffered-receiver") {
                while true {
                    let value = try channel.receive()
                    received.append(value)
                    if value == nil { break }
                }
            }
            loop.spawn(name: "closer") {
                try channel.send(42)
                Fiber.yield()
                channel.close()
                unbuffered.close()
                do { try channel.send(7) } catch is ChannelClosedError { lateSendFailed = true }
            }
            try loop.run()
            return (received, senderErrors, lateSendFailed)
        }
        #expect(received == [42, nil])
        #expect(senderErrors == 3)
        #expect(lateSend)
    }

    @Test("100,000 messages between 1,000 fibers: none lost, none duplicated")
    func manyMessages() throws {
        let (count, sum, duplicates) = try withLoop { loop -> (Int, Int, Int) in
            let channel = Channel<Int>(capacity: 64)
            let producers = 500
            let perProducer = 200
            var seen = [Bool](repeating: false, count: producers * perProducer)
            var count = 0
            var sum = 0
            var duplicates = 0
            let done = WaitGroup()
            done.add(producers)
            for p in 0..<producers {
                loop.spawn(name: "producer-\(p)") {
                    for i in 0..<perProducer {
                        try channel.send(p * perProducer + i)
                        if i % 7 == 0 { Fiber.yield() }
                    }
                    done.done()
                }
            }
            loop.spawn(name: "closer") {
                try done.wait()
                channel.close()
            }
            for c in 0..<500 {
                loop.spawn(name: "consumer-\(c)") {
                    for value in channel {
                        if seen[value] { duplicates += 1 }
                        seen[value] = true
                        count += 1
                        sum += value
                    }
                }
            }
            try loop.run()
            return (count, sum, duplicates)
        }
        let n = 500 * 200
        #expect(count == n)
        #expect(duplicates == 0)
        #expect(sum == n * (n - 1) / 2)
    }

    @Test("each producer's messages arrive in the order it sent them")
    func perProducerOrder() throws {
        let streams = try withLoop { loop -> [[Int]] in
            let channel = Channel<(Int, Int)>(capacity: 5)
            var streams = [[Int]](repeating: [], count: 10)
            let done = WaitGroup()
            done.add(10)
            for p in 0..<10 {
                loop.spawn {
                    for i in 0..<500 { try channel.send((p, i)) }
                    done.done()
                }
            }
            loop.spawn {
                try done.wait()
                channel.close()
            }
            loop.spawn { for (p, i) in channel { streams[p].append(i) } }
            try loop.run()
            return streams
        }
        for stream in streams { #expect(stream == Array(0..<500)) }
    }

    @Test("a cancelled receiver throws and leaves the channel usable")
    func cancelledReceiver() throws {
        let (outcome, later) = try withLoop { loop -> (String, Int?) in
            let channel = Channel<Int>()
            let waiting = loop.spawn(name: "waiting") { () -> String in
                do {
                    _ = try channel.receive()
                    return "received"
                } catch is CancellationError {
                    return "cancelled"
                }
            }
            var later: Int?
            loop.spawn(name: "canceller") {
                Fiber.yield()
                waiting.cancel()
                Fiber.spawn { later = try channel.receive() }
                try channel.send(5)
            }
            try loop.run()
            return (try waiting.join(), later)
        }
        #expect(outcome == "cancelled")
        #expect(later == 5)
    }

    @Test("receive with a timeout throws FiberTimeoutError when nothing arrives")
    func receiveTimeout() throws {
        let outcome = try withLoop { loop -> String in
            let channel = Channel<Int>()
            let waiter = loop.spawn { () -> String in
                do {
                    _ = try Fiber.withTimeout(.milliseconds(5)) { try channel.receive() }
                    return "received"
                } catch is FiberTimeoutError {
                    return "timed out"
                }
            }
            try loop.run()
            return try waiter.join()
        }
        #expect(outcome == "timed out")
    }
}
