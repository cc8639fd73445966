import Spindle
import SpindleLoop
import Synchronization

/// Runs Swift concurrency jobs on an ``/SpindleLoop/EventLoop``'s thread: a `SerialExecutor`
/// (actors can use it as their `unownedExecutor`) and a `TaskExecutor`
/// (`Task(executorPreference:)`, `withTaskExecutorPreference`).
///
/// - Enqueueing allocates nothing: jobs are linked through the word the runtime reserves in
///   each job for its executor, on a lock-free stack that the loop drains in order.
/// - From the loop's own thread an enqueue costs no syscall (an idle watcher runs the jobs on
///   this turn); from another thread it wakes the loop once through its `uv_async` handle.
/// - Jobs run between fiber turns, never inside a fiber, and a fiber never runs inside a job.
/// - A job of a task that prefers this executor runs on it as a task executor, not isolated to
///   the loop as an actor: the task's nonisolated code carries on after each `await` without
///   hopping. Actors get a separate serial-executor face from ``asUnownedSerialExecutor()``,
///   and their jobs run isolated to it.
/// - `checkIsolated()` is precise: it passes on the loop's thread and stops the process with a
///   message anywhere else.
///
/// Make it on the loop's thread with ``of(_:)``; it then stays with the loop (closed with it)
/// and may be handed to other threads.
///
/// ```swift
/// let executor = LoopExecutor.of(loop)
/// Task(executorPreference: executor) { await work() }   // runs on the loop's thread
/// ```
public final class LoopExecutor: SerialExecutor, TaskExecutor, EventLoopAttachment, @unchecked Sendable {
    /// The loop whose thread runs the jobs.
    public let loop: EventLoop
    /// Top of the job stack (a job's address), linked through each job's first private word.
    private let top = Atomic<UInt>(0)
    /// A cross-thread wakeup is already on its way.
    private let signalled = Atomic<Bool>(false)
    private let wakeup: Wakeup
    private let idle: LoopWatcher
    private let check: LoopWatcher
    private var bridges = 0
    /// What actors see (``asUnownedSerialExecutor()``): its jobs are tagged and run isolated.
    private var serialFace: LoopSerialExecutor!
    /// Jobs run so far (for tests and reports).
    public private(set) var jobsRun: UInt64 = 0

    /// The loop's executor, made on first use. Call it on the loop's thread the first time.
    public static func of(_ loop: EventLoop) -> LoopExecutor {
        loop.attachment(LoopExecutor.self) { LoopExecutor(loop: loop) }
    }

    private init(loop: EventLoop) {
        self.loop = loop
        var drain: (() -> Void)?
        wakeup = Wakeup(loop: loop) { drain?() }
        idle = LoopWatcher(loop: loop, kind: .idle)
        check = LoopWatcher(loop: loop, kind: .check)
        for handle in [wakeup, idle, check] as [LoopHandle] { handle.isLoopMachinery = true }
        // Work queued for a running loop does not by itself keep run(.untilNoWork) going.
        wakeup.keepsLoopAlive = false
        check.keepsLoopAlive = false
        drain = { [unowned self] in self.drain() }
        idle.start { [unowned self] in self.drain() }
        idle.stop()
        check.start { [unowned self] in self.drain() }
        serialFace = LoopSerialExecutor(owner: self)
    }

    // MARK: SerialExecutor / TaskExecutor

    /// Enqueues a job of a task that prefers this executor (the `TaskExecutor` path): it runs
    /// with no actor isolation. An actor must take its executor from
    /// ``asUnownedSerialExecutor()``, not wrap this object in `UnownedSerialExecutor(ordinary:)`:
    /// its jobs would then run here unisolated.
    public func enqueue(_ job: consuming ExecutorJob) {
        push(UnownedJob(job), isolated: false)
    }

    /// Adds `job` to the stack; `isolated` jobs (an actor's, through the serial face) are tagged
    /// in the address's low bit (jobs are heap objects, 16-byte aligned).
    func push(_ job: UnownedJob, isolated: Bool) {
        let raw = unsafeBitCast(job, to: UInt.self) | (isolated ? 1 : 0)
        var old = top.load(ordering: .relaxed)
        while true {
            Self.link(raw).pointee = old
            let (exchanged, current) = top.compareExchange(expected: old, desired: raw, ordering: .releasing)
            if exchanged { break }
            old = current
        }
        guard old == 0 else { return }  // a drain is already due
        if loop.isOnLoopThread {
            idle.resume()
        } else if !signalled.exchange(true, ordering: .acquiringAndReleasing) {
            wakeup.signal()
        }
    }

    /// The serial executor for actors that run on this loop (`unownedExecutor`). A separate
    /// object from this one: the runtime enqueues to a serial and to a task executor through
    /// the same `enqueue`, and only the object tells an actor's job from a task's.
    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: serialFace)
    }

    public func checkIsolated() {
        loop.preconditionOnLoopThread("code isolated to a LoopExecutor")
    }

    public func isSameExclusiveExecutionContext(other: LoopExecutor) -> Bool { other === self }

    // MARK: Draining

    /// The runtime's scheduler-private words start after the job's heap-object header.
    /// `job` may carry the isolated tag.
    private static func link(_ job: UInt) -> UnsafeMutablePointer<UInt> {
        UnsafeMutablePointer<UInt>(bitPattern: (job & ~1) + UInt(2 * MemoryLayout<UInt>.size)).unsafelyUnwrapped
    }

    private func drain() {
        signalled.store(false, ordering: .releasing)
        idle.stop()
        var rounds = 0
        while rounds < 64 {  // bounded, so jobs that enqueue jobs cannot starve I/O
            var stack = top.exchange(0, ordering: .acquiring)
            if stack == 0 { return }
            // The stack is newest first; reverse it to run jobs in the order they came.
            var ordered: UInt = 0
            while stack != 0 {
                let next = Self.link(stack).pointee
                Self.link(stack).pointee = ordered
                ordered = stack
                stack = next
            }
            let serial = asUnownedSerialExecutor()
            let task = asUnownedTaskExecutor()
            while ordered != 0 {
                let next = Self.link(ordered).pointee
                jobsRun &+= 1
                let job = unsafeBitCast(ordered & ~1, to: UnownedJob.self)
                if ordered & 1 != 0 {
                    job.runSynchronously(isolatedTo: serial, taskExecutor: task)
                } else {
                    // Isolated to the loop as an actor, a task's nonisolated code would have to
                    // hop off it (a job more) at every await.
                    job.runSynchronously(on: task)
                }
                ordered = next
            }
            rounds += 1
        }
        if top.load(ordering: .relaxed) != 0 { idle.resume() }
    }

    // MARK: Keeping the loop running for bridges

    /// A fiber waits for async work: the loop must not end (or report a deadlock) meanwhile.
    func beginBridge() {
        bridges += 1
        if bridges == 1 { wakeup.keepsLoopAlive = true }
    }

    func endBridge() {
        bridges -= 1
        if bridges == 0 { wakeup.keepsLoopAlive = false }
    }

    // MARK: EventLoopAttachment

    public func stalledWaiters() -> [String] { [] }

    public func openItems() -> [String] {
        bridges > 0 ? ["\(bridges) fiber(s) waiting for async work"] : []
    }

    public func loopWillClose() {
        wakeup.close()
        idle.close()
        check.close()
    }
}

/// A ``LoopExecutor``'s serial-executor face: actors whose `unownedExecutor` is the loop's get
/// this object, and their jobs join the executor's queue tagged to run isolated to it.
final class LoopSerialExecutor: SerialExecutor, @unchecked Sendable {
    /// The executor owns this object, and lives as long as its loop.
    unowned(unsafe) let owner: LoopExecutor

    init(owner: LoopExecutor) { self.owner = owner }

    func enqueue(_ job: consuming ExecutorJob) { owner.push(UnownedJob(job), isolated: true) }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor { UnownedSerialExecutor(ordinary: self) }

    func checkIsolated() { owner.checkIsolated() }

    func isSameExclusiveExecutionContext(other: LoopSerialExecutor) -> Bool { other === self }
}
