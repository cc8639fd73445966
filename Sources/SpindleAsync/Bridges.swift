import Spindle
import SpindleLoop

/// The outcome of work handed across the fiber/async boundary.
final class BridgeBox<T>: @unchecked Sendable {
    var outcome: Result<T, any Error>?
}

extension Fiber {
    /// Runs `operation` as a Task on the fiber's loop (its ``LoopExecutor`` is the task's
    /// executor preference) and parks the fiber — not the thread — until the Task ends; returns
    /// its value or throws its error. Other fibers and async code keep running meanwhile.
    ///
    /// Cancelling the fiber cancels the Task; the fiber still waits for the Task to end (it may
    /// be using what the fiber handed it), then throws what it threw, or `CancellationError`.
    public static func awaitAsync<T>(_ operation: @escaping @Sendable () async throws -> T) throws -> T {
        let me = Fiber.current
        let loop = me.loop
        let executor = LoopExecutor.of(loop)
        let box = BridgeBox<T>()
        executor.beginBridge()
        defer { executor.endBridge() }
        let task = Task(executorPreference: executor) {
            let outcome: Result<T, any Error>
            do { outcome = .success(try await operation()) } catch { outcome = .failure(error) }
            let transfer = UncheckedSendable(outcome)
            let finish: @Sendable () -> Void = {
                box.outcome = transfer.value
                if me.isParked(waitingFor: box) { me.wake(.ready) }
            }
            if loop.isOnLoopThread { finish() } else { loop.post(finish) }
        }
        var cancelled = false
        while box.outcome == nil {
            let reason = Fiber.park(waitingFor: box, .async)
            if reason == .cancelled || reason == .timedOut, !cancelled {
                cancelled = true
                task.cancel()
            }
        }
        return try box.outcome.unsafelyUnwrapped.get()
    }
}

extension EventLoop {
    /// Runs `body` in a new fiber on this loop and returns its value (or rethrows its error) to
    /// the awaiting async code, which suspends meanwhile. The loop must be running (for example
    /// on a ``/SpindleLoop/LoopThread`` with `run(.untilStopped)`).
    public func withFiber<T>(name: String? = nil, _ body: @escaping () throws -> T) async throws -> T {
        let work = UncheckedSendable(body)
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let resume = UncheckedSendable(continuation)
            post {
                self.spawnDetached(name: name) {
                    do {
                        let value = try work.value()
                        resume.value.resume(returning: UncheckedSendable(value).value)
                    } catch {
                        resume.value.resume(throwing: error)
                    }
                }
            }
        }
    }
}

/// Moves a value to the loop's thread, where it is used alone.
struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
