import CLibUV
import Glibc

/// Runs a callback on the loop's thread when the process receives a signal. Wraps uv_signal_t.
///
/// libuv turns the signal into a loop event, so the callback may do anything loop code may
/// (unlike a raw signal handler). An active watcher keeps the loop alive; set
/// ``LoopHandle/keepsLoopAlive`` to false for a watcher that should not.
public final class SignalWatcher: LoopHandle {
    private var callback: (Int32) -> Void = { _ in }
    /// The signal watched while active.
    public private(set) var signal: Int32 = 0

    /// Creates a stopped watcher. Wraps uv_signal_init.
    public init(loop: EventLoop) {
        super.init(loop: loop, type: UV_SIGNAL)
        UVError.mustSucceed(uv_signal_init(loop.uv, signalHandle), "uv_signal_init")
        didInitialize()
    }

    private var signalHandle: UnsafeMutablePointer<uv_signal_t> {
        UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_signal_t.self)
    }

    /// Starts watching `signal` (for example `SIGINT`). The signal is unblocked on the loop's
    /// thread, so that a mask inherited from a parent (test runners and some supervisors block
    /// SIGTERM) cannot keep it from ever arriving. Wraps uv_signal_start.
    public func start(_ signal: Int32, _ callback: @escaping (Int32) -> Void) throws(UVError) {
        preconditionOnLoopThread("SignalWatcher.start")
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, signal)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        self.callback = callback
        self.signal = signal
        try UVError.check(
            uv_signal_start(
                signalHandle,
                { handle, signum in
                    guard let data = handle?.pointee.data else { return }
                    LoopHandle.object(data, as: SignalWatcher.self).callback(signum)
                }, signal), "uv_signal_start(\(signal))")
        retainWhileActive()
    }

    /// Stops watching. Wraps uv_signal_stop.
    public func stop() {
        uv_signal_stop(signalHandle)
        releaseActiveRetain()
    }

    public override var handleDescription: String { "signal watcher (signal \(signal))" }
}
