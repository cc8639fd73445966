@_exported import SpindleLoop

/// Closure-style asynchronous I/O on a ``/SpindleLoop/EventLoop``: one closure per operation,
/// called on the loop's thread, with no hop in between — what a careful engineer writes by hand
/// on libuv, with Swift types.
///
/// The loop layer already speaks callbacks for timers (``/SpindleLoop/EventLoop/schedule(after:_:)``,
/// ``/SpindleLoop/LoopTimer``), next-turn deferral (``/SpindleLoop/EventLoop/deferToNextTurn(_:)``),
/// files (``/SpindleLoop/FileSystem``) and name resolution (``/SpindleLoop/Resolver``); this module
/// adds per-operation streams and datagrams: ``TCPListener``, ``TCPConnection``,
/// ``PipeListener``, ``PipeConnection``, ``DatagramSocket``.
///
/// Rules every type here keeps:
/// - Every operation's closure is called exactly once: with the result, with the error as a
///   ``/SpindleLoop/UVError``, or with `ECANCELED` when the object is closed first. An object
///   keeps itself alive while one of its operations is pending, so dropping it early loses
///   nothing.
/// - Completion closures may throw; what they throw goes to ``uncaughtErrorHandler`` and the
///   loop carries on.
/// - A write whose bytes the kernel takes at once (the usual case for small messages) completes
///   before `write` returns — no queueing, no allocation, no extra loop turn. Only a write that
///   must wait is queued, and its completion runs later.
public enum Callbacks {
    /// Called with what a completion closure threw and the operation it completed. The default
    /// prints a warning to standard error. Set it before loops run.
    nonisolated(unsafe) public static var uncaughtErrorHandler: (any Error, String) -> Void = { error, operation in
        spindleWarning("a \(operation) callback threw \(error); the loop carries on")
    }

    /// Runs a user's completion closure, routing what it throws.
    @inline(__always)
    static func deliver<T>(_ callback: (T) throws -> Void, _ value: T, _ operation: StaticString) {
        do {
            try callback(value)
        } catch {
            uncaughtErrorHandler(error, "\(operation)")
        }
    }
}
