import CSpindleSupport

/// An intrusive FIFO list of parked fibers, linked through their control blocks.
///
/// A parked fiber is on at most one wait list, so the list needs no allocation: pushing,
/// popping and unlinking (for a timeout or a cancellation) are O(1) and touch only the fibers'
/// own `wait_next`/`wait_prev` fields (not `next`, which links the run queue).
///
/// A fiber whose wait was interrupted (cancelled, timed out) is runnable but still linked until
/// it runs and unlinks itself; ``popFirst()`` skips such fibers (unlinking them), and
/// ``remove(_:)`` of a fiber no longer linked does nothing, so a waker never wakes a fiber that
/// is not parked.
@usableFromInline
struct WaitList {
    @usableFromInline var head: UnsafeMutablePointer<spindle_fiber_t>?
    @usableFromInline var tail: UnsafeMutablePointer<spindle_fiber_t>?
    /// Number of fibers waiting.
    @usableFromInline var count = 0

    @inlinable init() {}

    /// Whether no fiber is linked (interrupted fibers not yet unlinked count as linked).
    @inlinable var isEmpty: Bool { head == nil }

    /// Appends the running fiber's control block (it is about to park).
    @inlinable @inline(__always)
    mutating func append(_ fiber: UnsafeMutablePointer<spindle_fiber_t>) {
        fiber.pointee.on_wait_list = 1
        fiber.pointee.wait_next = nil
        fiber.pointee.wait_prev = tail
        if let tail { tail.pointee.wait_next = fiber } else { head = fiber }
        tail = fiber
        count += 1
    }

    /// Removes and returns the longest-waiting fiber that is still parked.
    @inlinable @inline(__always)
    mutating func popFirst() -> UnsafeMutablePointer<spindle_fiber_t>? {
        while let fiber = head {
            head = fiber.pointee.wait_next
            if let head { head.pointee.wait_prev = nil } else { tail = nil }
            fiber.pointee.wait_next = nil
            fiber.pointee.wait_prev = nil
            fiber.pointee.on_wait_list = 0
            count -= 1
            if fiber.pointee.state == UInt8(SPINDLE_FIBER_PARKED) { return fiber }
        }
        return nil
    }

    /// Unlinks `fiber` if it is still on this list.
    @inlinable @inline(__always)
    mutating func remove(_ fiber: UnsafeMutablePointer<spindle_fiber_t>) {
        guard fiber.pointee.on_wait_list != 0 else { return }
        fiber.pointee.on_wait_list = 0
        if let prev = fiber.pointee.wait_prev {
            prev.pointee.wait_next = fiber.pointee.wait_next
        } else {
            head = fiber.pointee.wait_next
        }
        if let next = fiber.pointee.wait_next {
            next.pointee.wait_prev = fiber.pointee.wait_prev
        } else {
            tail = fiber.pointee.wait_prev
        }
        fiber.pointee.wait_next = nil
        fiber.pointee.wait_prev = nil
        count -= 1
    }

    /// Whether `fiber` is on this list (O(n); for assertions and diagnostics).
    func contains(_ fiber: UnsafeMutablePointer<spindle_fiber_t>) -> Bool {
        var cursor = head
        while let current = cursor {
            if current == fiber { return true }
            cursor = current.pointee.wait_next
        }
        return false
    }
}
