import Spindle
import SpindleLoop
@_exported import SpindleTestSupport

/// Each test gets a loop on a thread of its own, outside Swift concurrency's executors (fibers
/// never run inside a Task's job).
func withLoop<T>(_ body: @escaping (EventLoop) throws -> T) throws -> T {
    try LoopThread.withLoop(name: "test-loop", body)
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

/// Recurses with a 1 KiB frame until the stack runs out.
@inline(never)
func exhaustStack(_ depth: Int) -> Int {
    var frame = [UInt8](repeating: 0, count: 0)
    return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 1024) { buffer in
        buffer.initialize(repeating: UInt8(truncatingIfNeeded: depth))
        frame.append(buffer[depth % 1024])
        return exhaustStack(depth + 1) + Int(frame[0])
    }
}
