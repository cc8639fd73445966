import CSpindleSupport

// The scheduler's always-on counters: plain integers in its C core, bumped on the hot paths
// (a switch, a park, a spawn) and read here into a snapshot only when asked.

extension Scheduler {
    /// Always-on counters of this scheduler (plain integers; reading them costs nothing).
    public var counters: Counters { Counters(core.pointee, stacks: stacks) }

    /// A snapshot of the scheduler's always-on counters.
    public struct Counters: Sendable, Equatable {
        /// Fibers spawned (joinable and detached).
        public var spawns: UInt64
        /// Resumes of a fiber from the loop side (each is followed by one switch back), counted
        /// as the yields, parks and finishes that end them.
        public var switches: UInt64
        /// Slices ended by ``Fiber/yield()``: the fiber went to the back of the run queue.
        public var yields: UInt64
        /// Slices ended by a park: the fiber waits (sleep, I/O, join, channel, lock, …) off the
        /// run queue until something wakes it. ``parksByReason`` breaks them down.
        public var parks: UInt64
        /// Parked fibers made runnable again (by a timer, an I/O completion, another fiber, a
        /// cancellation or a deadline).
        public var wakes: UInt64
        /// Fibers whose body returned or threw.
        public var finishes: UInt64
        /// Spawns that mapped a fresh stack (the pool had none of that size): a page fault for
        /// each page the fiber touches.
        public var stacksCold: UInt64
        /// Spawns that took a stack from the pool: one a finished fiber gave back, or one
        /// ``StackPool/prefault(count:stackSize:touching:)`` mapped and touched in advance.
        public var stacksPooled: UInt64
        /// The most fibers that were runnable at once.
        public var runQueueHighWater: UInt64
        /// Loop iterations (each runs the scheduler's drain once).
        public var loopTurns: UInt64
        /// Wakes by an I/O completion (a read, a receive) that ran their fiber at once, from
        /// the completion's callback, instead of queueing it for the next drain.
        public var completionResumes: UInt64
        /// Body objects allocated for joinable fibers (`loop.spawn`, which returns a handle):
        /// the rest of those spawns reused a finished body, one whose handles were gone.
        public var bodiesMade: UInt64
        /// ``Fiber/sleep(for:)`` calls for zero: each waits only for the next loop turn (a
        /// shorter sleep rounds up to the timer's millisecond), which is how polling through
        /// timers looks.
        public var zeroSleeps: UInt64
        /// ``Channel``s created by this scheduler's fibers.
        public var channelsMade: UInt64
        /// Parks by what the fiber waited for (reasons that never occurred are absent). Built
        /// when asked: reading the counters allocates nothing.
        public var parksByReason: [Fiber.ParkReason: UInt64] {
            var byReason: [Fiber.ParkReason: UInt64] = [:]
            withUnsafeBytes(of: parkCounts.counts) { raw in
                for (index, count) in raw.bindMemory(to: UInt64.self).enumerated() where count > 0 {
                    if let reason = Fiber.ParkReason(rawValue: UInt8(index)) { byReason[reason] = count }
                }
            }
            return byReason
        }
        let parkCounts: ParkCounts

        /// The C array of park counts by reason, compared as bytes.
        struct ParkCounts: Sendable, Equatable {
            let counts:
                (
                    UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                    UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                    UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64
                )
            static func == (a: ParkCounts, b: ParkCounts) -> Bool {
                withUnsafeBytes(of: a.counts) { x in withUnsafeBytes(of: b.counts) { y in x.elementsEqual(y) } }
            }
        }
        /// Nanoseconds the loop side spent running fibers (each drain, timed with the CPU's
        /// time-stamp counter: two readings a loop turn, none per switch).
        public var fiberNanoseconds: UInt64
        /// Fibers spawned and not yet finished.
        public var live: UInt64
        /// Fibers parked right now.
        public var parked: UInt64

        init(_ core: spindle_sched_t, stacks: StackPool) {
            spawns = core.spawns
            // Every resume ends in exactly one yield, park or finish.
            switches = core.yields &+ core.parks &+ core.finishes
            yields = core.yields
            parks = core.parks
            wakes = core.wakes
            finishes = core.finishes
            // The pool counts its takes, and only this scheduler takes from it.
            stacksCold = stacks.coldTakes
            stacksPooled = stacks.pooledTakes
            runQueueHighWater = core.run_queue_high_water
            loopTurns = core.turns
            completionResumes = core.completion_resumes
            bodiesMade = core.bodies_made
            zeroSleeps = core.zero_sleeps
            channelsMade = core.channels_made
            parkCounts = ParkCounts(counts: core.parks_by_reason)
            let (ticksNow, nsNow) = (spindle_trace_clock(), spindle_monotonic_ns())
            let ticks = ticksNow &- core.clock_ticks0
            let rate = ticks > 0 && nsNow > core.clock_ns0 ? Double(nsNow - core.clock_ns0) / Double(ticks) : 1
            fiberNanoseconds = UInt64(Double(core.drain_ticks) * rate)
            // Every spawned fiber is reclaimed once, as it finishes.
            live = core.spawns &- core.finishes
            parked = core.parked
        }
    }
}

extension Scheduler {
    /// Counts a channel made by the running fiber's scheduler (a channel made outside any fiber
    /// is not counted: no scheduler is at hand).
    static func countChannelMade() {
        guard let fiber = spindle_current_fiber() else { return }
        fiber.pointee.sched.unsafelyUnwrapped.pointee.channels_made &+= 1
    }
}
