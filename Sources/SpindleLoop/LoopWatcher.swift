import CLibUV

/// A prepare, check or idle handle: a callback run once per loop iteration at a fixed phase.
///
/// - ``Kind-swift.enum/prepare`` runs right before the loop polls for I/O;
/// - ``Kind-swift.enum/check`` runs right after the poll;
/// - ``Kind-swift.enum/idle`` runs every iteration and, while active, makes the poll return at
///   once instead of blocking — keep it active only while there is work to do.
///
/// The three share one implementation, as in libuv's `loop-watcher.c`.
/// Wraps uv_prepare_t, uv_check_t and uv_idle_t.
public final class LoopWatcher: LoopHandle {
    /// The loop phase the callback runs in.
    public enum Kind: Sendable {
        /// Right before the loop polls for I/O (uv_prepare_t).
        case prepare
        /// Right after the poll (uv_check_t).
        case check
        /// Every iteration; while active, the poll does not block (uv_idle_t).
        case idle
    }

    /// Which phase this watcher runs in.
    public let kind: Kind
    // Loop-thread only, one call at a time: no dynamic exclusivity check per access (the
    // next-turn queue resumes its idle watcher on every deferral).
    @exclusivity(unchecked) private var callback: () -> Void = {}
    /// Whether the watcher is started.
    @exclusivity(unchecked) public private(set) var isActive = false

    /// Creates a stopped watcher. Wraps uv_prepare_init, uv_check_init or uv_idle_init.
    public convenience init(loop: EventLoop, kind: Kind) {
        self.init(loop: loop, kind: kind, isInternal: false)
    }

    /// A watcher that is part of the loop's own machinery (not listed as still open on close).
    convenience init(internalFor loop: EventLoop, kind: Kind) {
        self.init(loop: loop, kind: kind, isInternal: true)
    }

    private init(loop: EventLoop, kind: Kind, isInternal: Bool) {
        self.kind = kind
        super.init(loop: loop, type: kind.uvType, isInternal: isInternal)
        let status: Int32
        switch kind {
        case .prepare: status = uv_prepare_init(loop.uv, typed(handle))
        case .check: status = uv_check_init(loop.uv, typed(handle))
        case .idle: status = uv_idle_init(loop.uv, typed(handle))
        }
        UVError.mustSucceed(status, "uv_*_init (loop watcher)")
        didInitialize()
    }

    /// Starts calling `callback` once per iteration. Starting an active watcher replaces its
    /// callback. Wraps uv_prepare_start, uv_check_start or uv_idle_start.
    public func start(_ callback: @escaping () -> Void) {
        self.callback = callback
        resume()
    }

    /// Starts the watcher again with the callback it had. Cheap when already active.
    @inline(__always)
    public func resume() {
        if isActive { return }
        preconditionOnLoopThread("starting a \(kind) watcher")
        precondition(!isClosed, "cannot start a closed \(kind) watcher")
        isActive = true
        retainWhileActive()
        switch kind {
        case .prepare: uv_prepare_start(typed(handle), { watcher($0)?.fire() })
        case .check: uv_check_start(typed(handle), { watcher($0)?.fire() })
        case .idle: uv_idle_start(typed(handle), { watcher($0)?.fire() })
        }
    }

    /// Stops the watcher; the callback is kept for ``resume()``. Wraps uv_*_stop.
    @inline(__always)
    public func stop() {
        if !isActive { return }
        isActive = false
        switch kind {
        case .prepare: uv_prepare_stop(typed(handle))
        case .check: uv_check_stop(typed(handle))
        case .idle: uv_idle_stop(typed(handle))
        }
        releaseActiveRetain()
    }

    public override func close() {
        isActive = false
        super.close()
    }

    fileprivate func fire() { callback() }

    public override var handleDescription: String { "\(kind) watcher" }
}

extension LoopWatcher.Kind {
    var uvType: uv_handle_type {
        switch self {
        case .prepare: return UV_PREPARE
        case .check: return UV_CHECK
        case .idle: return UV_IDLE
        }
    }
}

@inline(__always)
private func typed<T>(_ handle: UnsafeMutablePointer<uv_handle_t>) -> UnsafeMutablePointer<T> {
    UnsafeMutableRawPointer(handle).assumingMemoryBound(to: T.self)
}

// The C callbacks above are closure literals at file scope of a nonisolated class method: plain
// C functions with no actor isolation, safe for libuv to call on the loop thread.
@inline(__always)
private func watcher<T>(_ raw: UnsafeMutablePointer<T>?) -> LoopWatcher? {
    guard let data = UnsafeMutableRawPointer(raw)?.assumingMemoryBound(to: uv_handle_t.self).pointee.data
    else { return nil }
    return LoopHandle.object(data, as: LoopWatcher.self)
}
