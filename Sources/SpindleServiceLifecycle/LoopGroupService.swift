import ServiceLifecycle
import Spindle
import SpindleLoop

/// A `LoopGroup` as a swift-service-lifecycle `Service`: it runs until the service
/// group shuts down gracefully (on SIGTERM, say), then shuts the loop group down — every fiber
/// cancelled and waited for, every handle closed — within `shutdownTimeout`.
///
/// ```swift
/// let loops = LoopGroup()
/// _ = try loops.serveTCP(on: address) { connection in serve(connection) }
/// let services = ServiceGroup(
///     services: [LoopGroupService(loops)],
///     gracefulShutdownSignals: [.sigterm, .sigint],
///     logger: logger)
/// try await services.run()
/// ```
///
/// If a loop cannot stop in time, `run()` throws the group's `LoopGroup.ShutdownError`, which
/// names the loop and the fibers that hold it.
public struct LoopGroupService: Service {
    /// The loop group this service owns.
    public let group: LoopGroup
    /// How long the group's fibers get to finish once shutdown begins.
    public let shutdownTimeout: Duration

    /// A service that owns `group` and gives its fibers `shutdownTimeout` to finish.
    public init(_ group: LoopGroup, shutdownTimeout: Duration = .seconds(10)) {
        self.group = group
        self.shutdownTimeout = shutdownTimeout
    }

    /// Waits for graceful shutdown (or for the task to be cancelled), then shuts the group down.
    public func run() async throws {
        try? await gracefulShutdown()  // throws only when the task is cancelled: stop then too
        // The group's shutdown blocks its caller while the loops finish: on a thread of its own,
        // not one of Swift concurrency's.
        let group = self.group
        let timeout = shutdownTimeout
        var thread: LoopThread?
        defer { thread?.join() }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            thread = LoopThread(name: "spindle-shutdown") {
                do {
                    try group.shutdown(within: timeout)
                    continuation.resume()
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }
}
