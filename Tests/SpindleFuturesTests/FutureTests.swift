import Foundation
import Glibc
import Spindle
import SpindleFutures
import SpindleTestSupport
import Testing

func withLoop<T>(_ body: @escaping (EventLoop) throws -> T) throws -> T {
    try withRunningLoop("futures-test", body)
}

struct Failure: Error, Equatable { let code: Int }

@Suite("Futures")
struct FutureTests {
    @Test("map, flatMap and flatMapError chain; callbacks run in the order they were added")
    func chaining() throws {
        let log = Box<[String]>([])
        try withLoop { loop in
            let promise = loop.makePromise(of: Int.self)
            let future = promise.futureResult
            future.whenSuccess { log.value.append("first \($0)") }
            future.map { $0 * 2 }
                .flatMap { value in loop.nextTurnFuture().map { value + 1 } }
                .flatMap { (value: Int) -> Future<Int> in loop.makeFailedFuture(Failure(code: value)) }
                .flatMapError { error in loop.makeSucceededFuture((error as! Failure).code * 10) }
                .whenSuccess { log.value.append("chain \($0)") }
            future.whenSuccess { log.value.append("second \($0)") }
            future.map { (_: Int) throws -> Int in throw Failure(code: 7) }
                .whenFailure { log.value.append("map threw \(($0 as! Failure).code)") }
            promise.succeed(20)
        }
        #expect(log.value == ["first 20", "second 20", "map threw 7", "chain 410"])
    }

    @Test("whenSuccess and whenFailure run only for their own outcome, on a pending or a completed future")
    func outcomeHandlers() throws {
        let log = Box<[String]>([])
        try withLoop { loop in
            let succeeding = loop.makePromise(of: Int.self)
            let failing = loop.makePromise(of: Int.self)
            for (name, future) in [("pending ok", succeeding.futureResult), ("pending failed", failing.futureResult)] {
                future.whenSuccess { log.value.append("\(name): success \($0)") }
                future.whenFailure { log.value.append("\(name): failure \(($0 as! Failure).code)") }
            }
            succeeding.succeed(1)
            failing.fail(Failure(code: 2))
            let done: [(String, Future<Int>)] = [
                ("done ok", loop.makeSucceededFuture(3)), ("done failed", loop.makeFailedFuture(Failure(code: 4))),
            ]
            for (name, future) in done {
                future.whenSuccess { log.value.append("\(name): success \($0)") }
                future.whenFailure { log.value.append("\(name): failure \(($0 as! Failure).code)") }
            }
        }
        #expect(
            log.value == [
                "pending ok: success 1", "pending failed: failure 2", "done ok: success 3", "done failed: failure 4",
            ])
    }

    @Test("a chain of 200,000 flatMaps completes without deep recursion, values and callbacks intact")
    func deepChain() throws {
        let depth = 200_000
        let log = Box<[String]>([])
        try withLoop { loop in
            // Each level waits on its own promise, so the chain is built one level per completion
            // and finishes when the innermost future arrives: 200,000 futures completing each
            // other. Completed recursively, that walk would need ~200,000 stack frames.
            var promises: [Promise<Void>] = []
            func step(_ remaining: Int) -> Future<Int> {
                if remaining == 0 { return loop.makeSucceededFuture(depth) }
                let promise = loop.makePromise(of: Void.self)
                promises.append(promise)
                let future = promise.futureResult.flatMap { step(remaining - 1) }
                if remaining == depth / 2 { future.whenSuccess { log.value.append("middle \($0)") } }
                return future
            }
            step(depth).map { $0 + 1 }.whenSuccess { log.value.append("top \($0)") }
            var index = 0
            while index < promises.count {
                promises[index].succeed(())
                index += 1
            }
            #expect(promises.count == depth)
        }
        #expect(log.value == ["middle \(depth)", "top \(depth + 1)"])
    }

    @Test("a recursive flatMap loop keeps a bounded number of futures alive, whatever its depth")
    func recursiveLoopIsBounded() throws {
        let depth = 1_000
        let alive = Box<[Int]>([])
        let log = Box<[String]>([])
        try withLoop { loop in
            // The shape of `fanout`'s futures: each step waits for an operation, then recurses.
            // Without linking, every level's chained future stays alive until the last step.
            var promises: [Promise<Void>] = []
            var chained: [Weak<Future<Int>>] = []
            func step(_ remaining: Int) -> Future<Int> {
                if remaining == 0 { return loop.makeSucceededFuture(depth) }
                let promise = loop.makePromise(of: Void.self)
                promises.append(promise)
                let future = promise.futureResult.flatMap { step(remaining - 1) }
                chained.append(Weak(future))
                return future
            }
            step(depth).whenSuccess { log.value.append("top \($0)") }
            var index = 0
            while index < promises.count {
                promises[index].succeed(())
                index += 1
                if index % 100 == 0 { alive.value.append(chained.filter { $0.value != nil }.count) }
            }
        }
        #expect(log.value == ["top \(depth)"])
        #expect(alive.value.count == depth / 100)
        // One between completions: the current level's, which took over the callbacks of the
        // levels above it (the top one's whenSuccess). Never one per level, nor the top one
        // kept to the end beside the current one.
        #expect(alive.value.allSatisfy { $0 <= 1 }, "futures alive every 100 levels: \(alive.value)")
    }

    @Test("a recursive flatMap loop reuses its finished futures, never one still held, and none outlives the run")
    func chainedFuturesRecycled() throws {
        let depth = 100
        let heldLevel = 10
        let ids = Box<[ObjectIdentifier]>([])
        let levels = Box<[Weak<Future<Int>>]>([])
        let pinned = Box<[Pinned<Int>]>([])
        let held = Box<Future<Int>?>(nil)
        let top = Box<Int?>(nil)
        let outlived = Box(-1)
        try LoopThread.withLoop(name: "futures-test") { loop in
            func step(_ remaining: Int, holding: Bool) -> Future<Int> {
                if remaining == 0 { return loop.makeSucceededFuture(depth) }
                let future = loop.nextTurnFuture().flatMap { step(remaining - 1, holding: holding) }
                ids.value.append(ObjectIdentifier(future))
                pinned.value.append(Pinned(future: future))
                levels.value.append(Weak(future))
                // Held: never handed out again. (It also keeps the levels below it, which it
                // reads through, from being reused.)
                if holding && remaining == heldLevel { held.value = future }
                return future
            }
            step(depth, holding: true).whenSuccess { top.value = $0 }
            try loop.run()
            #expect(try held.value!.result?.get() == depth)
            held.value = nil
            // A chain that holds nothing ends with a future kept for reuse; once run() returns,
            // the loop keeps it no more (it would hold the loop).
            step(depth, holding: false).whenSuccess { #expect($0 == depth) }
            try loop.run()
            pinned.value = []
            outlived.value = levels.value.filter { $0.value != nil }.count
        }
        #expect(outlived.value == 0, "futures outlived the loop's run")
        #expect(top.value == depth)
        #expect(ids.value.count == 2 * depth)
        ids.value.removeLast(depth)
        // Levels 99 to 11 take turns with two objects; the held level and the ones below it
        // are their own.
        #expect(Set(ids.value).count < depth / 4, "no future was reused: \(Set(ids.value).count) distinct")
        let heldIndex = depth - heldLevel
        #expect(!ids.value[(heldIndex + 1)...].contains(ids.value[heldIndex]), "a held future was handed out again")
    }

    @Test("a succeeded Future<Void> is made once while the loop runs, works as any other, and the loop lets it go")
    func sharedVoidFuture() throws {
        let log = Box<[String]>([])
        let kept = Box<Weak<Future<Void>>?>(nil)
        try withLoop { loop in
            let before = (loop.makeSucceededFuture(()), loop.makeSucceededFuture(()))
            #expect(before.0 !== before.1, "a future shared while the loop was not running (it would hold the loop)")
            loop.deferToNextTurn {
                let first = loop.makeSucceededFuture(())
                let second = loop.makeSucceededFuture(())
                #expect(first === second)
                kept.value = Weak(first)
                first.whenSuccess { log.value.append("observed") }
                first.map { 5 }.whenSuccess { log.value.append("mapped \($0)") }
                first.flatMap { loop.nextTurnFuture() }.flatMap { second }.whenSuccess { log.value.append("chained") }
                // Made on another thread: a future of its own (the loop's is for its own thread).
                let other = Box<Future<Void>?>(nil)
                let made = DispatchSemaphore(value: 0)
                Thread {
                    other.value = loop.makeSucceededFuture(())
                    made.signal()
                }.start()
                made.wait()
                #expect(other.value !== first)
                #expect(other.value?.isComplete == true)
            }
        }
        #expect(log.value == ["observed", "mapped 5", "chained"])
        #expect(kept.value?.value == nil, "the loop kept its succeeded future after run() returned")
    }

    @Test("nextTurnFuture completes on the next turn, in order with deferred closures, and the loop lets it go")
    func nextTurnFutureOrder() throws {
        let log = Box<[String]>([])
        let dropped = Box<Weak<Future<Void>>?>(nil)
        try withLoop { loop in
            loop.deferToNextTurn { log.value.append("closure 1") }
            loop.nextTurnFuture().whenSuccess { log.value.append("future") }
            loop.deferToNextTurn { log.value.append("closure 2") }
            dropped.value = Weak(loop.nextTurnFuture())  // no one waits for it
            log.value.append("scheduled")
        }
        #expect(log.value == ["scheduled", "closure 1", "future", "closure 2"])
        #expect(dropped.value?.value == nil, "the loop kept the future of a turn that has run")
    }

    @Test("flatMapError on a future that has already completed: recovers an error, passes a value through")
    func flatMapErrorOnCompleted() throws {
        let log = Box<[String]>([])
        try withLoop { loop in
            loop.makeFailedFuture(Failure(code: 3), of: Int.self)
                .flatMapError { error in loop.makeSucceededFuture((error as! Failure).code * 2) }
                .whenSuccess { log.value.append("recovered \($0)") }
            loop.makeSucceededFuture(5)
                .flatMapError { _ in loop.makeSucceededFuture(-1) }
                .whenSuccess { log.value.append("passed \($0)") }
            loop.makeFailedFuture(Failure(code: 4), of: Int.self)
                .flatMapError { _ in loop.makeFailedFuture(Failure(code: 8)) }
                .whenFailure { log.value.append("failed again \(($0 as! Failure).code)") }
        }
        #expect(log.value == ["recovered 6", "passed 5", "failed again 8"])
    }

    @Test("a future linked into a recursive chain still reads, maps and calls back with the outcome")
    func linkedFutureObserved() throws {
        let log = Box<[String]>([])
        try withLoop { loop in
            var promises: [Promise<Void>] = []
            var kept: [Int: Future<Int>] = [:]
            func step(_ remaining: Int) -> Future<Int> {
                if remaining == 0 { return loop.makeSucceededFuture(7) }
                let promise = loop.makePromise(of: Void.self)
                promises.append(promise)
                let future = promise.futureResult.flatMap { step(remaining - 1) }
                kept[remaining] = future  // held, with no callback, so it gets linked
                return future
            }
            step(5).whenSuccess { log.value.append("top \($0)") }
            promises[0].succeed(())
            promises[1].succeed(())
            promises[2].succeed(())
            // Level 4 now links into level 5, level 3 into level 5 too; observe them meanwhile.
            let middle = kept[4]!
            #expect(middle.result == nil && !middle.isComplete)
            middle.whenSuccess { log.value.append("middle \($0)") }
            middle.map { $0 * 10 }.whenSuccess { log.value.append("mapped \($0)") }
            promises[3].succeed(())
            promises[4].succeed(())
            for level in 1...5 {
                #expect(kept[level]!.isComplete)
                #expect((try? kept[level]!.result?.get()) == 7)
            }
            kept[2]!.whenSuccess { log.value.append("late \($0)") }
        }
        // Callbacks of one future run in the order they were added; across futures no order is
        // promised (a linked future's callbacks run with its root's).
        #expect(log.value.sorted() == ["late 7", "mapped 70", "middle 7", "top 7"])
        #expect(log.value.last == "late 7")
    }

    @Test("and, all and fold combine; all fails with the first error")
    func combining() throws {
        let log = Box<[String]>([])
        try withLoop { loop in
            let a = loop.makePromise(of: Int.self), b = loop.makePromise(of: String.self)
            a.futureResult.and(b.futureResult).whenSuccess { log.value.append("and \($0.0) \($0.1)") }
            let parts = (0..<5).map { _ in loop.makePromise(of: Int.self) }
            loop.all(parts.map(\.futureResult)).whenSuccess { log.value.append("all \($0)") }
            loop.makeSucceededFuture(100).fold(parts.map(\.futureResult)) { sum, next in
                loop.makeSucceededFuture(sum + next)
            }
            .whenSuccess { log.value.append("fold \($0)") }
            let failing = [loop.makePromise(of: Int.self), loop.makePromise(of: Int.self)]
            loop.all(failing.map(\.futureResult)).whenFailure {
                log.value.append("all failed \(($0 as! Failure).code)")
            }
            b.succeed("x")
            a.succeed(1)
            for (index, part) in parts.enumerated().reversed() { part.succeed(index) }
            failing[1].fail(Failure(code: 2))
            failing[0].succeed(0)
        }
        #expect(log.value == ["and 1 x", "all [0, 1, 2, 3, 4]", "fold 110", "all failed 2"])
    }

    @Test("a flatMap whose closure returns a pending future of another loop completes on its own loop's thread")
    func flatMapAcrossLoops() throws {
        let seen = Box<(value: Int?, onOwnThread: Bool)>((nil, false))
        let otherLoop = Box<EventLoop?>(nil)
        let otherReady = DispatchSemaphore(value: 0)
        let otherKeepAlive = Box<LoopTimer?>(nil)
        let other = Thread {
            try! LoopThread.withLoop(name: "other-loop") { loop in
                otherLoop.value = loop
                otherKeepAlive.value = loop.schedule(after: .seconds(30)) {}
                otherReady.signal()
                try loop.run()
            }
        }
        other.start()
        otherReady.wait()
        try withLoop { loop in
            let otherPromise = otherLoop.value!.makePromise(of: Int.self)
            let start = loop.makePromise(of: Void.self)
            let keepAlive = Box<LoopTimer?>(loop.schedule(after: .seconds(30)) {})
            let chained = start.futureResult.flatMap { otherPromise.futureResult }
            chained.whenSuccess { seen.value = ($0, loop.isOnLoopThread) }
            // Through post: on the wrong thread, closing the timer would stop the process.
            chained.whenComplete { _ in loop.post { keepAlive.value?.close() } }
            start.succeed(())  // the flatMap's closure runs now; the other loop's future is pending
            otherLoop.value!.post { otherPromise.succeed(7) }
        }
        otherLoop.value!.post { otherKeepAlive.value?.close() }
        while !other.isFinished { usleep(1_000) }
        #expect(seen.value.value == 7)
        #expect(seen.value.onOwnThread, "the chained future's callback ran on the other loop's thread")
    }

    @Test("a promise completed on another thread runs its callbacks on the loop's thread")
    func crossThread() throws {
        let onLoopThread = Box<Bool?>(nil)
        try withLoop { loop in
            let promise = loop.makePromise(of: Int.self)
            promise.futureResult.whenSuccess { _ in onLoopThread.value = loop.isOnLoopThread }
            // Keep the loop alive until the value arrives.
            let keepAlive = loop.schedule(after: .seconds(30)) {}
            promise.futureResult.whenComplete { _ in keepAlive.close() }
            Thread.detachNewThread { promise.succeed(5) }
        }
        #expect(onLoopThread.value == true)
    }

    @Test("a fiber waits for a future without blocking the loop; a cancelled waiter throws")
    func fiberWait() throws {
        let (value, ticks, cancelled) = try withLoop { loop -> (Box<Int>, Box<Int>, Box<Bool>) in
            let value = Box(0), ticks = Box(0), cancelled = Box(false)
            let promise = loop.makePromise(of: Int.self)
            loop.spawn { value.value = try promise.futureResult.wait() }
            loop.spawn {
                for _ in 0..<3 {
                    try Fiber.sleep(for: .milliseconds(1))
                    ticks.value += 1
                }
                promise.succeed(42)
            }
            let never = loop.makePromise(of: Int.self)
            let victim = loop.spawn {
                do { _ = try never.futureResult.wait() } catch is CancellationError { cancelled.value = true }
            }
            loop.spawn {
                Fiber.yield()
                victim.cancel()
                never.succeed(0)  // completing after the waiter left wakes nobody
            }
            return (value, ticks, cancelled)
        }
        #expect(value.value == 42)
        #expect(ticks.value == 3)
        #expect(cancelled.value)
    }

    @Test("I/O through futures: a socketpair ping-pong of 100 rounds, a timer, a file written and read back")
    func io() throws {
        let log = Box<[String]>([])
        let path = "/tmp/spindle-futures-\(getpid()).txt"
        defer { unlink(path) }
        try withLoop { loop in
            var fds: [Int32] = [0, 0]
            _ = socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds)
            let a = try Callbacks.PipeConnection(adopting: fds[0], loop: loop)
            let b = try Callbacks.PipeConnection(adopting: fds[1], loop: loop)
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1, alignment: 1)
            func round(_ n: Int) -> Future<Int> {
                guard n < 100 else { return loop.makeSucceededFuture(n) }
                return a.write([UInt8(n)])
                    .flatMap { b.read(into: buffer) }
                    .flatMap { count in
                        count == 1 && buffer[0] == UInt8(n) ? round(n + 1) : loop.makeFailedFuture(Failure(code: n))
                    }
            }
            round(0).whenComplete { outcome in
                log.value.append("rounds \((try? outcome.get()) ?? -1)")
                buffer.deallocate()
                a.close()
                b.close()
            }
            loop.scheduleFuture(after: .milliseconds(3)).whenSuccess { log.value.append("timer fired") }
            // The bytes of an asynchronous write must outlive it: not a withUnsafeBytes pointer.
            let text = UnsafeMutableRawBufferPointer.allocate(byteCount: 23, alignment: 1)
            text.copyBytes(from: "written through futures".utf8)
            let readBack = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 1)
            FileSystem.open(path, flags: O_WRONLY | O_CREAT | O_TRUNC, on: loop)
                .flatMap { fd in
                    FileSystem.write(fd, UnsafeRawBufferPointer(text), on: loop).flatMap { _ in
                        FileSystem.close(fd, on: loop)
                    }
                }
                .flatMap { FileSystem.open(path, flags: O_RDONLY, on: loop) }
                .flatMap { fd in
                    FileSystem.read(fd, into: readBack, on: loop).flatMap { count in
                        FileSystem.close(fd, on: loop).map { count }
                    }
                }
                .whenComplete { outcome in
                    let count = (try? outcome.get()) ?? 0
                    log.value.append("file: \(String(decoding: readBack[..<count], as: UTF8.self))")
                    readBack.deallocate()
                    text.deallocate()
                }
        }
        #expect(log.value.contains("rounds 100"))
        #expect(log.value.contains("timer fired"))
        #expect(log.value.contains("file: written through futures"))
    }

    @Test("the other I/O adapters: a pipe connection, a shutdown, datagrams, name resolution, a file's stat and fsync")
    func otherAdapters() throws {
        let log = Box<[String]>([])
        let socketPath = "/tmp/spindle-futures-\(getpid()).sock"
        let filePath = "/tmp/spindle-futures-\(getpid())-stat.txt"
        unlink(socketPath)
        defer { unlink(filePath) }
        try withLoop { loop in
            // A pipe server that reads until the client shuts its side down, then answers with
            // the byte count.
            var listener: Callbacks.PipeListener!
            listener = try Callbacks.PipeListener(path: socketPath, loop: loop) { result in
                let connection = try result.get()
                listener.close()
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 1)
                func drain(_ total: Int) -> Future<Int> {
                    connection.read(into: buffer).flatMap { count in
                        count == 0 ? loop.makeSucceededFuture(total) : drain(total + count)
                    }
                }
                drain(0).flatMap { total in connection.write(Array("\(total) bytes".utf8)) }.whenComplete { _ in
                    buffer.deallocate()
                    connection.close()
                }
            }
            let reply = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 1)
            Callbacks.PipeConnection.connect(to: socketPath, loop: loop)
                .flatMap { client in
                    client.write(Array("eleven byte".utf8)).flatMap { client.shutdown() }.map { client }
                }
                .flatMap { client in client.read(into: reply).map { (client, $0) } }
                .whenComplete { outcome in
                    switch outcome {
                    case .success(let (client, count)):
                        log.value.append("pipe: \(String(decoding: reply[..<count], as: UTF8.self))")
                        client.close()
                    case .failure(let error): log.value.append("pipe failed: \(error)")
                    }
                    reply.deallocate()
                }
            Callbacks.PipeConnection.connect(to: socketPath + ".missing", loop: loop).whenFailure { error in
                log.value.append("missing pipe: \((error as? UVError)?.name ?? "\(error)")")
            }

            let server = try Callbacks.DatagramSocket(address: SocketAddress(ip: "127.0.0.1", port: 0), loop: loop)
            let client = try Callbacks.DatagramSocket(address: SocketAddress(ip: "127.0.0.1", port: 0), loop: loop)
            let datagram = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 1)
            let clientPort = try client.localAddress.port
            server.receive(into: datagram).and(client.send(Array("datagram".utf8), to: try server.localAddress))
                .whenComplete { outcome in
                    if case .success(let ((count, sender), _)) = outcome {
                        log.value.append(
                            "udp: \(String(decoding: datagram[..<count], as: UTF8.self)) from client \(sender.port == clientPort)"
                        )
                    }
                    datagram.deallocate()
                    server.close()
                    client.close()
                }

            loop.resolve("localhost", port: 443).whenSuccess { addresses in
                log.value.append(
                    "localhost: \(addresses.contains { $0.ip == "127.0.0.1" || $0.ip == "::1" }) \(addresses.allSatisfy { $0.port == 443 })"
                )
            }

            let text = UnsafeMutableRawBufferPointer.allocate(byteCount: 5, alignment: 1)
            text.copyBytes(from: "five!".utf8)
            FileSystem.open(filePath, flags: O_WRONLY | O_CREAT | O_TRUNC, on: loop)
                .flatMap { fd in
                    FileSystem.write(fd, UnsafeRawBufferPointer(text), on: loop)
                        .flatMap { _ in FileSystem.fsync(fd, on: loop) }
                        .flatMap { FileSystem.close(fd, on: loop) }
                }
                .flatMap { FileSystem.stat(filePath, on: loop) }
                .whenComplete { outcome in
                    text.deallocate()
                    switch outcome {
                    case .success(let status):
                        log.value.append("stat: \(status.size) bytes, regular \(status.isRegularFile)")
                    case .failure(let error): log.value.append("file failed: \(error)")
                    }
                }
        }
        #expect(
            log.value.sorted() == [
                "localhost: true true", "missing pipe: ENOENT", "pipe: 11 bytes", "stat: 5 bytes, regular true",
                "udp: datagram from client true",
            ])
    }

    /// The operations whose future is handed out again once only the loop holds it.
    enum ReusingOperation: String, CaseIterable, CustomTestStringConvertible {
        case timerFire = "a timer's fire"
        case nextTurn = "nextTurnFuture"
        var testDescription: String { rawValue }
    }

    /// A future kept from malloc: an unowned reference keeps a freed object's memory, so an
    /// identity seen twice is a future handed out again, not a reused address.
    struct Pinned<Value> { unowned let future: Future<Value> }

    /// Operations each started from the callback of the one before, with their futures dropped:
    /// two futures take turns (the one whose callbacks have run is handed to the operation
    /// after next), never a new one each time.
    static func expectAlternating(_ ids: [ObjectIdentifier], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(Set(ids).count == 2, "the dropped futures were not reused: \(ids)", sourceLocation: sourceLocation)
        let alternating = ids.indices.dropFirst(2).allSatisfy { ids[$0] == ids[$0 - 2] }
        #expect(alternating, "\(ids)", sourceLocation: sourceLocation)
    }

    @Test(
        "a future is handed out again once only the loop holds it, never one still seen",
        arguments: ReusingOperation.allCases)
    func operationReusesItsFuture(_ operation: ReusingOperation) throws {
        let ids = Box<[ObjectIdentifier]>([])
        let pinned = Box<[Pinned<Void>]>([])
        let held = Box<[Future<Void>]>([])
        let log = Box<[String]>([])
        try withLoop { loop in
            let timer = LoopTimer(loop: loop) { _ in }
            func start() -> Future<Void> {
                switch operation {
                case .timerFire: timer.fire(after: .zero)
                case .nextTurn: loop.nextTurnFuture()
                }
            }
            // Dropped by the caller: the loop keeps it once its callbacks have run, and an
            // operation started after that gets it back, pending. The next operation starts
            // from its callback, so steps alternate between two futures.
            func step(_ remaining: Int) -> Future<Void> {
                guard remaining > 0 else { return loop.makeSucceededFuture(()) }
                let future = start()
                ids.value.append(ObjectIdentifier(future))
                pinned.value.append(Pinned(future: future))
                #expect(!future.isComplete)
                return future.flatMap { step(remaining - 1) }
            }
            step(4).whenSuccess {
                log.value.append("dropped: done")
                // Held by the caller: never handed out again, and it stays succeeded.
                func heldStep(_ remaining: Int) -> Future<Void> {
                    guard remaining > 0 else { return loop.makeSucceededFuture(()) }
                    let future = start()
                    held.value.append(future)
                    return future.flatMap { heldStep(remaining - 1) }
                }
                heldStep(3).whenSuccess {
                    log.value.append("held: done")
                    // Two callbacks: the second still reads the outcome after the first started
                    // the operation again.
                    let future = start()
                    future.whenSuccess {
                        start().whenSuccess {
                            log.value.append("after")
                            timer.close()
                        }
                    }
                    future.whenComplete { log.value.append("second callback: \($0)") }
                }
            }
        }
        #expect(ids.value.count == 4)
        Self.expectAlternating(ids.value)
        #expect(Set(held.value.map(ObjectIdentifier.init)).count == 3)
        #expect(held.value.allSatisfy { if case .success? = $0.result { true } else { false } })
        #expect(log.value == ["dropped: done", "held: done", "second callback: success()", "after"])
    }

    @Test(
        "a read's future is handed out again once only the loop holds it, never a held or failed one; an immediate write comes back succeeded"
    )
    func readReusesItsFuture() throws {
        let ids = Box<[ObjectIdentifier]>([])
        let pinned = Box<[Pinned<Int>]>([])
        let bytes = Box<[UInt8]>([])
        let held = Box<[Future<Int>]>([])
        let log = Box<[String]>([])
        try withLoop { loop in
            func pair() throws -> (Callbacks.PipeConnection, Callbacks.PipeConnection) {
                var fds: [Int32] = [0, 0]
                _ = socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds)
                return (
                    try Callbacks.PipeConnection(adopting: fds[0], loop: loop),
                    try Callbacks.PipeConnection(adopting: fds[1], loop: loop)
                )
            }
            let (a, b) = try pair()
            let (c, d) = try pair()
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1, alignment: 1)
            let source = UnsafeMutableRawBufferPointer.allocate(byteCount: 6, alignment: 1)
            source.copyBytes(from: [1, 2, 3, 4, 5, 6])
            // Dropped by the caller: kept by the loop once its callbacks have run, and handed
            // to the read after next (each read starts from the callback of the one before).
            func step(_ remaining: Int) -> Future<Int> {
                guard remaining > 0 else { return loop.makeSucceededFuture(0) }
                let read = a.read(into: buffer)
                ids.value.append(ObjectIdentifier(read))
                pinned.value.append(Pinned(future: read))
                #expect(!read.isComplete)
                return read.flatMap { count in
                    bytes.value.append(contentsOf: buffer[..<count])
                    return step(remaining - 1)
                }
            }
            loop.nextTurnFuture().flatMap {
                // The kernel takes six bytes at once: the write is done when it returns, and its
                // future is the loop's one succeeded Future<Void>.
                let write = b.write(UnsafeRawBufferPointer(source))
                #expect(write === loop.makeSucceededFuture(()))
                return write
            }.flatMap { step(3) }.flatMap { _ in
                // Held by the caller: never handed out again, and each keeps its own value.
                let first = a.read(into: buffer)
                held.value.append(first)
                return first.flatMap { _ in
                    bytes.value.append(buffer[0])
                    let second = a.read(into: buffer)
                    held.value.append(second)
                    return second.map { _ in bytes.value.append(buffer[0]) }
                }
            }.whenSuccess {
                // Failed (its connection closed under it) and dropped: not kept for the next
                // read, which starts from its callback and succeeds on its own future.
                c.read(into: buffer).whenFailure { error in
                    log.value.append("failed: \(error)")
                    a.read(into: buffer).whenSuccess { count in
                        log.value.append("read \(count) byte: \(buffer[0])")
                        for connection in [a, b, c, d] { connection.close() }
                        buffer.deallocate()
                        source.deallocate()
                    }
                }
                c.close()
            }
        }
        #expect(ids.value.count == 3)
        Self.expectAlternating(ids.value)
        #expect(bytes.value == [1, 2, 3, 4, 5])
        #expect(held.value.count == 2 && held.value[0] !== held.value[1])
        #expect(held.value.map { try? $0.result?.get() } == [1, 1])
        #expect(log.value.count == 2 && log.value[0].contains("ECANCELED"), "\(log.value)")
        #expect(log.value.last == "read 1 byte: 6")
    }

    @Test("a timer's own callback, set after fire(after:), replaces the fire's; a later fire takes over again")
    func timerCallbackAfterFire() throws {
        let log = Box<[String]>([])
        try withLoop { loop in
            let timer = LoopTimer(loop: loop) { _ in log.value.append("init callback") }
            timer.fire(after: .zero).whenSuccess {
                log.value.append("fire 1")
                timer.setCallback { timer in
                    log.value.append("own callback")
                    // Once only: were this callback still the timer's, the fire below would
                    // call it again instead of completing its future.
                    if log.value.filter({ $0 == "own callback" }).count > 1 { return timer.close() }
                    timer.fire(after: .zero).whenSuccess {
                        log.value.append("fire 2")
                        timer.close()
                    }
                }
                timer.start(after: .zero)
            }
        }
        #expect(log.value == ["fire 1", "own callback", "fire 2"])
    }

    @Test(
        "a fire that can no longer happen fails with ECANCELED, saying why: stopped, closed, callback replaced, fired again"
    )
    func cancelledFires() throws {
        let log = Box<[String]>([])
        func record(_ name: String) -> (Result<Void, any Error>) -> Void {
            { outcome in
                switch outcome {
                case .success: log.value.append("\(name): fired")
                case .failure(let error): log.value.append("\(name): \(error)")
                }
            }
        }
        try withLoop { loop in
            let stopped = LoopTimer(loop: loop) { _ in }
            stopped.fire(after: .seconds(60)).whenComplete(record("stopped"))
            stopped.stop()
            stopped.close()

            let closed = LoopTimer(loop: loop) { _ in }
            closed.fire(after: .seconds(60)).whenComplete(record("closed"))
            closed.close()

            let replaced = LoopTimer(loop: loop) { _ in }
            replaced.fire(after: .seconds(60)).whenComplete(record("replaced"))
            replaced.setCallback { timer in
                log.value.append("replaced: own callback")
                timer.close()
            }
            replaced.start(after: .milliseconds(1))

            // Fired again before it fired: the first fails, the timer fires once, for the second.
            let again = LoopTimer(loop: loop) { _ in }
            again.fire(after: .seconds(60)).whenComplete(record("first"))
            again.fire(after: .milliseconds(1)).whenComplete { outcome in
                record("second")(outcome)
                again.close()
            }
        }
        #expect(
            log.value == [
                "stopped: LoopTimer.fire(after:): the timer was stopped: ECANCELED: operation canceled",
                "closed: LoopTimer.fire(after:): the timer was closed: ECANCELED: operation canceled",
                "replaced: LoopTimer.fire(after:): the timer's callback was replaced: ECANCELED: operation canceled",
                "first: LoopTimer.fire(after:): fire(after:) was called again before the timer fired: ECANCELED: operation canceled",
                "replaced: own callback", "second: fired",
            ])
    }

    @Test("a refused connection fails the future with the UVError")
    func refused() throws {
        let message = Box("")
        try withLoop { loop in
            let probe = TCPSocket(loop: loop)
            try probe.bind(SocketAddress(ip: "127.0.0.1", port: 0))
            let address = try probe.localAddress
            probe.close()
            Callbacks.TCPConnection.connect(to: address, loop: loop).whenFailure { message.value = "\($0)" }
        }
        #expect(message.value == "uv_tcp_connect: ECONNREFUSED: connection refused")
    }

    @Test("a promise dropped without being completed is reported with where it was made")
    func droppedPromise() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            try! LoopThread.withLoop { loop in
                let promise = loop.makePromise(of: Int.self)
                promise.futureResult.whenSuccess { _ in }
            }
            exit(0)
        }
        let stderr = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(
            stderr.contains(
                "a Future was dropped before its Promise was completed (made at SpindleFuturesTests/FutureTests.swift:")
        )
    }

    @Test(
        "recursive chains that complete report no dropped future, with the loop running or not; one really dropped is")
    func completedChainsReportNothing() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            try! LoopThread.withLoop { loop in
                // Each shape hands a level's job on in its own way: to a bare future (the level
                // is recycled, or let go when the loop is not running), through a held level
                // (cascade), and through flatMapError.
                var promises: [Promise<Void>] = []
                var held: [Future<Int>] = []
                func step(_ remaining: Int, holding: Bool) -> Future<Int> {
                    if remaining == 0 { return loop.makeSucceededFuture(0) }
                    let promise = loop.makePromise(of: Void.self)
                    promises.append(promise)
                    let future = promise.futureResult.flatMap { step(remaining - 1, holding: holding) }
                    if holding && remaining % 3 == 0 { held.append(future) }
                    return future
                }
                func recovering(_ remaining: Int) -> Future<Int> {
                    if remaining == 0 { return loop.makeSucceededFuture(0) }
                    let promise = loop.makePromise(of: Int.self)
                    promises.append(loop.makePromise(of: Void.self))
                    promises.last!.futureResult.whenSuccess { promise.fail(Failure(code: remaining)) }
                    return promise.futureResult.flatMapError { _ in recovering(remaining - 1) }
                }
                var done = 0
                step(50, holding: false).whenSuccess { _ in done += 1 }
                step(50, holding: true).whenSuccess { _ in done += 1 }
                recovering(50).whenSuccess { _ in done += 1 }
                var index = 0
                while index < promises.count {  // completed with the loop not running
                    promises[index].succeed(())
                    index += 1
                }
                loop.deferToNextTurn {  // and with it running
                    step(50, holding: false).whenSuccess { _ in done += 1 }
                    step(50, holding: true).whenSuccess { _ in done += 1 }
                    recovering(50).whenSuccess { _ in done += 1 }
                    while index < promises.count {
                        promises[index].succeed(())
                        index += 1
                    }
                }
                try loop.run()
                precondition(done == 6, "\(done) of 6 chains completed")
                held = []
                _ = loop.makePromise(of: Int.self)  // the one really dropped
            }
            exit(0)
        }
        let stderr = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        let reports = stderr.components(separatedBy: "a Future was dropped before its Promise was completed").count - 1
        #expect(reports == 1, "\(stderr)")
    }

    @Test("chaining onto a pending future from another thread stops the process, saying so")
    func chainedFromAnotherThread() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let loop = EventLoop()
            let pending = Box(loop.makePromise(of: Int.self).futureResult)
            _ = try? LoopThread.run(name: "intruder") {
                _ = pending.value.flatMap { loop.makeSucceededFuture($0 + 1) }
            }
        }
        let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(text.contains("EventLoop used from the wrong thread: chaining a pending Future"))
        #expect(text.contains("\"intruder\""))
    }

    @Test("a timer's fire, a next turn or a read started from another thread stops the process, naming it")
    func reusingOperationsFromAnotherThread() async {
        // Each takes the loop's spare future first: the check comes before that, not after.
        let fire = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let loop = EventLoop()
            let timer = Box(LoopTimer(loop: loop) { _ in })
            _ = try? LoopThread.run(name: "intruder") { _ = timer.value.fire(after: .zero) }
        }
        let nextTurn = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let loop = EventLoop()
            _ = try? LoopThread.run(name: "intruder") { _ = loop.nextTurnFuture() }
        }
        let read = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let loop = EventLoop()
            var fds: [Int32] = [0, 0]
            _ = socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds)
            let connection = Box(try! Callbacks.PipeConnection(adopting: fds[0], loop: loop))
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1, alignment: 1)
            _ = try? LoopThread.run(name: "intruder") { _ = connection.value.read(into: buffer) }
        }
        let named = [
            (fire, "LoopTimer.fire(after:)"), (nextTurn, "EventLoop.nextTurnFuture()"),
            (read, "StreamConnection.read(into:)"),
        ]
        for (result, operation) in named {
            let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
            #expect(text.contains("EventLoop used from the wrong thread: \(operation)"), "\(text)")
        }
    }

    @Test("completing a promise twice stops the process, saying so")
    func completedTwice() async {
        await #expect(processExitsWith: .failure) {
            try! LoopThread.withLoop { loop in
                let promise = loop.makePromise(of: Int.self)
                promise.succeed(1)
                promise.succeed(2)
            }
        }
    }
}
