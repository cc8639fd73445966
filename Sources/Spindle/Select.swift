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
    ///   select allocates a few objects. ``select(_:_:timeout:)`` over clauses allocates nothing.
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
            // A buffer, not the array: the array then provably does not escape, and the
            // caller's variadic array of cases stays on its stack.
            return try cases.withUnsafeBufferPointer { try selectCore(me, OperationCases(cases: $0), timeout: timeout) }
        }
    }

    /// The select shared by both APIs, once every case has its slot: poll the cases in a fresh
    /// random order; else park on every case's channel until one is picked (by a counterpart or
    /// a `close`), the timeout passes (nil), or the wait is interrupted (thrown). Inlined where
    /// the cases' types are known, so a select of clauses runs specialised.
    @inlinable
    static func selectCore<Cases: SelectCaseSet>(
        _ me: UnsafeMutablePointer<spindle_fiber_t>, _ cases: Cases, timeout: Duration?
    ) throws -> Int? {
        let count = cases.count
        return try withUnsafeTemporaryAllocation(of: Int.self, capacity: max(count, 1)) { buffer in
            let order = UnsafeBufferPointer(rebasing: buffer.prefix(count))
            shuffledIndices(me, into: buffer.baseAddress.unsafelyUnwrapped, count: count)
            for index in order where try cases.poll(index) { return index }
            if let timeout, timeout <= .zero { return nil }
            var selection = -1
            let reason: WakeReason? = try withUnsafeMutablePointer(to: &selection) { selection in
                try withUnsafeTemporaryAllocation(of: ChannelWaiter.self, capacity: max(count, 1)) { nodes in
                    for index in order {
                        let node = nodes.baseAddress.unsafelyUnwrapped + index
                        node.initialize(
                            to: ChannelWaiter(
                                fiber: me, slot: cases.slot(index), selection: selection, caseIndex: index))
                        cases.queue(index, node, linking: true)
                    }
                    defer {
                        for index in order {
                            cases.queue(index, nodes.baseAddress.unsafelyUnwrapped + index, linking: false)
                        }
                        _ = nodes.baseAddress.unsafelyUnwrapped.deinitialize(count: count)
                    }
                    return try parkInSelect(me, cases: count, timeout: timeout)
                }
            }
            guard let reason else { return nil }
            let winner = selection
            precondition(winner >= 0, "Fiber.select woke with no case chosen")
            try cases.complete(winner, closed: reason == .closed)
            return winner
        }
    }

    /// Writes `0..<count` into `order` in a fresh random order: Fisher-Yates with the
    /// scheduler's generator, lent (the running fiber's loop holds it: no retain and release).
    @usableFromInline
    static func shuffledIndices(
        _ me: UnsafeMutablePointer<spindle_fiber_t>, into order: UnsafeMutablePointer<Int>, count: Int
    ) {
        guard count > 0 else { return }
        order[0] = 0
        Scheduler.lent(me.pointee.sched.unsafelyUnwrapped)._withUnsafeGuaranteedRef { scheduler in
            for index in 1..<count {
                let other = Int(scheduler.random.next(below: UInt64(index + 1)))
                order[index] = order[other]
                order[other] = index
            }
        }
    }

    /// Parks a select on its cases' channels: the wake reason, or nil when its own timeout passed.
    @usableFromInline
    static func parkInSelect(_ me: UnsafeMutablePointer<spindle_fiber_t>, cases: Int, timeout: Duration?) throws
        -> WakeReason?
    {
        func parkOnce() throws -> WakeReason {
            let reason = park(me, .select, detail: UInt64(cases), cancellable: true)
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

/// The cases of one select, as ``Fiber/selectCore(_:_:timeout:)`` uses them: by index.
@usableFromInline
protocol SelectCaseSet {
    var count: Int { get }
    /// Performs case `index` now if it can (running its handler); false if it would wait.
    func poll(_ index: Int) throws -> Bool
    /// Where case `index`'s value waits (an `Element?`).
    func slot(_ index: Int) -> UnsafeMutableRawPointer
    /// Queues a waiter for case `index` on its channel (`linking`), or takes it off.
    func queue(_ index: Int, _ node: UnsafeMutablePointer<ChannelWaiter>, linking: Bool)
    /// Case `index` was picked while the select waited: finish it.
    func complete(_ index: Int, closed: Bool) throws
}

/// The cases of ``Fiber/select(_:timeout:)-([SelectCase],_)``: objects with their steps.
struct OperationCases: SelectCaseSet {
    let cases: UnsafeBufferPointer<SelectCase>

    var count: Int { cases.count }
    func poll(_ index: Int) throws -> Bool { try cases[index].operation.steps.poll(cases[index].operation) }
    func slot(_ index: Int) -> UnsafeMutableRawPointer { cases[index].operation.slotAddress.unsafelyUnwrapped }
    func queue(_ index: Int, _ node: UnsafeMutablePointer<ChannelWaiter>, linking: Bool) {
        cases[index].operation.steps.queue(cases[index].operation, node, linking)
    }
    func complete(_ index: Int, closed: Bool) throws {
        try cases[index].operation.steps.complete(cases[index].operation, closed)
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
        /// Queues a waiter on the case's channel (`linking`), or takes it off.
        @usableFromInline let queue: (SelectOperation, UnsafeMutablePointer<ChannelWaiter>, _ linking: Bool) -> Void
        /// The case was chosen while the fiber waited: finish it and run the handler.
        @usableFromInline let complete: (SelectOperation, _ closed: Bool) throws -> Void

        @inlinable
        init(
            enter: @escaping (SelectOperation) -> Void,
            bind: @escaping (SelectOperation) -> Void,
            unbind: @escaping (SelectOperation) -> Void, poll: @escaping (SelectOperation) throws -> Bool,
            queue: @escaping (SelectOperation, UnsafeMutablePointer<ChannelWaiter>, Bool) -> Void,
            complete: @escaping (SelectOperation, Bool) throws -> Void
        ) {
            (self.enter, self.bind, self.unbind, self.poll) = (enter, bind, unbind, poll)
            (self.queue, self.complete) = (queue, complete)
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
                queue: { Self.of($0).channel.queue($1, asSender: false, linking: $2) },
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
                queue: { Self.of($0).channel.queue($1, asSender: true, linking: $2) },
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

// MARK: Clauses: a select that allocates nothing

/// One channel operation offered to ``Fiber/select(_:_:timeout:)``, kept in a variable of the
/// selecting code: a ``ReceiveClause`` (``Channel/receiving()``) or a ``SendClause``
/// (``Channel/sending(_:)``). Only Spindle's two clause types conform: the requirements are its
/// own and may change. A clause's `Element?` is its first stored property, at offset 0 (Swift
/// lays out a struct's stored properties in declaration order), so the select hands the
/// clause's address to the counterpart as the value's: no key path is looked up.
public protocol SelectClause {
    /// Checks the channel belongs to the running fiber's loop and readies the clause.
    mutating func _beginSelect()
    /// Performs the operation now if it can; false if it would wait.
    mutating func _pollSelect() throws -> Bool
    /// Queues a waiter (a `ChannelWaiter`) on the clause's channel (`linking`), or takes it off.
    func _queueSelect(_ node: UnsafeMutableRawPointer, linking: Bool)
    /// The clause was picked while the select waited; `closed`: by the channel's `close()`.
    mutating func _completeSelect(closed: Bool) throws
}

/// A receive offered to ``Fiber/select(_:_:timeout:)``: once a select returns this clause's
/// index, ``value`` holds what it received, or nil when the channel was closed and drained (a
/// closed channel is always ready, as in Go). Reusable: each select starts it afresh.
public struct ReceiveClause<Element>: SelectClause {
    /// First: the select's slot for this clause (see ``SelectClause``).
    @usableFromInline var received: Element?
    @usableFromInline let channel: Channel<Element>

    @inlinable init(_ channel: Channel<Element>) {
        self.channel = channel
        self.received = nil
    }

    /// The value received when a select last picked this clause; nil when the channel was
    /// closed and drained, or before any select picked it.
    @inlinable public var value: Element? { received }

    /// Moves ``value`` out, leaving nil.
    @inlinable public mutating func take() -> Element? { received.take() }

    @inlinable public mutating func _beginSelect() {
        _ = channel.enter("Fiber.select (receive clause)")
        received = nil
    }

    @inlinable public mutating func _pollSelect() throws -> Bool { channel.pollReceive(into: &received) }

    @inlinable public func _queueSelect(_ node: UnsafeMutableRawPointer, linking: Bool) {
        channel.queue(node.assumingMemoryBound(to: ChannelWaiter.self), asSender: false, linking: linking)
    }

    @inlinable public mutating func _completeSelect(closed: Bool) throws {}
}

/// A send offered to ``Fiber/select(_:_:timeout:)``: once a select returns this clause's
/// index, the value was taken (``isSent``). A select that picks it on a closed channel throws
/// ``ChannelClosedError``. While no select has picked it, it keeps its value and can be offered
/// again.
public struct SendClause<Element>: SelectClause {
    /// First: the select's slot for this clause (see ``SelectClause``).
    @usableFromInline var pending: Element?
    @usableFromInline let channel: Channel<Element>

    @inlinable init(_ channel: Channel<Element>, _ value: Element) {
        self.channel = channel
        self.pending = value
    }

    /// Whether a select sent the value.
    @inlinable public var isSent: Bool { pending == nil }

    @inlinable public mutating func _beginSelect() {
        _ = channel.enter("Fiber.select (send clause)")
        precondition(pending != nil, "Fiber.select: this SendClause's value was sent already; make a new one")
    }

    @inlinable public mutating func _pollSelect() throws -> Bool { try channel.pollSend(&pending) }

    @inlinable public func _queueSelect(_ node: UnsafeMutableRawPointer, linking: Bool) {
        channel.queue(node.assumingMemoryBound(to: ChannelWaiter.self), asSender: true, linking: linking)
    }

    @inlinable public mutating func _completeSelect(closed: Bool) throws {
        if closed { throw ChannelClosedError() }
    }
}

extension Channel {
    /// A receive clause for ``Fiber/select(_:_:timeout:)``: a value, not an object, so a
    /// select of clauses allocates nothing.
    @inlinable
    public func receiving() -> ReceiveClause<Element> { ReceiveClause(self) }

    /// A send clause for ``Fiber/select(_:_:timeout:)`` holding `value` until a select sends it.
    @inlinable
    public func sending(_ value: Element) -> SendClause<Element> { SendClause(self, value) }
}

/// The missing clauses of a select of fewer than four: never touched.
@usableFromInline
struct NoClause: SelectClause {
    @usableFromInline init() {}
    @usableFromInline mutating func _beginSelect() {}
    @usableFromInline mutating func _pollSelect() throws -> Bool { false }
    @usableFromInline func _queueSelect(_ node: UnsafeMutableRawPointer, linking: Bool) {}
    @usableFromInline mutating func _completeSelect(closed: Bool) throws {}
}

/// Up to four clauses in the caller's variables, by index.
@usableFromInline
struct ClauseList<A: SelectClause, B: SelectClause, C: SelectClause, D: SelectClause>: SelectCaseSet {
    @usableFromInline let a: UnsafeMutablePointer<A>
    @usableFromInline let b: UnsafeMutablePointer<B>?
    @usableFromInline let c: UnsafeMutablePointer<C>?
    @usableFromInline let d: UnsafeMutablePointer<D>?
    @usableFromInline let count: Int

    @inlinable
    init(
        _ a: UnsafeMutablePointer<A>, _ b: UnsafeMutablePointer<B>?, _ c: UnsafeMutablePointer<C>?,
        _ d: UnsafeMutablePointer<D>?, count: Int
    ) {
        (self.a, self.b, self.c, self.d, self.count) = (a, b, c, d, count)
    }

    // Each step dispatches on the index to the clause of that position, whose type is known.

    @inlinable func begin() {
        for index in 0..<count {
            switch index {
            case 0: a.pointee._beginSelect()
            case 1: b.unsafelyUnwrapped.pointee._beginSelect()
            case 2: c.unsafelyUnwrapped.pointee._beginSelect()
            default: d.unsafelyUnwrapped.pointee._beginSelect()
            }
        }
    }

    @inlinable func poll(_ index: Int) throws -> Bool {
        switch index {
        case 0: return try a.pointee._pollSelect()
        case 1: return try b.unsafelyUnwrapped.pointee._pollSelect()
        case 2: return try c.unsafelyUnwrapped.pointee._pollSelect()
        default: return try d.unsafelyUnwrapped.pointee._pollSelect()
        }
    }

    @inlinable func slot(_ index: Int) -> UnsafeMutableRawPointer {
        switch index {
        case 0: return UnsafeMutableRawPointer(a)
        case 1: return UnsafeMutableRawPointer(b.unsafelyUnwrapped)
        case 2: return UnsafeMutableRawPointer(c.unsafelyUnwrapped)
        default: return UnsafeMutableRawPointer(d.unsafelyUnwrapped)
        }
    }

    @inlinable func queue(_ index: Int, _ node: UnsafeMutablePointer<ChannelWaiter>, linking: Bool) {
        let node = UnsafeMutableRawPointer(node)
        switch index {
        case 0: a.pointee._queueSelect(node, linking: linking)
        case 1: b.unsafelyUnwrapped.pointee._queueSelect(node, linking: linking)
        case 2: c.unsafelyUnwrapped.pointee._queueSelect(node, linking: linking)
        default: d.unsafelyUnwrapped.pointee._queueSelect(node, linking: linking)
        }
    }

    @inlinable func complete(_ index: Int, closed: Bool) throws {
        switch index {
        case 0: try a.pointee._completeSelect(closed: closed)
        case 1: try b.unsafelyUnwrapped.pointee._completeSelect(closed: closed)
        case 2: try c.unsafelyUnwrapped.pointee._completeSelect(closed: closed)
        default: try d.unsafelyUnwrapped.pointee._completeSelect(closed: closed)
        }
    }
}

extension Fiber {
    /// Waits until one of the clauses can proceed, performs it and returns its index (0 for
    /// `a`); returns `nil` if `timeout` passes first (a zero timeout never waits: Go's
    /// `default`). A picked ``ReceiveClause`` holds its value; a picked ``SendClause`` has sent.
    ///
    /// The same select as ``select(_:timeout:)-(SelectCase...,_)`` — fair, exactly one clause
    /// happens, cancellable — without handlers: the clauses are values in the caller's
    /// variables and their waiting nodes are on the fiber's stack, so it allocates nothing.
    ///
    /// ```swift
    /// var quote = quotes.receiving()
    /// var order = orders.sending(next)
    /// switch try Fiber.select(&quote, &order, timeout: .milliseconds(5)) {
    /// case 0: book.apply(quote.value)
    /// case 1: sent += 1
    /// default: break  // timed out
    /// }
    /// ```
    @inlinable @discardableResult
    public static func select<A: SelectClause, B: SelectClause>(
        _ a: inout A, _ b: inout B, timeout: Duration? = nil
    ) throws -> Int? {
        try withUnsafeMutablePointer(to: &a) { a in
            try withUnsafeMutablePointer(to: &b) { b in
                try selectClauses(ClauseList<A, B, NoClause, NoClause>(a, b, nil, nil, count: 2), timeout: timeout)
            }
        }
    }

    /// ``select(_:_:timeout:)`` of one clause: a receive or send with a timeout.
    @inlinable @discardableResult
    public static func select<A: SelectClause>(_ a: inout A, timeout: Duration? = nil) throws -> Int? {
        try withUnsafeMutablePointer(to: &a) { a in
            try selectClauses(ClauseList<A, NoClause, NoClause, NoClause>(a, nil, nil, nil, count: 1), timeout: timeout)
        }
    }

    /// ``select(_:_:timeout:)`` of three clauses.
    @inlinable @discardableResult
    public static func select<A: SelectClause, B: SelectClause, C: SelectClause>(
        _ a: inout A, _ b: inout B, _ c: inout C, timeout: Duration? = nil
    ) throws -> Int? {
        try withUnsafeMutablePointer(to: &a) { a in
            try withUnsafeMutablePointer(to: &b) { b in
                try withUnsafeMutablePointer(to: &c) { c in
                    try selectClauses(ClauseList<A, B, C, NoClause>(a, b, c, nil, count: 3), timeout: timeout)
                }
            }
        }
    }

    /// ``select(_:_:timeout:)`` of four clauses.
    @inlinable @discardableResult
    public static func select<A: SelectClause, B: SelectClause, C: SelectClause, D: SelectClause>(
        _ a: inout A, _ b: inout B, _ c: inout C, _ d: inout D, timeout: Duration? = nil
    ) throws -> Int? {
        try withUnsafeMutablePointer(to: &a) { a in
            try withUnsafeMutablePointer(to: &b) { b in
                try withUnsafeMutablePointer(to: &c) { c in
                    try withUnsafeMutablePointer(to: &d) { d in
                        try selectClauses(ClauseList<A, B, C, D>(a, b, c, d, count: 4), timeout: timeout)
                    }
                }
            }
        }
    }

    @inlinable
    static func selectClauses<A, B, C, D>(_ clauses: ClauseList<A, B, C, D>, timeout: Duration?) throws -> Int? {
        let me = runningFiber("Fiber.select")
        try checkInterruption(me)
        clauses.begin()
        return try selectCore(me, clauses, timeout: timeout)
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

    /// A number in `0..<bound` by one multiply (the high half of `next() * bound`), without the
    /// standard library's rejection loop: the bias is at most `bound / 2^64`, nothing for a
    /// select's handful of cases.
    mutating func next(below bound: UInt64) -> UInt64 {
        next().multipliedFullWidth(by: bound).high
    }
}
