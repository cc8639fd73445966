import CSpindleSupport
import Glibc
import SpindleLoop
import Synchronization

/// A buffered channel between fibers of different loops (or of one), Go's `chan T` across
/// threads: any fiber of any loop may send and receive; a send waits while the buffer is full,
/// a receive while it is empty, each parking only its own fiber.
///
/// - The buffer is a lock-free ring: a send or receive that need not wait is one
///   compare-and-swap, no lock, no allocation and no system call.
/// - A fiber that must wait registers itself under a lock and parks. The other side wakes it
///   through its loop's inbox (one `uv_async_send`, coalesced with the loop's other wake-ups);
///   a woken receiver drains everything buffered before it waits again, so a stream of messages
///   costs a wake-up per batch, not per message.
/// - ``close()`` (from any thread) wakes every waiter: receivers drain what is buffered, then
///   get `nil`; senders, waiting or later, get ``ChannelClosedError``. Waits are cancellable,
///   like ``Channel``'s; a cancelled send delivers nothing.
/// - Values are `Sendable`: they cross threads.
///
/// ```swift
/// let results = CrossLoopChannel<Int>(capacity: 1024)
/// group.spawn(on: group.loops[0]) { for n in 0..<100 { try? results.send(n) }; results.close() }
/// group.spawn(on: group.loops[1]) { for n in results { print(n) } }
/// ```
///
/// Unlike ``Channel``, there is no unbuffered form: a rendezvous between threads would cost
/// two wake-ups per message.
public final class CrossLoopChannel<Element: Sendable>: @unchecked Sendable {
    /// How many values the channel holds without a receiver: the capacity asked for, rounded
    /// up to a power of two (at least 2).
    public let capacity: Int
    @usableFromInline let ring = UnsafeMutablePointer<spindle_ring_t>.allocate(capacity: 1)
    /// The ring's slots: each a sequence number (the C ring's) and the value after it.
    @usableFromInline let cells: UnsafeMutableRawPointer
    /// Bytes per cell: the sequence number, then the value (initialised only while the cell
    /// holds one), padded to the value's alignment.
    @usableFromInline let cellStride: Int
    /// Where a cell's value starts, after its sequence number.
    @usableFromInline let valueOffset: Int
    @usableFromInline let closedFlag = Atomic<Bool>(false)
    /// Waiters registered under `waiters`' lock; the counts let the fast path skip the lock.
    @usableFromInline let receiversWaiting = Atomic<Int>(0)
    @usableFromInline let sendersWaiting = Atomic<Int>(0)
    /// Guards `waiters` (a pthread mutex: only fibers about to park and their wakers take it).
    private let lock = Gate()
    private var waiters = Waiters()

    /// Makes a channel that buffers at least `capacity` values (at least 1).
    public init(capacity: Int) {
        precondition(capacity >= 1, "CrossLoopChannel capacity must be at least 1 (got \(capacity))")
        var slots = 2
        while slots < capacity { slots *= 2 }
        self.capacity = slots
        // A cell is the ring's sequence number then the value: no optional's tag byte, so an Int
        // message makes a 16-byte cell, four to a cache line.
        let alignment = Swift.max(MemoryLayout<Int>.alignment, MemoryLayout<Element>.alignment)
        func roundUp(_ value: Int, _ to: Int) -> Int { (value + to - 1) / to * to }
        valueOffset = roundUp(MemoryLayout<Int>.size, MemoryLayout<Element>.alignment)
        cellStride = roundUp(valueOffset + MemoryLayout<Element>.size, alignment)
        cells = .allocate(byteCount: slots * cellStride, alignment: alignment)
        for slot in 0..<slots { (cells + slot * cellStride + valueOffset).bindMemory(to: Element.self, capacity: 1) }
        spindle_ring_init(ring, cells, cellStride, slots)
        spindle_asymmetric_fences_setup()
    }

    deinit {
        // Values still queued: those published and not taken (nothing else runs now).
        var position = ring.pointee.dequeue_position
        while position != ring.pointee.enqueue_position {
            if spindle_ring_sequence(ring, position).pointee == position + 1 {
                valueSlot(position).deinitialize(count: 1)
            }
            position += 1
        }
        cells.deallocate()
        ring.deallocate()
    }

    /// Whether ``close()`` has been called.
    @inlinable public var isClosed: Bool { closedFlag.load(ordering: .acquiring) }

    // MARK: Sending

    /// Sends `value`, parking the fiber while the channel is full.
    ///
    /// Throws ``ChannelClosedError`` if the channel is or becomes closed before the value is
    /// queued, `CancellationError` if the fiber is cancelled while it waits, and
    /// ``FiberTimeoutError`` if an enclosing timeout expires. Call it from a fiber.
    @inlinable
    public func send(_ value: Element) throws {
        let me = Fiber.runningFiber("CrossLoopChannel.send")
        try Fiber.checkInterruption(me)
        var value = Optional(value)
        while true {
            if closedFlag.load(ordering: .acquiring) { throw ChannelClosedError() }
            if enqueue(&value) { return }
            try wait(me, asSender: true)
        }
    }

    /// Sends the values of `values` in order, parking while the channel is full. A run of free
    /// slots is claimed with one compare-and-swap and a waiting receiver woken once per run, so a
    /// batch costs little more than its copies.
    ///
    /// Throws as ``send(_:)`` does; the values before the one that could not be sent were sent.
    @inlinable
    public func send(contentsOf values: some Collection<Element>) throws {
        let me = Fiber.runningFiber("CrossLoopChannel.send(contentsOf:)")
        try Fiber.checkInterruption(me)
        var next = values.startIndex
        while next != values.endIndex {
            if closedFlag.load(ordering: .acquiring) { throw ChannelClosedError() }
            var claimed = 0
            let first = spindle_ring_claim_enqueue_many(
                ring, values.distance(from: next, to: values.endIndex), &claimed)
            if first < 0 {
                try wait(me, asSender: true)
                continue
            }
            for position in first..<(first + claimed) {
                valueSlot(position).initialize(to: values[next])
                values.formIndex(after: &next)
                spindle_ring_publish_enqueue(ring, position)
            }
            spindle_light_fence()
            if receiversWaiting.load(ordering: .relaxed) > 0 { wakeOne(receivers: true) }
        }
    }

    /// Queues `value` if there is room now and the channel is open; never waits. Safe from any
    /// thread, inside a fiber or not. Returns false (keeping nothing) when full or closed.
    @inlinable
    public func trySend(_ value: Element) -> Bool {
        if closedFlag.load(ordering: .acquiring) { return false }
        var value = Optional(value)
        return enqueue(&value)
    }

    /// Puts the value in the ring if there is room, then wakes a waiting receiver if any.
    @inlinable
    func enqueue(_ value: inout Element?) -> Bool {
        let position = spindle_ring_claim_enqueue(ring)
        if position < 0 { return false }
        valueSlot(position).initialize(to: value.take().unsafelyUnwrapped)
        spindle_ring_publish_enqueue(ring, position)
        spindle_light_fence()  // the value is visible before we look for waiters (see wait)
        if receiversWaiting.load(ordering: .relaxed) > 0 { wakeOne(receivers: true) }
        return true
    }

    // MARK: Receiving

    /// Receives the next value, parking the fiber while there is none. Returns `nil` once the
    /// channel is closed and drained.
    ///
    /// Throws `CancellationError` if the fiber is cancelled while it waits, and
    /// ``FiberTimeoutError`` if an enclosing timeout expires. Call it from a fiber.
    @inlinable
    public func receive() throws -> Element? {
        let me = Fiber.runningFiber("CrossLoopChannel.receive")
        try Fiber.checkInterruption(me)
        while true {
            if let value = dequeue() { return value }
            if closedFlag.load(ordering: .acquiring) { return dequeue() }
            try wait(me, asSender: false)
        }
    }

    /// Appends up to `maxCount` values to `buffer`, parking while there is none; returns how
    /// many it appended, 0 once the channel is closed and drained. The values ready are claimed
    /// with one compare-and-swap and a waiting sender woken once.
    ///
    /// Throws as ``receive()`` does.
    @inlinable
    public func receive(upTo maxCount: Int, into buffer: inout [Element]) throws -> Int {
        precondition(maxCount >= 1, "CrossLoopChannel.receive(upTo:into:) needs a count of at least 1")
        let me = Fiber.runningFiber("CrossLoopChannel.receive(upTo:into:)")
        try Fiber.checkInterruption(me)
        while true {
            let taken = dequeue(upTo: maxCount, into: &buffer)
            if taken > 0 { return taken }
            if closedFlag.load(ordering: .acquiring) { return dequeue(upTo: maxCount, into: &buffer) }
            try wait(me, asSender: false)
        }
    }

    /// Takes up to `maxCount` ready values into `buffer`, then wakes a waiting sender if any.
    @inlinable
    func dequeue(upTo maxCount: Int, into buffer: inout [Element]) -> Int {
        var claimed = 0
        let first = spindle_ring_claim_dequeue_many(ring, maxCount, &claimed)
        if first < 0 { return 0 }
        buffer.reserveCapacity(buffer.count + claimed)
        for position in first..<(first + claimed) {
            buffer.append(valueSlot(position).move())
            spindle_ring_publish_dequeue(ring, position)
        }
        spindle_light_fence()
        if sendersWaiting.load(ordering: .relaxed) > 0 { wakeOne(receivers: false) }
        return claimed
    }

    /// Takes a value if one is ready now; never waits. Safe from any thread.
    @inlinable
    public func tryReceive() -> Element? { dequeue() }

    /// Takes a value from the ring if there is one, then wakes a waiting sender if any.
    @inlinable
    func dequeue() -> Element? {
        let position = spindle_ring_claim_dequeue(ring)
        if position < 0 { return nil }
        let value = valueSlot(position).move()
        spindle_ring_publish_dequeue(ring, position)
        spindle_light_fence()
        if sendersWaiting.load(ordering: .relaxed) > 0 { wakeOne(receivers: false) }
        return value
    }

    /// The value of the cell at `position`, reached by its address alone (the sequence beside
    /// it belongs to the other threads' atomics).
    @inlinable @inline(__always)
    func valueSlot(_ position: Int) -> UnsafeMutablePointer<Element> {
        (cells + (position & (capacity - 1)) &* cellStride + valueOffset).assumingMemoryBound(to: Element.self)
    }

    // MARK: Closing

    /// Closes the channel: waiting receivers drain what is buffered, then get `nil`; waiting
    /// senders get ``ChannelClosedError``, and later sends fail. Safe from any thread; closing
    /// twice does nothing.
    public func close() {
        if closedFlag.exchange(true, ordering: .sequentiallyConsistent) { return }
        let claimed = lock.locked {
            var claimed: [UnsafeMutablePointer<CrossLoopWaiter>] = []
            while let node = waiters.receivers.claimFirst() { claimed.append(node) }
            while let node = waiters.senders.claimFirst() { claimed.append(node) }
            receiversWaiting.store(0, ordering: .sequentiallyConsistent)
            sendersWaiting.store(0, ordering: .sequentiallyConsistent)
            return claimed
        }
        for node in claimed { CrossLoopWaiter.deliver(node) }
    }

    // MARK: Waiting

    /// Parks `me` until a counterpart (or close) wakes it, unless the ring changed or the
    /// channel closed while it registered. Throws an interruption; after one, a wake that was
    /// already meant for `me` is passed on to the next waiter.
    @usableFromInline
    func wait(_ me: UnsafeMutablePointer<spindle_fiber_t>, asSender: Bool) throws {
        // The other side is often a few messages behind or ahead, not gone: look again for a
        // moment (a few hundred nanoseconds of pause instructions, no system call) before the
        // registration, whose heavy fence is a system call.
        for _ in 0..<Self.spinsBeforeWaiting {
            spindle_spin_pause()
            let ready =
                closedFlag.load(ordering: .relaxed)
                || (asSender ? spindle_ring_has_room(ring) : spindle_ring_has_value(ring)) != 0
            if ready { return }
        }
        let loop = Scheduler.of(me.pointee.sched).loop
        var node = CrossLoopWaiter(fiber: FiberRef(me), loop: loop)
        try withUnsafeMutablePointer(to: &node) { node in
            node.pointee.work.context = UnsafeMutableRawPointer(node)
            lock.locked {
                if asSender { waiters.senders.append(node) } else { waiters.receivers.append(node) }
                countWaiting(asSender: asSender, 1)
            }
            // Registered before we look again: with the light fences of enqueue and dequeue,
            // either their side sees this waiter or this side sees their change.
            spindle_heavy_fence()
            let ready =
                closedFlag.load(ordering: .sequentiallyConsistent)
                || (asSender ? spindle_ring_has_room(ring) : spindle_ring_has_value(ring)) != 0
            var reason = Fiber.WakeReason.ready
            if !ready {
                loop.beginRemoteWait()
                reason = Fiber.park(me, asSender ? .crossLoopSend : .crossLoopReceive, detail: 0, cancellable: true)
                loop.endRemoteWait()
            }
            // Off the list, or (claimed by a waker) wait until its wake has arrived: the node is
            // on this stack and must outlive it.
            let wasClaimed = lock.locked {
                guard node.pointee.isLinked else { return true }
                if asSender { waiters.senders.remove(node) } else { waiters.receivers.remove(node) }
                countWaiting(asSender: asSender, -1)
                return false
            }
            if wasClaimed {
                loop.beginRemoteWait()
                while !node.pointee.delivered {
                    _ = Fiber.park(me, asSender ? .crossLoopSend : .crossLoopReceive, detail: 0, cancellable: false)
                }
                loop.endRemoteWait()
            }
            if reason == .cancelled || reason == .timedOut {
                // A wake meant for this fiber must not be lost with it.
                if wasClaimed { wakeOne(receivers: !asSender) }
                try Fiber.throwIfInterrupted(reason)
            }
        }
    }

    /// How many times ``wait(_:asSender:)`` looks again before it registers the fiber.
    @usableFromInline static var spinsBeforeWaiting: Int { 64 }

    /// Wakes the longest-waiting receiver (or sender).
    @usableFromInline
    func wakeOne(receivers: Bool) {
        let node = lock.locked { () -> UnsafeMutablePointer<CrossLoopWaiter>? in
            guard let node = receivers ? waiters.receivers.claimFirst() : waiters.senders.claimFirst() else {
                return nil
            }
            countWaiting(asSender: !receivers, -1)
            return node
        }
        if let node { CrossLoopWaiter.deliver(node) }
    }

    /// Adds `change` to the senders' or receivers' waiting count (under the lock).
    private func countWaiting(asSender: Bool, _ change: Int) {
        if asSender {
            sendersWaiting.add(change, ordering: .sequentiallyConsistent)
        } else {
            receiversWaiting.add(change, ordering: .sequentiallyConsistent)
        }
    }

    struct Waiters {
        var receivers = CrossLoopWaiterQueue()
        var senders = CrossLoopWaiterQueue()
    }
}

extension CrossLoopChannel: Sequence {
    /// Receives until the channel is closed and drained, or the fiber is interrupted.
    public struct Iterator: IteratorProtocol {
        @usableFromInline let channel: CrossLoopChannel
        @inlinable init(channel: CrossLoopChannel) { self.channel = channel }
        @inlinable public mutating func next() -> Element? { (try? channel.receive()) ?? nil }
    }

    @inlinable public func makeIterator() -> Iterator { Iterator(channel: self) }
}

// MARK: - Waiters

/// A fiber waiting on a ``CrossLoopChannel``, on its own stack. Linked under the channel's
/// lock; once a waker claims it (unlinks it under the lock), its `work` node goes to the
/// fiber's loop, whose thread marks it delivered and wakes the fiber. The fiber does not leave
/// the wait before that.
struct CrossLoopWaiter {
    var work = spindle_remote_work_t(next: nil, run: crossLoopWaiterArrived, context: nil)
    let fiber: FiberRef
    unowned(unsafe) let loop: EventLoop
    var next: UnsafeMutablePointer<CrossLoopWaiter>?
    var prev: UnsafeMutablePointer<CrossLoopWaiter>?
    var isLinked = false
    /// Set on the fiber's thread when the claimed wake arrives.
    var delivered = false

    init(fiber: FiberRef, loop: EventLoop) {
        self.fiber = fiber
        self.loop = loop
    }

    /// Sends a claimed waiter its wake: at once on its own loop's thread, else through its
    /// loop's inbox. Called outside the lock.
    static func deliver(_ node: UnsafeMutablePointer<CrossLoopWaiter>) {
        let loop = node.pointee.loop
        if loop.isOnLoopThread { return arrived(node) }
        if !loop.post(remote: UnsafeMutableRawPointer(node).assumingMemoryBound(to: spindle_remote_work_t.self)) {
            fatalError("CrossLoopChannel: \(loop) closed while its fiber \(node.pointee.fiber) waited on a channel")
        }
    }

    /// On the waiter's loop thread: the wake has arrived.
    static func arrived(_ node: UnsafeMutablePointer<CrossLoopWaiter>) {
        node.pointee.delivered = true
        let fiber = node.pointee.fiber
        if fiber.isParked { fiber.wake(.ready) }
    }
}

private let crossLoopWaiterArrived: @convention(c) (UnsafeMutablePointer<spindle_remote_work_t>?, Int32) -> Void = {
    work, _ in
    // `work` is the waiter's first field.
    CrossLoopWaiter.arrived(
        UnsafeMutableRawPointer(work.unsafelyUnwrapped).assumingMemoryBound(to: CrossLoopWaiter.self))
}

/// A FIFO of waiters, linked through the nodes; used only under the channel's lock.
struct CrossLoopWaiterQueue {
    var head: UnsafeMutablePointer<CrossLoopWaiter>?
    var tail: UnsafeMutablePointer<CrossLoopWaiter>?

    mutating func append(_ node: UnsafeMutablePointer<CrossLoopWaiter>) {
        node.pointee.isLinked = true
        node.pointee.next = nil
        node.pointee.prev = tail
        if let tail { tail.pointee.next = node } else { head = node }
        tail = node
    }

    /// Unlinks and returns the longest-waiting node: the caller now owes it a wake.
    mutating func claimFirst() -> UnsafeMutablePointer<CrossLoopWaiter>? {
        guard let node = head else { return nil }
        remove(node)
        return node
    }

    mutating func remove(_ node: UnsafeMutablePointer<CrossLoopWaiter>) {
        guard node.pointee.isLinked else { return }
        node.pointee.isLinked = false
        if let prev = node.pointee.prev { prev.pointee.next = node.pointee.next } else { head = node.pointee.next }
        if let next = node.pointee.next { next.pointee.prev = node.pointee.prev } else { tail = node.pointee.prev }
        node.pointee.next = nil
        node.pointee.prev = nil
    }
}
