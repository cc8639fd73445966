import CSpindleSupport
import SpindleLoop

// Coordination between the fibers of one loop. Every wait parks the fiber (never the thread),
// takes no OS lock, is served first come first served, and is cancellable: a cancelled fiber's
// wait throws `CancellationError`, an expired `Fiber.withTimeout` throws `FiberTimeoutError`.

/// Waits in `list`'s place for a wake, taking the fiber off the list again if it is interrupted.
/// `append` and `remove` reach the list through its owner, so no access to it is held while
/// the fiber is parked.
@inline(__always)
private func waitInterruptibly(
    _ me: UnsafeMutablePointer<spindle_fiber_t>, _ reason: Fiber.ParkReason,
    append: () -> Void, remove: () -> Void
) throws {
    try Fiber.checkInterruption(me)
    append()
    let woken = Fiber.park(me, reason, detail: 0, cancellable: true)
    if woken == .cancelled || woken == .timedOut {
        remove()
        try Fiber.throwIfInterrupted(woken)
    }
}

/// A mutual-exclusion lock for fibers. Ownership passes directly to the longest waiter on
/// unlock, so a fiber that unlocks and locks again cannot starve the others.
public final class FiberMutex {
    @exclusivity(unchecked) private var owner: UnsafeMutablePointer<spindle_fiber_t>?
    @exclusivity(unchecked) private var waiters = WaitList()

    /// An unlocked mutex. Use it from the fibers of one loop.
    public init() {}

    /// Whether a fiber holds the lock.
    public var isLocked: Bool { owner != nil }

    /// Takes the lock, waiting while another fiber holds it.
    public func lock() throws {
        let me = Fiber.runningFiber("FiberMutex.lock()")
        precondition(owner != me, "FiberMutex.lock(): \(FiberRef(me)) already holds this mutex (it is not recursive)")
        if owner == nil {
            try Fiber.checkInterruption(me)
            owner = me
            return
        }
        try waitInterruptibly(me, .mutex, append: { waiters.append(me) }, remove: { waiters.remove(me) })
        // unlock() handed the lock over before waking this fiber.
    }

    /// Releases the lock, handing it to the longest waiter. Only the holder may unlock.
    public func unlock() {
        let me = Fiber.runningFiber("FiberMutex.unlock()")
        precondition(owner == me, "FiberMutex.unlock() by a fiber that does not hold the lock")
        owner = waiters.popFirst()
        if let next = owner { FiberRef(next).wake(.ready) }
    }

    /// Runs `body` holding the lock.
    public func withLock<T>(_ body: () throws -> T) throws -> T {
        try lock()
        defer { unlock() }
        return try body()
    }
}

/// A counting semaphore for fibers.
public final class FiberSemaphore {
    @exclusivity(unchecked) private var permits: Int
    @exclusivity(unchecked) private var waiters = WaitList()

    /// Makes a semaphore with `value` permits.
    public init(value: Int) {
        precondition(value >= 0, "FiberSemaphore needs a non-negative value (got \(value))")
        permits = value
    }

    /// Permits available now.
    public var available: Int { permits }

    /// Takes a permit, waiting while none is available.
    public func wait() throws {
        let me = Fiber.runningFiber("FiberSemaphore.wait()")
        if permits > 0, waiters.isEmpty {
            try Fiber.checkInterruption(me)
            permits -= 1
            return
        }
        try waitInterruptibly(me, .semaphore, append: { waiters.append(me) }, remove: { waiters.remove(me) })
        // signal() handed its permit over before waking this fiber.
    }

    /// Returns a permit: to the longest waiter if there is one.
    public func signal() {
        if let next = waiters.popFirst() {
            FiberRef(next).wake(.ready)
        } else {
            permits += 1
        }
    }
}

/// A one-shot event: fibers wait until it is set; setting it releases all of them and every
/// later waiter passes straight through until ``reset()``.
public final class FiberEvent {
    /// Whether the event is set: a ``wait()`` now returns at once.
    @exclusivity(unchecked) public private(set) var isSet = false
    @exclusivity(unchecked) private var waiters = WaitList()

    /// An event not yet set. Use it from the fibers of one loop.
    public init() {}

    /// Waits until the event is set.
    public func wait() throws {
        let me = Fiber.runningFiber("FiberEvent.wait()")
        try Fiber.checkInterruption(me)
        if isSet { return }
        try waitInterruptibly(me, .event, append: { waiters.append(me) }, remove: { waiters.remove(me) })
    }

    /// Sets the event and wakes every waiter.
    public func set() {
        isSet = true
        while let waiter = waiters.popFirst() { FiberRef(waiter).wake(.ready) }
    }

    /// Clears the event so later waiters wait again.
    public func reset() { isSet = false }
}

/// Waits for a number of tasks to finish, as Go's `sync.WaitGroup`.
public final class WaitGroup {
    @exclusivity(unchecked) private var pending = 0
    @exclusivity(unchecked) private var waiters = WaitList()

    /// A group with no pending tasks (``wait()`` returns at once until ``add(_:)``). Use it
    /// from the fibers of one loop.
    public init() {}

    /// Tasks not yet done.
    public var count: Int { pending }

    /// Adds `n` tasks.
    public func add(_ n: Int = 1) {
        precondition(pending + n >= 0, "WaitGroup count went negative")
        pending += n
        if pending == 0 { releaseWaiters() }
    }

    /// Marks one task done.
    public func done() { add(-1) }

    /// Waits until every task added is done.
    public func wait() throws {
        let me = Fiber.runningFiber("WaitGroup.wait()")
        try Fiber.checkInterruption(me)
        if pending == 0 { return }
        try waitInterruptibly(me, .waitGroup, append: { waiters.append(me) }, remove: { waiters.remove(me) })
    }

    private func releaseWaiters() {
        while let waiter = waiters.popFirst() { FiberRef(waiter).wake(.ready) }
    }
}
