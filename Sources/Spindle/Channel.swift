import CSpindleSupport
import SpindleLoop

/// Thrown by ``Channel/send(_:)`` when the channel is closed (before or while the sender waits).
public struct ChannelClosedError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The error ``Channel/send(_:)`` throws.
    @inlinable public init() {}
    public var description: String { "send on a closed channel" }
}

/// A channel between the fibers of one loop: unbuffered (a send waits for a receiver) or
/// buffered (a send waits only while `capacity` values are already queued).
///
/// - Senders and receivers are served first come, first served; values arrive in send order.
/// - ``close()`` wakes every waiter: receivers drain what is buffered, then get `nil`
///   (end of stream); senders, waiting or later, get ``ChannelClosedError``.
/// - Waiting is cancellable: a cancelled fiber's wait throws `CancellationError`, an expired
///   ``Fiber/withTimeout(_:_:)`` throws ``FiberTimeoutError``; the value of a cancelled send
///   is not delivered.
/// - Nothing allocates per message once a buffered channel's ring is made: waiters and their
///   values wait on the waiting fibers' own stacks.
///
/// A channel belongs to the loop of the first fiber that uses it; using it from another loop's
/// fiber stops the process with a message. Iterate with `for value in channel` (the loop ends
/// when the channel is closed and drained, or when the fiber is interrupted — check
/// ``Fiber/checkCancellation()`` after it), or call ``receive()`` to see errors.
public final class Channel<Element> {
    /// How many values may wait in the channel without a receiver (0: unbuffered).
    public let capacity: Int
    @exclusivity(unchecked) @usableFromInline var ring: [Element?]
    @exclusivity(unchecked) @usableFromInline var head = 0
    @exclusivity(unchecked) @usableFromInline var buffered = 0
    @exclusivity(unchecked) @usableFromInline var receivers = WaiterQueue()
    @exclusivity(unchecked) @usableFromInline var senders = WaiterQueue()
    @exclusivity(unchecked) @usableFromInline var owner: UnsafeMutablePointer<spindle_sched_t>?
    /// Whether ``close()`` has been called.
    @exclusivity(unchecked) public internal(set) var isClosed = false

    /// Makes a channel that buffers up to `capacity` values (0, the default: unbuffered).
    public init(capacity: Int = 0) {
        precondition(capacity >= 0, "Channel capacity cannot be negative (got \(capacity))")
        self.capacity = capacity
        self.ring = Array(repeating: nil, count: capacity)
        Scheduler.countChannelMade()
    }

    /// Values buffered right now.
    public var count: Int { buffered }

    // MARK: Sending

    /// Sends `value`, waiting while no receiver is ready and the buffer is full.
    ///
    /// Throws ``ChannelClosedError`` if the channel is or becomes closed before the value is
    /// taken, `CancellationError` if the fiber is cancelled while it waits, and
    /// ``FiberTimeoutError`` if an enclosing timeout expires.
    @inlinable
    public func send(_ value: Element) throws {
        let me = enter("Channel.send")
        try Fiber.checkInterruption(me)
        var slot: Element? = value
        if try pollSend(&slot) { return }
        if try wait(me, with: &slot, asSender: true) == .closed { throw ChannelClosedError() }
    }

    /// Delivers `value` now if a receiver waits or the buffer has room (taking it out of
    /// `value`); false if the sender would have to wait. Throws ``ChannelClosedError`` when closed.
    @inlinable @inline(__always)
    func pollSend(_ value: inout Element?) throws -> Bool {
        if isClosed { throw ChannelClosedError() }
        if let receiver = receivers.popFirst() {
            Self.slot(of: receiver).pointee = value.take()
            FiberRef(receiver.pointee.fiber).wake(.ready)
            return true
        }
        if buffered < capacity {
            ring[(head + buffered) % capacity] = value.take()
            buffered += 1
            return true
        }
        return false
    }

    // MARK: Receiving

    /// Receives the next value, waiting while there is none. Returns `nil` once the channel is
    /// closed and drained.
    ///
    /// Throws `CancellationError` if the fiber is cancelled while it waits, and
    /// ``FiberTimeoutError`` if an enclosing timeout expires.
    @inlinable
    public func receive() throws -> Element? {
        let me = enter("Channel.receive")
        try Fiber.checkInterruption(me)
        var slot: Element? = nil
        if pollReceive(into: &slot) { return slot }
        return try wait(me, with: &slot, asSender: false) == .closed ? nil : slot
    }

    /// Receives a value if one is ready now (buffered or from a waiting sender); never waits.
    @inlinable
    public func tryReceive() -> Element? {
        _ = enter("Channel.tryReceive")
        var slot: Element? = nil
        return pollReceive(into: &slot) ? slot : nil
    }

    /// Takes a buffered value or a waiting sender's into `value` and returns true; at the end
    /// of a closed, drained channel leaves `value` nil and returns true; false if the receiver
    /// would have to wait.
    @inlinable @inline(__always)
    func pollReceive(into value: inout Element?) -> Bool {
        if buffered > 0 {
            value = ring[head].take()
            head = (head + 1) % capacity
            buffered -= 1
            // A waiting sender's value takes the freed place, in order.
            if let sender = senders.popFirst() {
                ring[(head + buffered) % capacity] = Self.slot(of: sender).pointee.take()
                buffered += 1
                FiberRef(sender.pointee.fiber).wake(.ready)
            }
            return true
        }
        if let sender = senders.popFirst() {
            value = Self.slot(of: sender).pointee.take()
            FiberRef(sender.pointee.fiber).wake(.ready)
            return true
        }
        return isClosed
    }

    // MARK: Closing

    /// Closes the channel: waiting receivers get `nil`, waiting senders ``ChannelClosedError``,
    /// and later sends fail; buffered values can still be received. Closing twice does nothing.
    public func close() {
        if let owner { Scheduler.of(owner).loop.preconditionOnLoopThread("Channel.close") }
        if isClosed { return }
        isClosed = true
        while let receiver = receivers.popFirst() { FiberRef(receiver.pointee.fiber).wake(.closed) }
        while let sender = senders.popFirst() { FiberRef(sender.pointee.fiber).wake(.closed) }
    }

    // MARK: Internals

    /// Parks `me` as a waiting sender or receiver whose value waits in `slot` on its own stack,
    /// until a counterpart takes (or fills) the slot, the channel closes, or the wait is
    /// interrupted (then `me` leaves the queue and the interruption is thrown).
    @inlinable
    func wait(
        _ me: UnsafeMutablePointer<spindle_fiber_t>, with slot: inout Element?, asSender: Bool
    ) throws -> Fiber.WakeReason {
        let reason = withUnsafeMutablePointer(to: &slot) { slot in
            var node = ChannelWaiter(fiber: me, slot: UnsafeMutableRawPointer(slot))
            return withUnsafeMutablePointer(to: &node) { node in
                enqueue(node, asSender: asSender)
                me.pointee.park_object = Unmanaged.passUnretained(self).toOpaque()
                let reason = Fiber.park(me, asSender ? .channelSend : .channelReceive, detail: 0, cancellable: true)
                me.pointee.park_object = nil
                if reason == .cancelled || reason == .timedOut { dequeue(node, asSender: asSender) }
                return reason
            }
        }
        try Fiber.throwIfInterrupted(reason)
        return reason
    }

    @inlinable @inline(__always)
    func enqueue(_ node: UnsafeMutablePointer<ChannelWaiter>, asSender: Bool) {
        if asSender { senders.append(node) } else { receivers.append(node) }
    }

    @inlinable @inline(__always)
    func dequeue(_ node: UnsafeMutablePointer<ChannelWaiter>, asSender: Bool) {
        if asSender { senders.remove(node) } else { receivers.remove(node) }
    }

    /// ``enqueue(_:asSender:)`` when `linking`, else ``dequeue(_:asSender:)``.
    @inlinable @inline(__always)
    func queue(_ node: UnsafeMutablePointer<ChannelWaiter>, asSender: Bool, linking: Bool) {
        if linking { enqueue(node, asSender: asSender) } else { dequeue(node, asSender: asSender) }
    }

    /// The running fiber, after checking it belongs to this channel's loop.
    @inlinable @inline(__always)
    func enter(_ what: StaticString) -> UnsafeMutablePointer<spindle_fiber_t> {
        let me = Fiber.runningFiber(what)
        let scheduler = me.pointee.sched
        if _slowPath(owner != scheduler) {
            if owner == nil {
                owner = scheduler
            } else {
                wrongLoop(what, owner: owner.unsafelyUnwrapped, caller: scheduler.unsafelyUnwrapped)
            }
        }
        return me
    }

    @inline(never) @usableFromInline
    func wrongLoop(
        _ what: StaticString, owner: UnsafeMutablePointer<spindle_sched_t>,
        caller: UnsafeMutablePointer<spindle_sched_t>
    ) -> Never {
        fatalError(
            "\(what): this channel belongs to the fibers of \(Scheduler.of(owner).loop), but it was used "
                + "from a fiber of \(Scheduler.of(caller).loop); fibers never migrate, so a Channel connects fibers "
                + "of one loop (between loops, use a CrossLoopChannel)")
    }

    /// Where a waiting fiber keeps the value it sends or receives (on its own stack).
    @inlinable @inline(__always)
    static func slot(of waiter: UnsafeMutablePointer<ChannelWaiter>) -> UnsafeMutablePointer<Element?> {
        waiter.pointee.slot.assumingMemoryBound(to: Element?.self)
    }

    deinit {
        if receivers.hasLiveWaiter || senders.hasLiveWaiter {
            spindleWarning("a Channel was released with fibers still waiting on it; they stay parked")
        }
    }
}

extension Channel: Sequence {
    /// Receives until the channel is closed and drained, or the fiber is interrupted.
    public struct Iterator: IteratorProtocol {
        @usableFromInline let channel: Channel
        @inlinable init(channel: Channel) { self.channel = channel }
        @inlinable public mutating func next() -> Element? { (try? channel.receive()) ?? nil }
    }

    @inlinable public func makeIterator() -> Iterator { Iterator(channel: self) }
}
