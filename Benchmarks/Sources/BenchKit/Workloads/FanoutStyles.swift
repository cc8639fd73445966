import Glibc
import SpindleCallbacks
import SpindleFutures
import SpindleLoop

// The fanout workload in callback and future style, on the same loop as the fibers. Each is
// written as a careful engineer would write it in that style: the callbacks keep one object per
// operation and hand libuv closures made once per operation; the futures chain one future per
// step, as future code does.

extension FanoutWorkload {
    /// One operation's state for the callback executor.
    final class CallbackOp {
        var remaining = FanoutWorkload.steps
        // Non-optional: passing a closure out of an Optional costs a reabstraction thunk (an
        // allocation) every time.
        var step: () -> Void = {}
    }

    // MARK: callbacks

    /// Each step defers the next to the following loop turn.
    static func callbacksYield(loop: EventLoop) throws -> Int {
        var completed = 0
        for _ in 0..<ops {
            let op = CallbackOp()
            op.step = {  // holds the op until its last step breaks the cycle
                op.remaining -= 1
                if op.remaining == 0 {
                    completed += 1
                    op.step = {}  // breaks the cycle: the op goes with its last step
                } else {
                    loop.deferToNextTurn(op.step)
                }
            }
            loop.deferToNextTurn(op.step)
        }
        try loop.run()
        return completed
    }

    /// Each step restarts the operation's own zero-delay timer.
    static func callbacksTimer(loop: EventLoop) throws -> Int {
        var completed = 0
        for timer in makeTimers(loop: loop) {
            var remaining = steps
            timer.setCallback { timer in
                remaining -= 1
                if remaining == 0 {
                    completed += 1
                    timer.close()
                } else {
                    timer.start(after: .zero)
                }
            }
            timer.start(after: .zero)
        }
        try loop.run()
        return completed
    }

    /// One stopped timer per operation, made before any operation starts, as the io variant
    /// makes its connections: libuv's timer heap then walks the same dense handles in every
    /// style. Made one by one between a future chain's first objects, the timers spread
    /// through the heap, and where glibc put them after the trials before decided the futures
    /// row (2.1x to 3.5x callbacks over runs, against 1.8x with the timers together, which is
    /// also its instruction ratio).
    static func makeTimers(loop: EventLoop) -> [LoopTimer] {
        (0..<ops).map { _ in LoopTimer(loop: loop) { _ in } }
    }

    /// Each step writes one byte into its end of a socketpair and reads its partner's byte.
    static func callbacksIO(loop: EventLoop) throws -> Int {
        var completed = 0, bytesRead = 0
        try runIO("callbacks", loop: loop, bytesRead: { bytesRead }) { connection, byte in
            var remaining = steps
            var onRead: (Result<Int, UVError>) throws -> Void = { _ in }  // not Optional: see CallbackOp
            let onWrite: (UVError?) throws -> Void = { error in if let error { throw error } }
            onRead = { result in
                bytesRead += try result.get()
                remaining -= 1
                if remaining == 0 {
                    completed += 1
                    onRead = { _ in }  // breaks the cycle
                    return
                }
                connection.write(UnsafeRawBufferPointer(byte), onWrite)
                connection.read(into: byte, onRead)
            }
            connection.write(UnsafeRawBufferPointer(byte), onWrite)
            connection.read(into: byte, onRead)
        }
        return completed
    }

    // MARK: futures

    package static func futuresYield(loop: EventLoop) throws -> Int {
        var completed = 0
        func step(_ remaining: Int) -> Future<Void> {
            remaining == 0 ? loop.makeSucceededFuture(()) : loop.nextTurnFuture().flatMap { step(remaining - 1) }
        }
        for _ in 0..<ops { step(steps).whenSuccess { completed += 1 } }
        try loop.run()
        return completed
    }

    package static func futuresTimer(loop: EventLoop) throws -> Int {
        var completed = 0
        for timer in makeTimers(loop: loop) {
            func step(_ remaining: Int) -> Future<Void> {
                remaining == 0 ? loop.makeSucceededFuture(()) : timer.fire(after: .zero).flatMap { step(remaining - 1) }
            }
            step(steps).whenSuccess {
                completed += 1
                timer.close()
            }
        }
        try loop.run()
        return completed
    }

    package static func futuresIO(loop: EventLoop) throws -> Int {
        var completed = 0, bytesRead = 0
        try runIO("futures", loop: loop, bytesRead: { bytesRead }) { connection, byte in
            func step(_ remaining: Int) -> Future<Void> {
                guard remaining > 0 else { return loop.makeSucceededFuture(()) }
                return connection.write(UnsafeRawBufferPointer(byte))
                    .flatMap { connection.read(into: byte) }
                    .flatMap { count in
                        bytesRead += count
                        return step(remaining - 1)
                    }
            }
            step(steps).whenSuccess { completed += 1 }
        }
        return completed
    }

    /// The io variant's set-up for the styles on `Callbacks.PipeConnection`: 5,000 socketpairs
    /// (two connections, two operations a pair) and one byte of buffer per operation. Runs
    /// `start` for each operation (its connection and byte), runs the loop, closes the
    /// connections and checks that `bytesRead()` reached one byte per step.
    static func runIO(
        _ executor: String, loop: EventLoop, bytesRead: () -> Int,
        _ start: (Callbacks.PipeConnection, UnsafeMutableRawBufferPointer) -> Void
    ) throws {
        let connections = try socketPairs(ops / 2) { try Callbacks.PipeConnection(adopting: $0, loop: loop) }
        let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: ops, alignment: 1)
        bytes.initializeMemory(as: UInt8.self, repeating: 1)
        defer { bytes.deallocate() }
        for (index, connection) in connections.enumerated() {
            start(connection, UnsafeMutableRawBufferPointer(rebasing: bytes[index..<(index + 1)]))
        }
        try loop.run()
        for connection in connections { connection.close() }
        try loop.runOnce(blocking: false)
        guard bytesRead() == ops * steps else {
            throw BenchError.incorrect("\(executor) read \(bytesRead()) bytes, expected \(ops * steps)")
        }
    }

    /// `pairs` socketpairs, each end made into a connection by `make` (two connections a pair).
    static func socketPairs<Connection>(_ pairs: Int, _ make: (Int32) throws -> Connection) throws -> [Connection] {
        var connections: [Connection] = []
        connections.reserveCapacity(pairs * 2)
        for _ in 0..<pairs {
            var fds: [Int32] = [0, 0]
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else {
                throw BenchError.tool("socketpair: \(String(cString: strerror(errno))) (raise ulimit -n)")
            }
            connections.append(try make(fds[0]))
            connections.append(try make(fds[1]))
        }
        return connections
    }
}
