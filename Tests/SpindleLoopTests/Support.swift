import SpindleLoop

/// Each test gets a loop on a thread of its own, outside Swift concurrency's executors (fibers
/// never run inside a Task's job).
func withLoop<T>(_ body: @escaping (EventLoop) throws -> T) throws -> T {
    try LoopThread.withLoop(name: "test-loop", body)
}

/// Counts loop iterations with a prepare watcher (runs once per iteration, before the poll).
final class IterationCounter {
    private(set) var count = 0
    let watcher: LoopWatcher

    init(loop: EventLoop) {
        watcher = LoopWatcher(loop: loop, kind: .prepare)
        watcher.keepsLoopAlive = false
        watcher.start { [unowned self] in self.count += 1 }
    }
}

/// A mutable value shared with closures that run on the loop's own thread (posted work is
/// `@Sendable` because it may be posted from anywhere; it still runs on one thread).
final class Box<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}
