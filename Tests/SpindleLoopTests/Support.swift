import SpindleLoop

/// Makes a loop on a new thread, runs `body` there, closes the loop, and returns what `body`
/// returned.
func withLoop<T>(_ body: @escaping (EventLoop) throws -> T) throws -> T {
    try LoopThread.run(name: "test-loop") {
        let loop = EventLoop()
        let value = try body(loop)
        try loop.close()
        return value
    }
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
