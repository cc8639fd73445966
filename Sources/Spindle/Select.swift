import CSpindleSupport
import SpindleLoop

/// One channel operation offered to ``Fiber/select(_:timeout:)-(SelectCase...,_)``: made by
/// ``Channel/onReceive(_:)`` or ``Channel/onSend(_:_:)``.
public struct SelectCase {
    @usableFromInline let operation: SelectOperation

    @usableFromInline init(_ operation: SelectOperation) { self.operation = operation }
}

extension Channel {
    /// A select case that receives from this channel; `handler` gets the value, or `nil` when
    /// the channel is closed and drained (a closed channel is always ready, as in Go).
    @inlinable
    public func onReceive(_ handler: @escaping (Element?) throws -> Void) -> SelectCase {
        SelectCase(ReceiveOperation(self, handler))
    }

    /// A select case that sends `value` on this channel; `handler` runs once it is taken. If
    /// this case is chosen on a closed channel, the select throws ``ChannelClosedError``.
    @inlinable
    public func onSend(_ value: Element, _ handler: @escaping () throws -> Void = {}) -> SelectCase {
        SelectCase(SendOperation(self, value, handler))
    }
}

extension Fiber {
    /// Waits until one of `cases` can proceed, performs it, runs its handler and returns its
    /// index; returns `nil` if `timeout` passes first (a zero timeout never waits: it is Go's
    /// `default` case).
    ///
    /// - Fair: when several cases are ready, each is equally likely to be chosen (they are
    ///   tried in a fresh random order every time), so no channel starves another.
    /// - Exactly one case happens: a value is taken from (or given to) one channel only; the
    ///   others are left as they were.
    /// - Cancellable: a cancelled fiber throws `CancellationError`; an enclosing
    ///   ``withTimeout(_:_:)`` that expires throws ``FiberTimeoutError``.
    /// - Cost: the waiting nodes and the cases' values live on the fiber's stack, but each case
    ///   is a small object with its handler (and the handler's context, when it captures), so a
    ///   select allocates a few objects; plain ``Channel/send(_:)`` and ``Channel/receive()``
    ///   allocate nothing.
    ///
    /// ```swift
    /// try Fiber.select(
    ///     quotes.onReceive { quote in book.apply(quote) },
    ///     orders.onSend(order) { sent += 1 },
    ///     timeout: .milliseconds(5))
    /// ```
    @discardableResult
    public static func select(_ cases: SelectCase..., timeout: Duration? = nil) throws -> Int? {
        try select(cases, timeout: timeout)
    }

    /// ``select(_:timeout:)-(SelectCase...,_)`` over an array of cases.
    @discardableResult
    public static func select(_ cases: [SelectCase], timeout: Duration? = nil) throws -> Int? {
        let me = runningFiber("Fiber.select")
        try checkInterruption(me)
        precondition(!cases.isEmpty || timeout != nil, "Fiber.select with no cases and no timeout would wait forever")
        for selectCase in cases { selectCase.operation.steps.enter(selectCase.operation) }
        // Each case's value waits in a slot on this fiber's stack, not in an allocation of its own:
        // every slot has the widest case's size and alignment.
        let stride = cases.reduce(1) { max($0, $1.operation.slotStride) }
        return try withUnsafeTemporaryAllocation(byteCount: stride * max(cases.count, 1), alignment: stride) { slots in
            for (index, selectCase) in cases.enumerated() {
                selectCase.operation.slotAddress = slots.baseAddress! + index * stride
                selectCase.operation.steps.bind(selectCase.operation)
            }
            defer {
                for selectCase in cases {
                    selectCase.operation.steps.unbind(selectCase.operation)
                    selectCase.operation.slotAddress = nil
                }
            }
            return try choose(me, cases, timeout: timeout)
        }
    }

    /// ``select(_:timeout:)-([SelectCase],_)`` once every case has its slot: poll the cases in a
    /// fresh random order, then wait.
    private static func choose(
        _ me: UnsafeMutablePointer<spindle_fiber_t>, _ cases: [SelectCase], timeout: Duration?
    ) throws -> Int? {
        let count = cases.count
        return try withUnsafeTemporaryAllocation(of: Int.self, capacity: max(count, 1)) { order in
            // A fresh random order each time: Fisher-Yates with the scheduler's generator.
            let scheduler = Scheduler.of(me.pointee.sched)
            for index in 0..<count {
                let other = Int(scheduler.random.next(upperBound: UInt64(index + 1)))
                order[index] = order[other]
                order[other] = index
            }
            for index in order.prefix(count) where try cases[index].operation.steps.poll(cases[index].operation) {
                return index
            }
            if let timeout, timeout <= .zero { return nil }
            return try wait(me, cases, order: UnsafeBufferPointer(rebasing: order.prefix(count)), timeout: timeout)
        }
    }

    /// Parks `me` on every case's channel until one case is picked (by a counterpart or a
    /// `close`), the timeout passes (nil), or the wait is interrupted (thrown).
    private static func wait(
        _ me: UnsafeMutablePointer<spindle_fiber_t>, _ cases: [SelectCase], order: UnsafeBufferPointer<Int>,
        timeout: Duration?
    ) throws -> Int? {
        var selection = -1
        let reason: WakeReason? = try withUnsafeMutablePointer(to: &selection) { selection in
            try withUnsafeTemporaryAllocation(of: ChannelWaiter.self, capacity: cases.count) { nodes in
                for index in order {
                    let node = nodes.baseAddress! + index
                    node.initialize(
                        to: ChannelWaiter(
                            fiber: me, slot: cases[index].operation.slotAddress.unsafelyUnwrapped, selection: selection,
                            caseIndex: index)
                    )
                    cases[index].operation.steps.enqueue(cases[index].operation, node)
                }
                defer {
                    for index in order {
                        cases[index].operation.steps.dequeue(cases[index].operation, nodes.baseAddress! + index)
                    }
                    _ = nodes.deinitialize()
                }
                func parkOnce() throws -> WakeReason {
                    let reason = park(me, .select, detail: UInt64(cases.count), cancellable: true)
                    try throwIfInterrupted(reason)
                    return reason
                }
                guard let timeout else { return try parkOnce() }
                do {
                    return try withTimeout(timeout) { try parkOnce() }
                } catch is FiberTimeoutError where me.pointee.deadline_passed == 0 {
                    return nil  // this select's own timeout, not an enclosing one
                }
            }
        }
        guard let reason else { return nil }
        let winner = selection
        precondition(winner >= 0, "Fiber.select woke with no case chosen")
        try cases[winner].operation.steps.complete(cases[winner].operation, reason == .closed)
        return winner
    }
}

/// The type-erased half of a select case: what the select needs of its channel operation.
///
/// Its steps are functions made where the element type is known (the `@inlinable` `onReceive`
/// and `onSend`, specialised in the caller), kept as plain function values. Overridden methods
/// of a generic class run unspecialised: each of their uses of `Element?` looked up Optional's
/// metadata for the element type, over half of a select's instructions.
@usableFromInline
class SelectOperation {
    /// The steps, each given the operation itself.
    @usableFromInline struct Steps {
        /// Checks the channel belongs to the running fiber's loop.
        @usableFromInline let enter: (SelectOperation) -> Void
        /// Initializes the slot the select lent (``slotAddress``, on the selecting fiber's stack).
        @usableFromInline let bind: (SelectOperation) -> Void
        /// Deinitializes the slot: the select is over.
        @usableFromInline let unbind: (SelectOperation) -> Void
        /// Performs the operation now if it can (running the handler); false if it would wait.
        @usableFromInline let poll: (SelectOperation) throws -> Bool
        @usableFromInline let enqueue: (SelectOperation, UnsafeMutablePointer<ChannelWaiter>) -> Void
        @usableFromInline let dequeue: (SelectOperation, UnsafeMutablePointer<ChannelWaiter>) -> Void
        /// The case was chosen while the fiber waited: finish it and run the handler.
        @usableFromInline let complete: (SelectOperation, _ closed: Bool) throws -> Void

        @inlinable
        init(
            enter: @escaping (SelectOperation) -> Void,
            bind: @escaping (SelectOperation) -> Void,
            unbind: @escaping (SelectOperation) -> Void, poll: @escaping (SelectOperation) throws -> Bool,
            enqueue: @escaping (SelectOperation, UnsafeMutablePointer<ChannelWaiter>) -> Void,
            dequeue: @escaping (SelectOperation, UnsafeMutablePointer<ChannelWaiter>) -> Void,
            complete: @escaping (SelectOperation, Bool) throws -> Void
        ) {
            (self.enter, self.bind, self.unbind, self.poll) = (enter, bind, unbind, poll)
            (self.enqueue, self.dequeue, self.complete) = (enqueue, dequeue, complete)
        }
    }

    @usableFromInline let steps: Steps
    /// Room for the slot the case's value waits in (`Element?`): its size rounded up to a power
    /// of two, which is also enough alignment.
    @usableFromInline let slotStride: Int
    /// The slot the select lent, while it runs.
    @exclusivity(unchecked) @usableFromInline var slotAddress: UnsafeMutableRawPointer?

    /// The lent slot, typed.
    @inlinable @inline(__always)
    func slot<Element>(of _: Element.Type) -> UnsafeMutablePointer<Element?> {
        slotAddress.unsafelyUnwrapped.assumingMemoryBound(to: Element?.self)
    }

    @inlinable
    init<Element>(steps: Steps, element _: Element.Type) {
        self.steps = steps
        var stride = 1
        while stride < max(MemoryLayout<Element?>.size, MemoryLayout<Element?>.alignment) { stride <<= 1 }
        slotStride = stride
    }
}

@usableFromInline
final class ReceiveOperation<Element>: SelectOperation {
    @usableFromInline let channel: Channel<Element>
    @usableFromInline let handler: (Element?) throws -> Void

    @inlinable
    init(_ channel: Channel<Element>, _ handler: @escaping (Element?) throws -> Void) {
        self.channel = channel
        self.handler = handler
        super.init(
            steps: Steps(
                enter: {
                    _ = Self.of($0).channel.enter("Fiber.select (receive case)")
                },
                bind: { $0.slot(of: Element.self).initialize(to: nil) },
                unbind: { $0.slot(of: Element.self).deinitialize(count: 1) },
                poll: { operation in
                    let me = Self.of(operation)
                    let slot = operation.slot(of: Element.self)
                    guard me.channel.pollReceive(into: &slot.pointee) else { return false }
                    try me.handler(slot.pointee.take())
                    return true
                },
                enqueue: { Self.of($0).channel.enqueue($1, asSender: false) },
                dequeue: { Self.of($0).channel.dequeue($1, asSender: false) },
                complete: { operation, closed in
                    try Self.of(operation).handler(
                        closed ? nil : operation.slot(of: Element.self).pointee.take())
                }),
            element: Element.self)
    }

    /// The operation a step is given, as this class (a static call: a closure that named `Self`
    /// itself would capture its metadata, a context allocated per closure).
    @inlinable @inline(__always)
    static func of(_ operation: SelectOperation) -> ReceiveOperation<Element> {
        unsafeDowncast(operation, to: ReceiveOperation<Element>.self)
    }
}

@usableFromInline
final class SendOperation<Element>: SelectOperation {
    @usableFromInline let channel: Channel<Element>
    @usableFromInline let handler: () throws -> Void
    /// The value to send, while no select holds it in its slot.
    @exclusivity(unchecked) @usableFromInline var value: Element?

    @inlinable
    init(_ channel: Channel<Element>, _ value: Element, _ handler: @escaping () throws -> Void) {
        self.channel = channel
        self.handler = handler
        self.value = value
        super.init(
            steps: Steps(
                enter: { _ = Self.of($0).channel.enter("Fiber.select (send case)") },
                bind: {
                    $0.slot(of: Element.self).initialize(to: Self.of($0).value.take())
                },
                // A value no receiver took goes back: the case can be offered to another select.
                unbind: { Self.of($0).value = $0.slot(of: Element.self).move() },
                poll: { operation in
                    let me = Self.of(operation)
                    guard try me.channel.pollSend(&operation.slot(of: Element.self).pointee) else { return false }
                    try me.handler()
                    return true
                },
                enqueue: { Self.of($0).channel.enqueue($1, asSender: true) },
                dequeue: { Self.of($0).channel.dequeue($1, asSender: true) },
                complete: { operation, closed in
                    if closed { throw ChannelClosedError() }
                    try Self.of(operation).handler()
                }),
            element: Element.self)
    }

    /// The operation a step is given, as this class (a static call: a closure that named `Self`
    /// itself would capture its metadata, a context allocated per closure).
    @inlinable @inline(__always)
    static func of(_ operation: SelectOperation) -> SendOperation<Element> {
        unsafeDowncast(operation, to: SendOperation<Element>.self)
    }
}

/// xorshift64*: a few instructions per draw, good enough to shuffle select cases.
struct FastRandom: RandomNumberGenerator {
    private var state: UInt64

    init() {
        var system = SystemRandomNumberGenerator()
        state = system.next() | 1
    }

    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
}
