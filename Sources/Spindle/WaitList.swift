import CSpindleSupport

/// An intrusive FIFO list of parked fibers, linked through their control blocks.
///
/// A parked fiber is on at most one wait list (it is not in the run queue), so the list needs no
/// allocation: pushing, popping and unlinking (for a timeout or a cancellation) are O(1) and
/// touch only the fibers' own `next`/`prev` fields.
struct WaitList {
    var head: UnsafeMutablePointer<spindle_fiber_t>?
    var tail: UnsafeMutablePointer<spindle_fiber_t>?
    /// Number of fibers waiting.
    private(set) var count = 0

    init() {}

    /// Whether no fiber waits.
    var isEmpty: Bool { head == nil }

    /// Appends the running fiber's control block (it is about to park).
    @inline(__always)
    mutating func append(_ fiber: UnsafeMutablePointer<spindle_fiber_t>) {
        fiber.pointee.next = nil
        fiber.pointee.prev = tail
        if let tail { tail.pointee.next = fiber } else { head = fiber }
        tail = fiber
        count += 1
    }

    /// Removes and returns the longest-waiting fiber.
    @inline(__always)
    mutating func popFirst() -> UnsafeMutablePointer<spindle_fiber_t>? {
        guard let fiber = head else { return nil }
        head = fiber.pointee.next
        if let head { head.pointee.prev = nil } else { tail = nil }
        fiber.pointee.next = nil
        fiber.pointee.prev = nil
        count -= 1
        return fiber
    }

    /// Unlinks `fiber`, which must be on this list.
    @inline(__always)
    mutating func remove(_ fiber: UnsafeMutablePointer<spindle_fiber_t>) {
        if let prev = fiber.pointee.prev { prev.pointee.next = fiber.pointee.next } else { head = fiber.pointee.next }
        if let next = fiber.pointee.next { next.pointee.prev = fiber.pointee.prev } else { tail = fiber.pointee.prev }
        fiber.pointee.next = nil
        fiber.pointee.prev = nil
        count -= 1
    }

    /// Whether `fiber` is on this list (O(n); for assertions and diagnostics).
    func contains(_ fiber: UnsafeMutablePointer<spindle_fiber_t>) -> Bool {
        var cursor = head
        while let current = cursor {
            if current == fiber { return true }
            cursor = current.pointee.next
        }
        return false
    }
}
