import Spindle

// What the doctor reads in the order of a trace's events, beyond the loop's totals: how long
// each slice ran, which fiber spawned which, which wakes came together, and what each woken
// fiber did next. The live report (Trace.events) and a trace file feed the same tally.

extension Doctor {
    /// Figures drawn from a stretch of trace events, in the order they happened.
    struct EventTally {
        /// A slice shorter than this that begins after its fiber's own yield and ends in another
        /// yield did too little between its yields to be computing: a poll. Generous, so that a
        /// poll stays one under a sanitizer or on a loaded machine (median 7.5 µs, p99 41 µs
        /// under AddressSanitizer with a second build running); a fiber that yields between
        /// chunks of real work runs far longer slices.
        static let spinSlice: UInt64 = 100_000

        /// Slices longer than ``Doctor/longSlice``, and the longest one with its fiber.
        var longSlices = 0
        var longest: (nanoseconds: UInt64, fiber: UInt64)?
        /// Slices that ended in a yield; of those, the ones that began after a yield of the same
        /// fiber and ran shorter than ``spinSlice``.
        var yieldSlices = 0
        var spinYields = 0
        /// Fibers that finished here; of those, the ones a running fiber spawned that finished in
        /// their first slice (a helper that never waited).
        var finishes = 0
        var oneSliceChildren = 0
        /// The waits one call can end for many fibers at once, none of them handed anything:
        /// ``FiberEvent`` and parks by code outside Spindle (a condition variable of its own).
        /// A wake from a channel, a lock or a timer gives each fiber its own value, turn or time.
        static let broadcastReasons: Set<Fiber.ParkReason> = [.event, .other]

        /// Wakes seen; of those, fibers woken together with others that waited for the same
        /// reason, by one fiber's slice; of those, fibers whose next slice parked again for that
        /// reason.
        var wakes = 0
        var groupWakes = 0
        var futileWakes = 0

        /// What the events so far say of one fiber (until its next slice ends).
        private struct FiberFacts {
            /// The fiber whose slice spawned it (0: spawned outside a fiber, or before the events).
            var parent: UInt64 = 0
            var slices = 0
            var lastYielded = false
            var lastPark: Fiber.ParkReason?
            var wokenInGroup = false
        }
        private var fibers: [UInt64: FiberFacts] = [:]
        /// The slice running now: its fiber and when it began.
        private var open: (fiber: UInt64, since: UInt64)?
        /// Fibers woken since the waker changed, by the reason they had parked for.
        private var pendingWakes: [Fiber.ParkReason: [UInt64]] = [:]

        /// The kinds of event the tally reads.
        enum Kind { case spawn, resume, yield, park(Fiber.ParkReason?), finish, wake, loopTurn }

        /// Adds one event at `nanoseconds` for `fiber` (0 for a loop turn).
        mutating func add(_ kind: Kind, fiber: UInt64, at nanoseconds: UInt64) {
            switch kind {
            case .spawn:
                fibers[fiber] = FiberFacts(parent: open?.fiber ?? 0)
            case .wake:
                wakes += 1
                // Only wakes a fiber made: callbacks (timers, posts from other threads) wake fibers
                // one by one, each for its own event, though many run in one stretch.
                if open != nil, let reason = fibers[fiber]?.lastPark, Self.broadcastReasons.contains(reason) {
                    pendingWakes[reason, default: []].append(fiber)
                }
            case .loopTurn:
                settleWakes()
            case .resume:
                settleWakes()
                open = (fiber, nanoseconds)
                fibers[fiber, default: FiberFacts()].slices += 1
            case .yield, .park, .finish:
                guard let slice = open, slice.fiber == fiber else { return }
                settleWakes()  // wakes made by this slice
                open = nil
                let length = nanoseconds >= slice.since ? nanoseconds - slice.since : 0
                if length > Doctor.longSliceNanoseconds { longSlices += 1 }
                if length > longest?.nanoseconds ?? 0 { longest = (length, fiber) }
                // The facts still say how the slice began: nothing changes them while it runs.
                var facts = fibers[fiber, default: FiberFacts(slices: 1)]
                switch kind {
                case .yield:
                    yieldSlices += 1
                    if facts.lastYielded, length < Self.spinSlice { spinYields += 1 }
                    facts.lastYielded = true
                case .park(let reason):
                    if facts.wokenInGroup, let reason, reason == facts.lastPark { futileWakes += 1 }
                    facts.lastYielded = false
                    facts.lastPark = reason
                default:
                    finishes += 1
                    if facts.parent != 0, facts.slices == 1 { oneSliceChildren += 1 }
                    fibers[fiber] = nil
                    return
                }
                facts.wokenInGroup = false
                fibers[fiber] = facts
            }
        }

        /// The waker changed: wakes of two or more fibers parked for one reason were a group.
        private mutating func settleWakes() {
            guard !pendingWakes.isEmpty else { return }
            for (_, woken) in pendingWakes where woken.count >= 2 {
                groupWakes += woken.count
                for fiber in woken { fibers[fiber]?.wokenInGroup = true }
            }
            pendingWakes.removeAll(keepingCapacity: true)
        }

        /// Adds the tally to `evidence`, each figure scaled from the stretch of events to the
        /// run the totals cover (`totals`: the run's finishes, yields and wakes, when the ring
        /// kept only its end).
        func fill(
            _ evidence: inout Evidence, finishes totalFinishes: Double?, yields totalYields: Double?,
            wakes totalWakes: Double?
        ) {
            func scaled(_ count: Int, of seen: Int, total: Double?) -> Double {
                guard let total, seen > 0, total > Double(seen) else { return Double(count) }
                return Double(count) * total / Double(seen)
            }
            evidence.longSlices = Double(longSlices)
            evidence.oneSliceChildren = scaled(oneSliceChildren, of: finishes, total: totalFinishes)
            evidence.spinYields = scaled(spinYields, of: yieldSlices, total: totalYields)
            evidence.groupWakes = scaled(groupWakes, of: wakes, total: totalWakes)
            evidence.futileWakes = scaled(futileWakes, of: wakes, total: totalWakes)
        }
    }

    /// ``longSlice`` in nanoseconds.
    static let longSliceNanoseconds = UInt64(longSlice / .nanoseconds(1))
}
