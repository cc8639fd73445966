import Spindle
import SpindleLoop

/// Makes a loop on a new thread (outside Swift concurrency's executors: fibers never run inside a
/// Task's job), runs `body` there, closes the loop, and returns what `body` returned.
func withLoop<T>(_ body: @escaping (EventLoop) throws -> T) throws -> T {
    try LoopThread.run(name: "test-loop") {
        let loop = EventLoop()
        let value = try body(loop)
        try loop.close()
        return value
    }
}

/// A counter of deinitialisations, for leak checks.
final class DeinitCounter: @unchecked Sendable {
    var count = 0
}

final class Tracked {
    let counter: DeinitCounter
    init(_ counter: DeinitCounter) { self.counter = counter }
    deinit { counter.count += 1 }
}
