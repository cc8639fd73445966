import CSpindleSupport

/// One fiber waiting on one channel: a plain send or receive, or one case of a
/// `Fiber.select`. It lives on the waiting fiber's stack, so waiting allocates
/// nothing, and a selecting fiber can be on several channels' queues at once.
@usableFromInline
struct ChannelWaiter {
    @usableFromInline var next: UnsafeMutablePointer<ChannelWaiter>?
    @usableFromInline var prev: UnsafeMutablePointer<ChannelWaiter>?
    @usableFromInline var fiber: UnsafeMutablePointer<spindle_fiber_t>
    /// The `Element?` the waiter sends from or receives into (on its stack, or in its select case).
    @usableFromInline var slot: UnsafeMutableRawPointer
    /// For a select case: the select's winner index, -1 until a counterpart or `close` picks a
    /// case (then every other case of the select is stale). nil for a plain send or receive.
    @usableFromInline var selection: UnsafeMutablePointer<Int>?
    @usableFromInline var caseIndex: Int
    @usableFromInline var isLinked = false

    @inlinable
    init(
        fiber: UnsafeMutablePointer<spindle_fiber_t>, slot: UnsafeMutableRawPointer,
        selection: UnsafeMutablePointer<Int>? = nil, caseIndex: Int = 0
    ) {
        self.fiber = fiber
        self.slot = slot
        self.selection = selection
        self.caseIndex = caseIndex
    }
}

/// An intrusive FIFO of ``ChannelWaiter`` nodes. ``popFirst()`` skips (and unlinks) stale
/// nodes — a fiber no longer parked (interrupted, or woken by another case of its select), a
/// select that another case already won — and claims the select for the node it returns, so a
/// selecting fiber is matched at most once.
@usableFromInline
struct WaiterQueue {
    @usableFromInline var head: UnsafeMutablePointer<ChannelWaiter>?
    @usableFromInline var tail: UnsafeMutablePointer<ChannelWaiter>?

    @inlinable init() {}

    /// Whether no node is linked (stale nodes count until popped or removed).
    @inlinable var isEmpty: Bool { head == nil }

    @inlinable @inline(__always)
    mutating func append(_ node: UnsafeMutablePointer<ChannelWaiter>) {
        node.pointee.isLinked = true
        node.pointee.next = nil
        node.pointee.prev = tail
        if let tail { tail.pointee.next = node } else { head = node }
        tail = node
    }

    /// Removes and returns the longest-waiting live node, claiming its select if it has one.
    @inlinable @inline(__always)
    mutating func popFirst() -> UnsafeMutablePointer<ChannelWaiter>? {
        while let node = head {
            head = node.pointee.next
            if let head { head.pointee.prev = nil } else { tail = nil }
            node.pointee.next = nil
            node.pointee.prev = nil
            node.pointee.isLinked = false
            guard node.pointee.fiber.pointee.state == UInt8(SPINDLE_FIBER_PARKED) else { continue }
            if let selection = node.pointee.selection {
                guard selection.pointee < 0 else { continue }
                selection.pointee = node.pointee.caseIndex
            }
            return node
        }
        return nil
    }

    /// Unlinks `node` if it is still linked.
    @inlinable @inline(__always)
    mutating func remove(_ node: UnsafeMutablePointer<ChannelWaiter>) {
        guard node.pointee.isLinked else { return }
        node.pointee.isLinked = false
        if let prev = node.pointee.prev { prev.pointee.next = node.pointee.next } else { head = node.pointee.next }
        if let next = node.pointee.next { next.pointee.prev = node.pointee.prev } else { tail = node.pointee.prev }
        node.pointee.next = nil
        node.pointee.prev = nil
    }

    /// Whether a live node waits (walks past stale ones without unlinking them).
    @inlinable
    var hasLiveWaiter: Bool {
        var cursor = head
        while let node = cursor {
            if node.pointee.fiber.pointee.state == UInt8(SPINDLE_FIBER_PARKED),
                node.pointee.selection.map({ $0.pointee < 0 }) ?? true
            {
                return true
            }
            cursor = node.pointee.next
        }
        return false
    }
}
