import CLibUV
import Synchronization

extension EventLoop {
    /// Runs `work` on the loop's thread during a later iteration. Safe from any thread.
    ///
    /// Work is queued on a lock-free multi-producer queue and the loop is woken once per batch
    /// (`uv_async_send` coalesces); the loop drains the whole queue, in the order each producer
    /// posted. Work posted after ``close()`` is dropped with a warning on stderr.
    public func post(_ work: @escaping @Sendable () -> Void) {
        inbox.push(work)
    }
}

/// One posted closure, linked into the inbox's Treiber stack.
final class PostedWork {
    let work: @Sendable () -> Void
    /// The next older node, as a retained raw pointer (0 at the bottom of the stack).
    var next: UInt = 0
    init(_ work: @escaping @Sendable () -> Void) { self.work = work }
}

/// The MPSC queue behind ``EventLoop/post(_:)``: producers push onto an atomic stack; the loop
/// takes the whole stack with one exchange and runs it oldest first.
final class PostInbox: @unchecked Sendable {
    private let head = Atomic<UInt>(0)
    private let closedFlag = Atomic<Bool>(false)
    private var wakeup: Wakeup!

    init(loop: EventLoop) {
        wakeup = nil
        wakeup = Wakeup(internalFor: loop) { [unowned self] in self.drain() }
        wakeup.keepsLoopAlive = false
    }

    /// Whether the wakeup handle keeps the loop running (``EventLoop/RunMode/untilStopped``).
    var keepsLoopAlive: Bool {
        get { wakeup.keepsLoopAlive }
        set { wakeup.keepsLoopAlive = newValue }
    }

    func push(_ work: @escaping @Sendable () -> Void) {
        if closedFlag.load(ordering: .acquiring) {
            spindleWarning("work posted to a closed EventLoop was dropped")
            return
        }
        let node = Unmanaged.passRetained(PostedWork(work))
        let raw = UInt(bitPattern: node.toOpaque())
        var old = head.load(ordering: .relaxed)
        while true {
            node.takeUnretainedValue().next = old
            let (exchanged, current) = head.compareExchange(
                expected: old, desired: raw, successOrdering: .releasing, failureOrdering: .relaxed)
            if exchanged { break }
            old = current
        }
        wakeup.signal()
    }

    /// Runs everything posted so far, oldest first.
    func drain() {
        let taken = head.exchange(0, ordering: .acquiring)
        guard taken != 0 else { return }
        // Every node was pushed retained; take each one back, then run them oldest first.
        var items: [PostedWork] = []
        var raw = taken
        while raw != 0 {
            let node = Unmanaged<PostedWork>.fromOpaque(UnsafeRawPointer(bitPattern: raw)!).takeRetainedValue()
            items.append(node)
            raw = node.next
        }
        for item in items.reversed() { item.work() }
    }

    func closeHandle() {
        closedFlag.store(true, ordering: .releasing)
        wakeup.close()
    }

    /// Work that raced with close: run it, so nothing posted before close is silently lost.
    func drainAfterClose() { drain() }
}
