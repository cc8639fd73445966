import Spindle
import SpindleLoop

extension EventLoop {
    /// Runs `body` in a new fiber on this loop and returns a future of its value (or error).
    /// Safe from any thread.
    ///
    /// - Called on a loop's thread (in a fiber or a callback of any loop), the future belongs
    ///   to *that* loop: its callbacks run there, and a fiber there can ``Future/wait()`` for it.
    ///   The outcome hops back through that loop's wakeup.
    /// - Called from a thread that runs no loop, the future belongs to this loop: that thread
    ///   can block for it with ``Future/wait()``, or this loop's fibers and callbacks chain onto it.
    /// - If this loop is closed or closes before `body` could start, the future fails with
    ///   `LoopError.closed`.
    public func submit<T: Sendable>(
        name: String? = nil, file: StaticString = #fileID, line: UInt = #line,
        _ body: @escaping @Sendable () throws -> T
    ) -> Future<T> {
        let home = EventLoop.current ?? self
        let promise = home.makePromise(of: T.self, file: file, line: line)
        let queued = tryPost {
            guard !self.isClosing else { return promise.fail(LoopError.closed) }
            self.spawnDetached(name: name) { promise.complete(Result { try body() }) }
        }
        if !queued { promise.fail(LoopError.closed) }
        return promise.futureResult
    }
}
