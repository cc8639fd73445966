import CSpindleSupport
import Glibc
import SpindleLoop

/// Loops on threads of their own, one per core by default: the way a Spindle service uses
/// every core. Each loop runs its own fibers, which never migrate; loops meet through
/// `loop.post { }`, `loop.call { }` and ``CrossLoopChannel``.
///
/// ```swift
/// let group = LoopGroup()                       // one loop per CPU, started
/// group.spawnOnEach(name: "acceptor") { loop in
///     // One listener per loop on the same port: the kernel spreads the connections.
///     guard let listener = try? TCPListener(address: address, reusePort: true) else { return }
///     while let connection = try? listener.accept() {
///         Fiber.spawnDetached { serve(connection) }
///     }
/// }
/// // ... until the service is told to stop:
/// try group.shutdown(within: .seconds(10))
/// ```
///
/// Shutdown is cooperative: every fiber is cancelled (its blocking call throws
/// `CancellationError`), the loops wait for them, close what they left open and stop. A loop
/// that cannot stop in time is named with the fibers that hold it; nothing is unwound by force.
public final class LoopGroup: @unchecked Sendable {
    /// The group's loops, in order; each runs on its own thread.
    public let loops: [EventLoop]
    private let members: [Member]
    private let gate = Gate()
    // Guarded by `gate`.
    private var shutdownStarted = false
    private var finished = false
    private var cursor = 0

    /// How many CPUs this process may run on: the default loop count.
    public static var defaultLoopCount: Int { Int(spindle_usable_cpu_count()) }

    /// Starts `loops` loops, each on a new thread named `name-<index>`, running until
    /// ``shutdown(within:)``. Returns once every loop exists.
    ///
    /// - Parameters:
    ///   - count: how many loops (at least 1; default: the CPUs this process may use).
    ///   - pinning: pins loop *i* to the *i*-th CPU the process may use (wrapping), so its
    ///     cache stays warm; a CPU the system refuses is reported on stderr and not pinned.
    ///   - name: the prefix of the threads' and the loops' names (15 bytes of a thread name show).
    public init(loops count: Int = LoopGroup.defaultLoopCount, pinning: Bool = false, name: String = "spindle") {
        precondition(count >= 1, "LoopGroup needs at least one loop (got \(count))")
        let members = (0..<count).map { Member(index: $0) }
        let gate = self.gate
        let firstID = EventLoop.reserveIDs(count)  // loop i is number firstID + i
        for member in members {
            member.thread = LoopThread(name: "\(name)-\(member.index)") {
                let loop = EventLoop(name: "\(name)-\(member.index)", reservedID: firstID + UInt64(member.index))
                if pinning {
                    let status = spindle_pin_current_thread(Int32(member.index))
                    if status != 0 {
                        spindleWarning(
                            "LoopGroup: could not pin \(loop) to a CPU: \(String(cString: strerror(status)))")
                    }
                }
                gate.locked { member.loop = loop }
                gate.broadcast()
                Member.serve(member, gate: gate)
            }
        }
        gate.locked {
            while members.contains(where: { $0.loop == nil }) { gate.wait() }
        }
        self.members = members
        self.loops = members.map { $0.loop }
    }

    // MARK: Placing work

    /// The next loop, round-robin. Safe from any thread.
    public func next() -> EventLoop {
        let index = gate.locked {
            defer { cursor = (cursor + 1) % loops.count }
            return cursor
        }
        return loops[index]
    }

    /// The loop for `key`: the same key gets the same loop for the life of the process (the
    /// key's hash, which Swift seeds per process, picks it). For state sharded by key.
    public func loop(for key: some Hashable) -> EventLoop {
        loops[Int(UInt(bitPattern: key.hashValue) % UInt(loops.count))]
    }

    /// Spawns a detached fiber running `body` on `loop` (the group's ``next()`` when nil).
    /// Safe from any thread: the spawn is posted to the loop's thread.
    public func spawn(on loop: EventLoop? = nil, name: String? = nil, _ body: @escaping @Sendable () -> Void) {
        let loop = loop ?? next()
        loop.post { Self.spawnUnlessClosing(on: loop, name: name, body) }
    }

    private static func spawnUnlessClosing(on loop: EventLoop, name: String?, _ body: @escaping () -> Void) {
        if loop.isClosing {
            spindleWarning(
                "LoopGroup: a fiber\(name.map { " \"\($0)\"" } ?? "") was not spawned: \(loop) had shut down")
            return
        }
        loop.spawnDetached(name: name, body)
    }

    /// Spawns one detached fiber on every loop, each running `body` with its loop: a listener
    /// per loop, a shard's owner per loop. Safe from any thread.
    public func spawnOnEach(name: String? = nil, _ body: @escaping @Sendable (EventLoop) -> Void) {
        for loop in loops { loop.post { Self.spawnUnlessClosing(on: loop, name: name) { body(loop) } } }
    }

    // MARK: Shutting down

    /// A loop that could not stop in time, and what holds it.
    public struct StuckLoop: Sendable, CustomStringConvertible {
        /// The loop, as messages name it (`loop #3 "spindle-1"`).
        public let loop: String
        /// What holds it: each live fiber with its name and state or park reason, or why it
        /// could not be asked.
        public let holders: [String]

        public var description: String {
            "\(loop) did not stop:\n" + holders.map { "  - \($0)" }.joined(separator: "\n")
        }
    }

    /// Why ``shutdown(within:)`` did not finish.
    public struct ShutdownError: Error, CustomStringConvertible, Sendable {
        /// Every loop that was still running at the deadline.
        public let stuck: [StuckLoop]

        public var description: String {
            "LoopGroup.shutdown: \(stuck.count) loop(s) could not stop by the deadline "
                + "(nothing was unwound by force; call shutdown again to keep waiting):\n"
                + stuck.map(\.description).joined(separator: "\n")
        }
    }

    /// Stops the group within `timeout`: see ``shutdown(deadline:)``.
    public func shutdown(within timeout: Duration = .seconds(10)) throws {
        try shutdown(deadline: .now + timeout)
    }

    /// Stops every loop by `deadline`, cooperatively, and joins their threads.
    ///
    /// On each loop: every fiber is cancelled (its current or next blocking call throws
    /// `CancellationError`; fibers spawned meanwhile are cancelled too), the loop runs until
    /// they have all finished, closes every handle they left open (`EventLoop.closeOpenHandles()`)
    /// and closes. Throws ``ShutdownError`` if a loop is still running at the deadline, naming
    /// it and, by name and park reason, the fibers that hold it — or saying its thread did not
    /// come back to the loop at all. Such a loop keeps running; calling `shutdown` again waits
    /// for it once more. Returns at once once the group has stopped.
    ///
    /// Call it from a thread outside the group (the main thread, a signal handler's thread), one
    /// thread at a time: from one of the group's loops it would wait for itself, and stops the
    /// process saying so.
    public func shutdown(deadline: ContinuousClock.Instant) throws {
        if let current = EventLoop.current, loops.contains(where: { $0 === current }) {
            fatalError(
                "LoopGroup.shutdown called on \(current), one of the group's own loops: it would wait for "
                    + "itself; call it from a thread outside the group")
        }
        // A loop that reported itself stuck at an earlier deadline is asked again, with this one.
        let asking = gate.locked { () -> [Member] in
            defer { shutdownStarted = true }
            let asking = members.filter { !shutdownStarted || $0.outcome.isStuck }
            for member in asking where member.outcome.isStuck { member.outcome = .running }
            return asking
        }
        for member in asking {
            let loop = member.loop!
            loop.post { member.stop(by: deadline) }
        }
        // The loops' own alarms answer at the deadline; a little longer for a loop whose answer
        // is on its way, then the silent ones are reported as blocked.
        let giveUp = deadline + .milliseconds(250)
        let outcomes = gate.locked { () -> [Member.Outcome] in
            while members.contains(where: { $0.outcome == .running }), ContinuousClock.now < giveUp {
                gate.wait(until: giveUp)
            }
            return members.map(\.outcome)
        }
        // A loop that stopped, or gave up for good, has ended its thread (or is ending it).
        for (member, outcome) in zip(members, outcomes) where outcome == .stopped || outcome.isAbandoned {
            member.thread.join()
        }
        var stuck: [StuckLoop] = []
        for (member, outcome) in zip(members, outcomes) {
            switch outcome {
            case .stopped: continue
            case .stuck(let holders), .abandoned(let holders):
                stuck.append(StuckLoop(loop: "\(member.loop!)", holders: holders))
            case .running:
                stuck.append(
                    StuckLoop(
                        loop: "\(member.loop!)",
                        holders: [
                            "its thread did not come back to the loop by the deadline: a fiber or callback is "
                                + "blocking the thread (a blocking system call, or a loop that never parks or yields)"
                        ]))
            }
        }
        if !stuck.isEmpty { throw ShutdownError(stuck: stuck) }
        gate.locked { finished = true }
    }

    deinit {
        if !gate.locked({ finished }) {
            spindleWarning("a LoopGroup was released without shutdown(); its \(loops.count) loop(s) keep running")
        }
    }
}

// MARK: - One loop of the group

extension LoopGroup {
    fileprivate final class Member: @unchecked Sendable {
        enum Outcome: Equatable {
            case running
            case stopped
            /// Still running at the deadline, held by these fibers; asked again by a later shutdown.
            case stuck([String])
            /// Its fibers wait for what can no longer happen: the loop cannot close, and its
            /// thread has ended.
            case abandoned([String])

            var isStuck: Bool { if case .stuck = self { true } else { false } }
            var isAbandoned: Bool { if case .abandoned = self { true } else { false } }
        }

        let index: Int
        var thread: LoopThread!
        /// Set once, on the loop's thread, before the group's init returns (under the gate).
        var loop: EventLoop!
        /// Guarded by the gate.
        var outcome = Outcome.running
        /// Loop-thread only: when the loop must have stopped (set by the posted shutdown).
        var deadline: ContinuousClock.Instant?
        /// Loop-thread only: rings at the deadline while the loop stops.
        var alarm: LoopTimer?

        init(index: Int) { self.index = index }

        /// The loop thread's life: serve until shutdown is asked, then stop.
        static func serve(_ member: Member, gate: Gate) {
            let loop = member.loop!
            while member.deadline == nil {
                do { try loop.run(.untilStopped) } catch { spindleWarning("LoopGroup: \(loop) stopped: \(error)") }
            }
            let outcome = stop(member, gate: gate)
            gate.locked { member.outcome = outcome }
            gate.broadcast()
        }

        /// On the loop's thread: the group asks the loop to stop by `deadline` (again, if an
        /// earlier deadline passed).
        func stop(by deadline: ContinuousClock.Instant) {
            self.deadline = deadline
            if let alarm {
                alarm.start(after: max(deadline - .now, .zero))
            } else {
                loop.stop()
            }
        }

        /// Cancels the loop's fibers, runs it until they have finished, closes what they left
        /// open and closes the loop. At the deadline, if fibers are still live, the alarm
        /// reports them (the loop keeps running for them).
        private static func stop(_ member: Member, gate: Gate) -> Outcome {
            let loop = member.loop!
            let scheduler = loop.existingAttachment(Scheduler.self)
            let sweeper = LoopWatcher(loop: loop, kind: .prepare)
            sweeper.isLoopMachinery = true
            sweeper.keepsLoopAlive = false
            // Before each poll: cancel the fibers spawned since the last look; once none is
            // left, close what they left open (the loop then runs out of work).
            sweeper.start { [unowned(unsafe) sweeper] in
                scheduler?.cancelAll()
                if scheduler.map({ $0.counters.live == 0 }) ?? true {
                    loop.closeOpenHandles()
                    sweeper.stop()
                }
            }
            let alarm = LoopTimer(loop: loop) { _ in
                let holders = holders(of: loop, scheduler)
                spindleWarning(
                    "\(loop) did not stop by its shutdown deadline; held by: \(holders.joined(separator: "; "))",
                    kind: .loopDidNotStop, loop: "\(loop)")
                gate.locked { member.outcome = .stuck(holders) }
                gate.broadcast()
            }
            alarm.isLoopMachinery = true
            alarm.keepsLoopAlive = false
            member.alarm = alarm
            member.stop(by: member.deadline!)
            var outcome = Outcome.stopped
            do {
                try loop.run(.untilNoWork)
            } catch {
                // Fibers parked on something nothing can deliver any more.
                outcome = .abandoned(holders(of: loop, scheduler))
            }
            sweeper.close()
            alarm.close()
            member.alarm = nil
            guard outcome == .stopped else { return outcome }
            do {
                try loop.close()
            } catch {
                return .abandoned(loop.openItems())
            }
            return .stopped
        }

        private static func holders(of loop: EventLoop, _ scheduler: Scheduler?) -> [String] {
            let fibers = scheduler?.liveFiberDescriptions ?? []
            return fibers.isEmpty ? loop.openItems() : fibers
        }
    }
}

// MARK: - A mutex and condition for the threads that start and stop the group

/// A pthread mutex and condition variable (on the monotonic clock): the group's threads wait on
/// it only while starting and stopping, never on a loop's hot path.
final class Gate: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    func locked<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Waits for a ``broadcast()`` (spurious wake-ups happen: wait in a loop). Hold the lock.
    func wait() { pthread_cond_wait(condition, mutex) }

    /// Waits for a ``broadcast()`` or `deadline` on the continuous clock. Hold the lock.
    func wait(until deadline: ContinuousClock.Instant) {
        let left = deadline - .now
        guard left > .zero else { return }
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let (seconds, attoseconds) = left.components
        var nanoseconds = Int64(now.tv_nsec) + attoseconds / 1_000_000_000
        var wholeSeconds = Int64(now.tv_sec) + seconds + nanoseconds / 1_000_000_000
        nanoseconds %= 1_000_000_000
        if wholeSeconds < 0 { wholeSeconds = 0 }
        var until = timespec(tv_sec: Int(wholeSeconds), tv_nsec: Int(nanoseconds))
        pthread_cond_timedwait(condition, mutex, &until)
    }

    func broadcast() {
        pthread_mutex_lock(mutex)
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }
}
