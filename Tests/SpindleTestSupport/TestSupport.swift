import Glibc
import SpindleLoop
import Testing

/// Runs `body` alone among the callers of this function (in sanitizer builds; at once
/// otherwise). Under ASan or TSan every live fiber costs sanitizer mappings of its own (TSan: a
/// 512 KiB shadow stack), and tests that hold thousands of fibers at once, running in parallel,
/// could together pass vm.max_map_count: TSan then stops the process ("out of memory: failed
/// to allocate ... shadow stack").
public func withManyFibers<T>(_ body: () throws -> T) rethrows -> T {
    #if SPINDLE_SANITIZERS
    pthread_mutex_lock(&manyFibersLock)
    defer { pthread_mutex_unlock(&manyFibersLock) }
    #endif
    return try body()
}

nonisolated(unsafe) private var manyFibersLock = pthread_mutex_t()

/// A mutable value shared with closures that run on a loop's own thread.
public final class Box<T>: @unchecked Sendable {
    public var value: T
    public init(_ value: T) { self.value = value }
}

/// A weak reference, to see whether an object is still alive.
public struct Weak<T: AnyObject> {
    public weak var value: T?
    public init(_ value: T) { self.value = value }
}

/// Runs `body` on a loop of its own thread (outside Swift concurrency's executors), then runs
/// the loop until it has no work left, and returns what `body` returned.
public func withRunningLoop<T>(_ name: String = "test-loop", _ body: @escaping (EventLoop) throws -> T) throws -> T {
    try LoopThread.withLoop(name: name) { loop in
        let value = try body(loop)
        try loop.run()
        return value
    }
}

/// A seeded random number generator (SplitMix64), for randomised tests that make the same
/// choices on every run.
public struct SeededGenerator: RandomNumberGenerator {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Runs `body` alone among the tests that set the process's warning handler
/// (`SpindleDiagnostics.setWarningHandler`, which `SpindleLogging.bootstrap` also sets): the
/// handler is one per process, and tests run in parallel.
public func withWarningHandlerExclusively<T>(_ body: () throws -> T) rethrows -> T {
    pthread_mutex_lock(&warningHandlerLock)
    defer { pthread_mutex_unlock(&warningHandlerLock) }
    return try body()
}

nonisolated(unsafe) private var warningHandlerLock = pthread_mutex_t()

/// Waits, without asserting anything about time, until `condition` (read on the caller's
/// thread) holds; gives up after a minute, recording an issue, so that a broken build fails
/// instead of hanging.
public func waitUntil(_ what: String, _ condition: () -> Bool) {
    for _ in 0..<60_000 {
        if condition() { return }
        usleep(1_000)
    }
    Issue.record("gave up waiting until \(what)")
}
