import CSpindleSupport
import Spindle
import SpindleLoop

/// The trace recorder: a ring buffer of the scheduler's events — spawn, resume, yield, park
/// (with its reason), wake, finish and loop turn — exported as Chrome/Perfetto trace JSON that
/// opens in ui.perfetto.dev, each fiber's running slices on its loop's track.
///
/// Tracing is compiled in and off by default: each hook is one load and an untaken branch.
/// Turn it on for one loop with ``start(on:capacity:)``, or for every loop of a process by
/// starting it with `SPINDLE_TRACE=path` (written when the loop closes).
///
/// Call everything on the loop's thread.
public enum Trace {
    /// One recorded event.
    public struct Event: Sendable, Equatable {
        public enum Kind: UInt32, Sendable {
            case spawn = 1, resume, yield, park, wake, finish, loopTurn
        }
        /// CLOCK_MONOTONIC nanoseconds.
        public let timestamp: UInt64
        /// The fiber's id (0 for loop turns).
        public let fiber: UInt64
        public let kind: Kind
        /// For a park, its reason.
        public let parkReason: Fiber.ParkReason?
    }

    /// Starts recording `loop`'s events into a ring of `capacity` (rounded up to a power of two;
    /// the newest overwrite the oldest). Restarting drops what was recorded.
    public static func start(on loop: EventLoop, capacity: Int = 1 << 20) {
        loop.preconditionOnLoopThread("Trace.start")
        loop.scheduler.startTracing(capacity: capacity)
    }

    /// Stops recording and drops what was recorded (write it first).
    public static func stop(on loop: EventLoop) {
        loop.preconditionOnLoopThread("Trace.stop")
        loop.scheduler.stopTracing()
    }

    /// Whether `loop` is recording.
    public static func isRecording(_ loop: EventLoop) -> Bool { loop.scheduler.isTracing }

    /// The recorded events, oldest first.
    public static func events(of loop: EventLoop) -> [Event] {
        loop.scheduler.traceEvents().events.compactMap { event in
            guard let kind = Event.Kind(rawValue: event.kind) else { return nil }
            return Event(
                timestamp: event.ticks, fiber: event.fiber, kind: kind,
                parkReason: kind == .park ? Fiber.ParkReason(rawValue: UInt8(truncatingIfNeeded: event.detail)) : nil)
        }
    }

    /// Writes the recorded events to `path` as Chrome trace JSON (open it in ui.perfetto.dev).
    public static func write(_ loop: EventLoop, to path: String) throws(UVError) {
        loop.preconditionOnLoopThread("Trace.write")
        try loop.scheduler.writeTrace(to: path)
    }
}
