import CLibUV

/// A handle any thread may signal to run a callback on the loop's thread.
///
/// Signals coalesce: several ``signal()`` calls before the loop gets to it run the callback once,
/// so the callback must drain everything that is pending. Wraps uv_async_t.
public final class Wakeup: LoopHandle, @unchecked Sendable {
    private let callback: () -> Void

    /// Creates the handle on the loop's thread. The callback runs on that thread.
    /// Wraps uv_async_init.
    public init(loop: EventLoop, _ callback: @escaping () -> Void) {
        self.callback = callback
        super.init(loop: loop, type: UV_ASYNC)
        UVError.mustSucceed(uv_async_init(loop.uv, asyncHandle, wakeupFired), "uv_async_init")
        didInitialize()
    }

    init(internalFor loop: EventLoop, _ callback: @escaping () -> Void) {
        self.callback = callback
        super.init(loop: loop, type: UV_ASYNC, isInternal: true)
        UVError.mustSucceed(uv_async_init(loop.uv, asyncHandle, wakeupFired), "uv_async_init")
        didInitialize()
    }

    private var asyncHandle: UnsafeMutablePointer<uv_async_t> {
        UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_async_t.self)
    }

    /// Asks the loop to run the callback soon. Safe from any thread, async-signal-safe, and
    /// never blocks. Must not be called after ``LoopHandle/close()``. Wraps uv_async_send.
    public func signal() {
        uv_async_send(asyncHandle)
    }

    fileprivate func fire() { callback() }

    public override var handleDescription: String { "wakeup (async)" }
}

private let wakeupFired: @convention(c) (UnsafeMutablePointer<uv_async_t>?) -> Void = { async in
    guard let data = async?.pointee.data else { return }
    LoopHandle.object(data, as: Wakeup.self).fire()
}
