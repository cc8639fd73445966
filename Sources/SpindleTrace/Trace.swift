import CSpindleSupport
import Spindle
import SpindleLoop

/// The trace recorder: a ring buffer of the scheduler's events — spawn, resume, yield, park
/// (with its reason), wake, finish, I/O completion and loop turn — exported as Chrome/Perfetto trace JSON that
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
        /// What happened.
        public enum Kind: UInt32, Sendable {
            /// A fiber was spawned (put on the run queue for the first time).
            case spawn = 1
            /// The loop switched to the fiber: a slice begins.
            case resume
            /// The fiber yielded: its slice ends and it goes to the back of the run queue.
            case yield
            /// The fiber parked: its slice ends and it waits off the run queue.
            case park
            /// A parked fiber was made runnable.
            case wake
            /// The fiber's body returned or threw: its last slice ends.
            case finish
            /// The loop began an iteration.
            case loopTurn
            /// A read or receive completed for a parked fiber (just before its wake).
            case ioCompletion
        }
        /// CLOCK_MONOTONIC nanoseconds.
        public let timestamp: UInt64
        /// The fiber's id (0 for loop turns).
        public let fiber: UInt64
        /// What happened.
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

extension Trace {
    /// Latency distributions computed from a loop's trace: how long fibers waited to run once
    /// runnable, how long each slice ran, and how long parks lasted, by reason — for the whole
    /// loop and for each fiber.
    public struct Statistics: Sendable, CustomStringConvertible {
        /// A distribution's count, percentiles and histogram, in nanoseconds.
        public struct Summary: Sendable, CustomStringConvertible {
            /// Samples.
            public let count: Int
            /// The median sample.
            public let p50: UInt64
            /// The 99th percentile: one sample in a hundred is larger.
            public let p99: UInt64
            /// The largest sample.
            public let max: UInt64
            /// The samples by power-of-two bucket: each bucket counts the samples at most its
            /// `upperBound` and above the previous bucket's (empty buckets are left out).
            public let histogram: [Bucket]

            /// One bucket of ``histogram``.
            public struct Bucket: Sendable, Equatable {
                /// The largest value counted here: a power of two (nanoseconds), or 0 for zeros.
                public let upperBound: UInt64
                /// Samples in this bucket.
                public let count: Int

                /// A bucket of `count` samples at most `upperBound`.
                public init(upperBound: UInt64, count: Int) {
                    self.upperBound = upperBound
                    self.count = count
                }
            }

            /// The summary of `samples` (nanoseconds, in any order).
            public init(_ samples: [UInt64]) {
                let sorted = samples.sorted()
                count = sorted.count
                func at(_ q: Double) -> UInt64 {
                    sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))]
                }
                p50 = at(0.5)
                p99 = at(0.99)
                max = sorted.last ?? 0
                var buckets: [Bucket] = []
                for sample in sorted {
                    // The smallest power of two at least `sample` (0 stays 0).
                    let bound: UInt64 =
                        sample <= 1
                        ? sample
                        : (sample - 1).leadingZeroBitCount == 0
                            ? .max : 1 << (64 - (sample - 1).leadingZeroBitCount)
                    if let last = buckets.last, last.upperBound == bound {
                        buckets[buckets.count - 1] = Bucket(upperBound: bound, count: last.count + 1)
                    } else {
                        buckets.append(Bucket(upperBound: bound, count: 1))
                    }
                }
                histogram = buckets
            }

            public var description: String {
                count == 0 ? "none" : "\(count) × p50 \(Self.time(p50)), p99 \(Self.time(p99)), max \(Self.time(max))"
            }

            static func time(_ ns: UInt64) -> String {
                ns >= 1_000_000
                    ? "\(ns / 1_000_000).\(ns / 100_000 % 10) ms"
                    : ns >= 1_000 ? "\(ns / 1_000).\(ns / 100 % 10) µs" : "\(ns) ns"
            }
        }

        /// One fiber's distributions (the same three as the loop's).
        public struct PerFiber: Sendable, CustomStringConvertible {
            /// From this fiber becoming runnable to running.
            public let runnableToRunning: Summary
            /// This fiber's slices, resume to yield, park or finish.
            public let slices: Summary
            /// This fiber's parks, park to wake, by reason.
            public let parks: [Fiber.ParkReason: Summary]
            /// Nanoseconds the fiber ran in all (the sum of its slices).
            public let runningNanoseconds: UInt64

            public var description: String {
                (["runnable → running: \(runnableToRunning)", "slices: \(slices)"]
                    + parks.sorted { $0.key.rawValue < $1.key.rawValue }.map { "parked on \($0.key): \($0.value)" })
                    .joined(separator: "; ")
            }
        }

        /// From becoming runnable (spawn, wake or yield) to running again.
        public let runnableToRunning: Summary
        /// From resume to the next yield, park or finish.
        public let slices: Summary
        /// From park to wake, by park reason.
        public let parks: [Fiber.ParkReason: Summary]
        /// The same, fiber by fiber (by fiber id), for the fibers the trace saw run.
        public let fibers: [UInt64: PerFiber]

        public var description: String {
            (["runnable → running: \(runnableToRunning)", "slices: \(slices)"]
                + parks.sorted { $0.key.rawValue < $1.key.rawValue }.map { "parked on \($0.key): \($0.value)" })
                .joined(separator: "\n")
        }
    }

    /// The latency distributions of the events recorded so far on `loop` (tracing must be on).
    public static func statistics(of loop: EventLoop) -> Statistics {
        struct Samples {
            var delays: [UInt64] = [], slices: [UInt64] = []
            var parks: [Fiber.ParkReason: [UInt64]] = [:]
        }
        var runnableSince: [UInt64: UInt64] = [:]
        var resumedAt: [UInt64: UInt64] = [:]
        var parkedAt: [UInt64: (UInt64, Fiber.ParkReason)] = [:]
        var byFiber: [UInt64: Samples] = [:]
        for event in events(of: loop) where event.fiber != 0 {
            let id = event.fiber, ts = event.timestamp
            switch event.kind {
            case .spawn:
                runnableSince[id] = ts
            case .resume:
                if let since = runnableSince.removeValue(forKey: id), ts >= since {
                    byFiber[id, default: .init()].delays.append(ts - since)
                }
                resumedAt[id] = ts
            case .yield, .park, .finish:
                if let start = resumedAt.removeValue(forKey: id), ts >= start {
                    byFiber[id, default: .init()].slices.append(ts - start)
                }
                if event.kind == .yield { runnableSince[id] = ts }
                if event.kind == .park, let reason = event.parkReason { parkedAt[id] = (ts, reason) }
            case .wake:
                if let (since, reason) = parkedAt.removeValue(forKey: id), ts >= since {
                    byFiber[id, default: .init()].parks[reason, default: []].append(ts - since)
                }
                runnableSince[id] = ts
            case .loopTurn, .ioCompletion:
                continue
            }
        }
        var all = Samples()
        for samples in byFiber.values {
            all.delays += samples.delays
            all.slices += samples.slices
            for (reason, durations) in samples.parks { all.parks[reason, default: []] += durations }
        }
        return Statistics(
            runnableToRunning: .init(all.delays), slices: .init(all.slices), parks: all.parks.mapValues { .init($0) },
            fibers: byFiber.mapValues { samples in
                Statistics.PerFiber(
                    runnableToRunning: .init(samples.delays), slices: .init(samples.slices),
                    parks: samples.parks.mapValues { .init($0) }, runningNanoseconds: samples.slices.reduce(0, +))
            })
    }
}
