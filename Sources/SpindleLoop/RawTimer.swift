import CLibUV

/// A bare libuv timer for a layer above the loop that needs a timer with no Swift object
/// behind it: the memory is the libuv handle followed by one word of context, and it fires into
/// a C function. No closure, no reference count and no allocation between a start and its fire
/// (the fiber scheduler's `Fiber.sleep` pools these; a pooled ``LoopTimer`` object per sleep
/// touched more cache lines a step than a callback's own timer).
///
/// The handle's `data` is ``EventLoop/rawMachineryMarker``, so handle walks (open-handle reports,
/// `closeOpenHandles`) pass it by. The owner must ``close()`` it on the loop's thread before
/// the loop closes; until then the memory is the owner's to pool.
@usableFromInline package struct RawTimer: Equatable {
    /// The C function a fired timer calls, with the timer (see ``init(firing:)``).
    @usableFromInline package typealias Callback = @convention(c) (_ timer: UnsafeMutableRawPointer?) -> Void

    @usableFromInline let memory: UnsafeMutableRawPointer

    /// Where the context word sits: after the handle, pointer-aligned.
    @inlinable static var contextOffset: Int {
        (MemoryLayout<uv_timer_t>.size + MemoryLayout<UnsafeRawPointer>.alignment - 1)
            & ~(MemoryLayout<UnsafeRawPointer>.alignment - 1)
    }

    /// A stopped timer on `loop`, its context nil. Allocates; call on the loop's thread.
    package init(loop: EventLoop) {
        memory = UnsafeMutableRawPointer.allocate(
            byteCount: Self.contextOffset + MemoryLayout<UnsafeMutableRawPointer?>.size, alignment: 16)
        let handle = memory.bindMemory(to: uv_timer_t.self, capacity: 1)
        UVError.mustSucceed(uv_timer_init(loop.uv, handle), "uv_timer_init")
        handle.pointee.data = EventLoop.rawMachineryMarker
        context = nil
    }

    /// The timer a ``Callback`` was called with.
    @inlinable package init(firing timer: UnsafeMutableRawPointer?) { memory = timer.unsafelyUnwrapped }

    /// One word the owner keeps with the timer (what the callback wakes).
    @inlinable package var context: UnsafeMutableRawPointer? {
        get { (memory + Self.contextOffset).assumingMemoryBound(to: UnsafeMutableRawPointer?.self).pointee }
        nonmutating set {
            (memory + Self.contextOffset).assumingMemoryBound(to: UnsafeMutableRawPointer?.self).pointee = newValue
        }
    }

    /// Starts (or restarts) the timer: `fired` runs once after `milliseconds`. Wraps uv_timer_start.
    @inlinable package func start(milliseconds: UInt64, _ fired: Callback) {
        uv_timer_start(
            memory.assumingMemoryBound(to: uv_timer_t.self), unsafeBitCast(fired, to: uv_timer_cb.self), milliseconds, 0
        )
    }

    /// Stops the timer; it will not fire until started again. Wraps uv_timer_stop.
    @inlinable package func stop() { uv_timer_stop(memory.assumingMemoryBound(to: uv_timer_t.self)) }

    /// Closes the handle; libuv's close callback frees the memory. Wraps uv_close.
    package func close() {
        uv_close(memory.assumingMemoryBound(to: uv_handle_t.self)) { handle in
            UnsafeMutableRawPointer(handle)?.deallocate()
        }
    }
}
