import CLibUV
import Glibc

/// The lifetime every libuv handle in Spindle shares, written once.
///
/// - The `uv_handle_t` memory is allocated here (`uv_handle_size`) and freed only in `uv_close`'s
///   callback, never before: libuv may touch it until then.
/// - `handle.data` points at this object, unretained. While the handle is *active* (a started
///   timer, a started watcher) the object retains itself, so dropping the last user reference
///   does not leave libuv with a dangling pointer; stopping or closing releases that retain.
/// - A handle that is deinitialised while still open is closed then (on the loop's thread).
public class LoopHandle {
    /// The loop this handle belongs to.
    public unowned(unsafe) let loop: EventLoop
    /// Keeps the loop alive as long as a user's handle is; the loop's own machinery (which the
    /// loop itself owns) does not, or the two would keep each other alive after close().
    private let retainedLoop: EventLoop?
    @usableFromInline let handle: UnsafeMutablePointer<uv_handle_t>
    /// The loop's thread, copied here: the thread check of every operation reads it without
    /// touching `loop` (an `unowned(unsafe)` reference, which each use retains and releases).
    @usableFromInline let loopThread: pthread_t
    @exclusivity(unchecked) private var activeRetain: Unmanaged<LoopHandle>?
    /// Whether this handle is machinery of the loop or of an ``EventLoopAttachment`` (the fiber
    /// scheduler's watchers, pooled timers). Such handles are not listed as "still open" by
    /// ``EventLoop/close()``; their owner closes them in ``EventLoopAttachment/loopWillClose()``.
    public var isLoopMachinery: Bool
    /// Whether ``close()`` was called.
    @exclusivity(unchecked) public private(set) var isClosed = false

    init(loop: EventLoop, type: uv_handle_type, isInternal: Bool = false) {
        loop.preconditionOnLoopThread("creating a \(String(cString: uv_handle_type_name(type))) handle")
        precondition(!loop.isClosed, "cannot create a handle on a closed EventLoop")
        self.loop = loop
        self.loopThread = loop.owner
        self.retainedLoop = isInternal ? nil : loop
        self.isLoopMachinery = isInternal
        let size = uv_handle_size(type)
        guard let memory = calloc(1, size) else { fatalError("out of memory allocating a libuv handle") }
        self.handle = memory.bindMemory(to: uv_handle_t.self, capacity: 1)
    }

    /// Subclasses call this when their `uv_*_init` failed: the memory was never libuv's, so it
    /// is freed now and the object counts as closed.
    final func abandonUninitialized() {
        isClosed = true
        free(handle)
    }

    /// Subclasses call this right after their `uv_*_init` succeeded.
    final func didInitialize() {
        handle.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    /// Keeps this object alive while libuv may call back into it.
    final func retainWhileActive() {
        if activeRetain == nil { activeRetain = Unmanaged.passRetained(self) }
    }

    /// Drops the retain taken by ``retainWhileActive()``. The object may be freed on return.
    final func releaseActiveRetain() {
        if let retain = activeRetain {
            activeRetain = nil
            retain.release()
        }
    }

    /// The loop, lent (no reference count change): it outlives its handles' operations.
    @inlinable
    package final var lentLoop: Unmanaged<EventLoop> { Unmanaged.passUnretained(loop) }

    /// Stops the process with a clear message when called from a thread that does not own the
    /// handle's loop (``EventLoop/preconditionOnLoopThread(_:)``, without a reference count
    /// change on the way).
    @inlinable @inline(__always)
    package final func preconditionOnLoopThread(_ what: @autoclosure () -> String) {
        if _slowPath(pthread_self() != loopThread) { loop.preconditionOnLoopThread(what()) }
    }

    /// Recovers the Swift object from a libuv handle's `data` pointer (unretained).
    @inline(__always)
    static func object<T: LoopHandle>(_ raw: UnsafeMutableRawPointer?, as: T.Type) -> T {
        Unmanaged<T>.fromOpaque(raw!).takeUnretainedValue()
    }

    /// Closes the handle. Callbacks stop at once; the memory is freed in the close callback on a
    /// later loop turn. Closing twice is allowed and does nothing. Wraps uv_close.
    public func close() {
        preconditionOnLoopThread("closing a handle")
        if isClosed { return }
        isClosed = true
        handle.pointee.data = nil
        uv_close(handle, freeHandleOnClose)
        releaseActiveRetain()
    }

    /// Whether the handle keeps the loop alive when active (libuv's ref count). Wraps uv_ref/uv_unref.
    public var keepsLoopAlive: Bool {
        get { uv_has_ref(handle) != 0 }
        set {
            preconditionOnLoopThread("changing a handle's ref")
            if newValue { uv_ref(handle) } else { uv_unref(handle) }
        }
    }

    /// What this handle is, for messages such as "cannot close the loop: timer still open".
    public var handleDescription: String {
        String(cString: uv_handle_type_name(handle.pointee.type))
    }

    deinit {
        if !isClosed {
            if loop.isOnLoopThread {
                isClosed = true
                handle.pointee.data = nil
                uv_close(handle, freeHandleOnClose)
            } else {
                // The memory stays with libuv; freeing it here would race the loop thread.
                spindleWarning(
                    "a \(handleDescription) handle was released on a thread that "
                        + "is not its loop's; it is leaked rather than closed from the wrong thread\n")
            }
        }
    }
}

/// uv_close callback: the only place handle memory is freed. A plain C function, never isolated.
private let freeHandleOnClose: @convention(c) (UnsafeMutablePointer<uv_handle_t>?) -> Void = { handle in
    free(handle)
}
