import CSpindleSupport
import Glibc

/// A plain OS thread for running an ``EventLoop`` on — one loop per thread, as thread-per-core
/// services do. It is not a Swift concurrency executor thread, so fibers run outside any Task.
public final class LoopThread: @unchecked Sendable {
    private var thread = pthread_t()
    private var body: (() -> Void)?
    private let name: String
    private var joined = false

    /// Starts a thread named `name` (first 15 bytes, as Linux allows) that runs `body`.
    public init(name: String = "spindle-loop", _ body: @escaping () -> Void) {
        self.body = body
        self.name = name
        let context = Unmanaged.passRetained(self).toOpaque()
        let status = pthread_create(
            &thread, nil,
            { raw in
                let me = Unmanaged<LoopThread>.fromOpaque(raw!).takeRetainedValue()
                _ = spindle_set_current_thread_name(me.name)
                me.body!()
                me.body = nil
                return nil
            }, context)
        if status != 0 { fatalError("LoopThread: pthread_create failed: \(String(cString: strerror(status)))") }
    }

    /// Waits for the thread's body to return. Joining twice is allowed.
    public func join() {
        if joined { return }
        joined = true
        pthread_join(thread, nil)
    }

    /// Makes an ``EventLoop`` on a new thread, runs `body` with it there, closes the loop, and
    /// returns `body`'s value (or rethrows its error, or the close's). `body` usually spawns work
    /// and calls `loop.run()`.
    public static func withLoop<T>(name: String = "spindle-loop", _ body: @escaping (EventLoop) throws -> T) throws -> T
    {
        try run(name: name) {
            let loop = EventLoop()
            let value = try body(loop)
            try loop.close()
            return value
        }
    }

    /// Runs `body` on a new thread, waits for it, and returns its value or rethrows its error.
    public static func run<T>(name: String = "spindle-loop", _ body: @escaping () throws -> T) throws -> T {
        let outcome = ResultBox<T>()
        let thread = LoopThread(name: name) { outcome.result = Result { try body() } }
        thread.join()
        return try outcome.result!.get()
    }
}

private final class ResultBox<T>: @unchecked Sendable {
    var result: Result<T, any Error>?
}
