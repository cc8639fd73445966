internal import CLibUV
import CSpindleSupport
import SpindleLoop

// Fiber.sleep's timers: bare libuv timer handles whose data is the sleeping fiber, fired into a
// C callback — no Swift object, closure or reference count between the sleep and the wake (a
// pooled `Timer` object per sleep cost about 20 more cache misses a step than a callback's own
// timer). Kept in this file: the libuv import is internal here, and Glibc names that inlinable
// code elsewhere uses would otherwise resolve through it.

/// A sleep timer's memory: the libuv handle, then the fiber it wakes. The handle's `data` is
/// the loop's raw-machinery marker (handle walks read `data` as a LoopHandle otherwise).
private let fiberOffset = (MemoryLayout<uv_timer_t>.size + 7) & ~7
private let sleepTimerSize = fiberOffset + MemoryLayout<UnsafeMutableRawPointer>.size

@inline(__always)
private func sleeper(of timer: UnsafeMutableRawPointer) -> UnsafeMutablePointer<UnsafeMutablePointer<spindle_fiber_t>?> {
    (timer + fiberOffset).assumingMemoryBound(to: UnsafeMutablePointer<spindle_fiber_t>?.self)
}

extension Scheduler {
    /// Starts a timer (from the pool, or new) that wakes `fiber` after `milliseconds`.
    func startSleepTimer(for fiber: UnsafeMutablePointer<spindle_fiber_t>, milliseconds: UInt64) -> UnsafeMutableRawPointer {
        let timer: UnsafeMutableRawPointer
        if let pooled = sleepTimers.popLast() {
            timer = pooled
        } else {
            timer = UnsafeMutableRawPointer.allocate(byteCount: sleepTimerSize, alignment: 16)
            let handle = timer.bindMemory(to: uv_timer_t.self, capacity: 1)
            UVError.mustSucceed(uv_timer_init(loop.uv, handle), "uv_timer_init")
            handle.pointee.data = EventLoop.rawMachineryMarker
        }
        sleeper(of: timer).pointee = fiber
        uv_timer_start(timer.assumingMemoryBound(to: uv_timer_t.self), sleepTimerFired, milliseconds, 0)
        return timer
    }

    /// Returns the timer to the pool once the sleep is over; an interrupted sleep's timer is
    /// stopped first, so it cannot fire once the fiber has moved on.
    func finishSleepTimer(_ timer: UnsafeMutableRawPointer, fired: Bool) {
        if !fired { uv_timer_stop(timer.assumingMemoryBound(to: uv_timer_t.self)) }
        sleeper(of: timer).pointee = nil
        sleepTimers.append(timer)
    }

    /// Closes the pooled timers (the loop is closing); the close callback frees their memory.
    func closeSleepTimers() {
        for timer in sleepTimers {
            uv_close(timer.assumingMemoryBound(to: uv_handle_t.self)) { handle in
                UnsafeMutableRawPointer(handle)?.deallocate()
            }
        }
        sleepTimers.removeAll()
    }
}

/// Wakes the fiber the timer belongs to, if it still sleeps.
private let sleepTimerFired: @convention(c) (UnsafeMutablePointer<uv_timer_t>?) -> Void = { timer in
    guard let fiber = sleeper(of: UnsafeMutableRawPointer(timer.unsafelyUnwrapped)).pointee else { return }
    if fiber.pointee.state == UInt8(SPINDLE_FIBER_PARKED) { FiberRef(fiber).wake(.ready) }
}
