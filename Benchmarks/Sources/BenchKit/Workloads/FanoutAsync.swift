import Foundation
import Glibc
import SpindleAsync
import SpindleCallbacks
import SpindleLoop
import Synchronization

// The fanout workload in Swift async/await — on the loop's executor (`swift-async-loop`) and on
// the default global executor (`swift-async-global`) — and with one OS thread per operation
// (`threads`). libuv calls belong to the loop's thread: async code on the loop calls them
// directly; async code on the global executor hops there with `post` for every step, which is
// what mixing the two costs.

extension FanoutWorkload {
    final class Counter: @unchecked Sendable {
        let done = Atomic<Int>(0)
        let bytes = Atomic<Int>(0)
    }

    /// One operation's awaitable steps on the loop's thread.
    /// Where a timer step's continuation waits for the operation's timer callback.
    final class TimerWaiter: @unchecked Sendable {
        var continuation: UnsafeContinuation<Void, Never>?
    }

    static func loopStep(
        _ variant: String, timer: LoopTimer?, waiter: TimerWaiter?,
        connection: Callbacks.PipeConnection?, byte: UnsafeMutableRawBufferPointer?
    ) async -> Int {
        switch variant {
        case "yield":
            await Task.yield()
            return 0
        case "timer":
            // The timer's callback is set once per operation (see asyncOnLoop); each step only
            // parks its continuation where that callback finds it.
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                waiter!.continuation = continuation
                timer!.start(after: .zero)
            }
            return 0
        default:
            return await withUnsafeContinuation { (continuation: UnsafeContinuation<Int, Never>) in
                connection!.write(UnsafeRawBufferPointer(byte!)) { _ in }
                connection!.read(into: byte!) { result in continuation.resume(returning: (try? result.get()) ?? 0) }
            }
        }
    }

    static func asyncOnLoop(_ variant: String, loop: EventLoop) throws -> Int {
        let executor = LoopExecutor.of(loop)
        let counter = Counter()
        let connections =
            variant == "io" ? try socketPairs(ops / 2) { try Callbacks.PipeConnection(adopting: $0, loop: loop) } : []
        let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: ops, alignment: 1)
        bytes.initializeMemory(as: UInt8.self, repeating: 1)
        defer { bytes.deallocate() }
        for index in 0..<ops {
            let waiter = TimerWaiter()
            let timer = variant == "timer" ? LoopTimer(loop: loop) { _ in waiter.continuation.take()!.resume() } : nil
            let connection = variant == "io" ? connections[index] : nil
            let byte = UncheckedBox(UnsafeMutableRawBufferPointer(rebasing: bytes[index..<(index + 1)]))
            let handles = UncheckedBox((timer, connection))
            Task(executorPreference: executor) {
                var read = 0
                for _ in 0..<steps {
                    read += await loopStep(
                        variant, timer: handles.value.0, waiter: waiter, connection: handles.value.1, byte: byte.value)
                }
                counter.bytes.add(read, ordering: .relaxed)
                counter.done.add(1, ordering: .relaxed)
                handles.value.0?.close()
            }
        }
        try loop.run()
        for connection in connections { connection.close() }
        try loop.runOnce(blocking: false)
        if variant == "io", counter.bytes.load(ordering: .relaxed) != ops * steps {
            throw BenchError.incorrect("swift-async-loop read \(counter.bytes.load(ordering: .relaxed)) bytes")
        }
        return counter.done.load(ordering: .relaxed)
    }

    static func asyncOnGlobal(_ variant: String, loop: EventLoop) throws -> Int {
        let counter = Counter()
        let connections =
            variant == "io" ? try socketPairs(ops / 2) { try Callbacks.PipeConnection(adopting: $0, loop: loop) } : []
        let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: ops, alignment: 1)
        bytes.initializeMemory(as: UInt8.self, repeating: 1)
        defer { bytes.deallocate() }
        let timers = variant == "timer" ? (0..<ops).map { _ in LoopTimer(loop: loop) { _ in } } : []
        let shared = UncheckedBox((loop, timers, connections))
        for index in 0..<ops {
            let byte = UncheckedBox(UnsafeMutableRawBufferPointer(rebasing: bytes[index..<(index + 1)]))
            Task {
                var read = 0
                for _ in 0..<steps {
                    switch variant {
                    case "yield":
                        await Task.yield()
                    case "timer":
                        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                            let continuation = UncheckedBox(continuation)
                            shared.value.0.post {
                                let timer = shared.value.1[index]
                                timer.setCallback { _ in continuation.value.resume() }
                                timer.start(after: .zero)
                            }
                        }
                    default:
                        read += await withUnsafeContinuation { (continuation: UnsafeContinuation<Int, Never>) in
                            let continuation = UncheckedBox(continuation)
                            shared.value.0.post {
                                let connection = shared.value.2[index]
                                connection.write(UnsafeRawBufferPointer(byte.value)) { _ in }
                                connection.read(into: byte.value) { result in
                                    continuation.value.resume(returning: (try? result.get()) ?? 0)
                                }
                            }
                        }
                    }
                }
                counter.bytes.add(read, ordering: .relaxed)
                if counter.done.add(1, ordering: .relaxed).newValue == ops {
                    shared.value.0.post { shared.value.0.stop() }
                }
            }
        }
        try loop.run(.untilStopped)
        for timer in timers { timer.close() }
        for connection in connections { connection.close() }
        try loop.runOnce(blocking: false)
        if variant == "io", counter.bytes.load(ordering: .relaxed) != ops * steps {
            throw BenchError.incorrect("swift-async-global read \(counter.bytes.load(ordering: .relaxed)) bytes")
        }
        return counter.done.load(ordering: .relaxed)
    }

    /// One OS thread (64 KiB stack, like a fiber's) per operation, with blocking calls: yield is
    /// `sched_yield`, the timer a zero `nanosleep`, io a blocking write and read.
    static func threads(_ variant: String) throws -> Int {
        var fds = [Int32](repeating: -1, count: variant == "io" ? ops : 0)
        if variant == "io" {
            for pair in 0..<(ops / 2) {
                var two: [Int32] = [0, 0]
                guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &two) == 0 else {
                    throw BenchError.tool("socketpair: \(String(cString: strerror(errno)))")
                }
                (fds[2 * pair], fds[2 * pair + 1]) = (two[0], two[1])
            }
        }
        defer { for fd in fds { Glibc.close(fd) } }
        let counter = Counter()
        let descriptors = UncheckedBox(fds)
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        pthread_attr_setstacksize(&attributes, 64 << 10)
        defer { pthread_attr_destroy(&attributes) }
        var threads: [pthread_t] = []
        threads.reserveCapacity(ops)
        for index in 0..<ops {
            let work = Unmanaged.passRetained(
                UncheckedBox(
                    {
                        var byte: UInt8 = 1
                        var read = 0
                        for _ in 0..<steps {
                            switch variant {
                            case "yield": sched_yield()
                            case "timer":
                                var zero = timespec(tv_sec: 0, tv_nsec: 0)
                                nanosleep(&zero, nil)
                            default:
                                let fd = descriptors.value[index]
                                _ = Glibc.write(fd, &byte, 1)
                                read += max(0, Glibc.read(fd, &byte, 1))
                            }
                        }
                        counter.bytes.add(read, ordering: .relaxed)
                        counter.done.add(1, ordering: .relaxed)
                    } as () -> Void))
            var thread = pthread_t()
            let status = pthread_create(
                &thread, &attributes,
                { raw in
                    Unmanaged<UncheckedBox<() -> Void>>.fromOpaque(raw!).takeRetainedValue().value()
                    return nil
                }, work.toOpaque())
            guard status == 0 else {
                work.release()
                for thread in threads { pthread_join(thread, nil) }
                throw BenchError.tool("pthread_create: \(String(cString: strerror(status))) after \(index) threads")
            }
            threads.append(thread)
        }
        for thread in threads { pthread_join(thread, nil) }
        if variant == "io", counter.bytes.load(ordering: .relaxed) != ops * steps {
            throw BenchError.incorrect("threads read \(counter.bytes.load(ordering: .relaxed)) bytes")
        }
        return counter.done.load(ordering: .relaxed)
    }
}

/// Hands a value to code that runs on one thread at a time (the loop's, or a job's).
final class UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
