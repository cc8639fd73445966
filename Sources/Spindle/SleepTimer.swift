import CSpindleSupport
import SpindleLoop

// Fiber.sleep's timers: SpindleLoop's raw timers, whose context word is the sleeping fiber,
// fired into a C function. No Swift object, closure or reference count between the sleep and
// the wake.

extension Scheduler {
    /// Starts a timer (from the pool, or new) that wakes `fiber` after `milliseconds`.
    func startSleepTimer(for fiber: UnsafeMutablePointer<spindle_fiber_t>, milliseconds: UInt64) -> RawTimer {
        let timer = sleepTimers.popLast() ?? RawTimer(loop: loop)
        timer.context = UnsafeMutableRawPointer(fiber)
        timer.start(milliseconds: milliseconds, sleepTimerFired)
        return timer
    }

    /// Returns the timer to the pool once the sleep is over; an interrupted sleep's timer is
    /// stopped first, so it cannot fire once the fiber has moved on.
    func finishSleepTimer(_ timer: RawTimer, fired: Bool) {
        if !fired { timer.stop() }
        timer.context = nil
        sleepTimers.append(timer)
    }

    /// Closes the pooled timers (the loop is closing); the close callback frees their memory.
    func closeSleepTimers() {
        for timer in sleepTimers { timer.close() }
        sleepTimers.removeAll()
    }
}

/// Wakes the fiber the timer belongs to, if it still sleeps.
private let sleepTimerFired: RawTimer.Callback = { timer in
    guard let fiber = RawTimer(firing: timer).context?.assumingMemoryBound(to: spindle_fiber_t.self) else { return }
    if fiber.pointee.state == UInt8(SPINDLE_FIBER_PARKED) { FiberRef(fiber).wake(.ready) }
}
