import SpindleLoop

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
