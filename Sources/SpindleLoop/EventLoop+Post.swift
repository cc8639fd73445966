import CLibUV
import CSpindleSupport
import Glibc
import Synchronization

extension EventLoop {
    /// Runs `work` on the loop's thread during a later iteration. Safe from any thread.
    ///
    /// Work is queued on a lock-free multi-producer queue and the loop is woken once per batch
    /// (`uv_async_send` coalesces); the loop drains the whole queue, in the order each producer
    /// posted. Work posted after ``close()`` is dropped with a warning on stderr.
    public func post(_ work: @escaping @Sendable () -> Void) {
        if !inbox.push(work) { spindleWarning("work posted to a closed EventLoop (\(self)) was dropped") }
    }

    /// ``post(_:)`` that says whether the work was queued: false, queueing nothing and saying
    /// nothing, once the loop has begun to close. For callers that answer the refusal
    /// themselves (failing a future, throwing).
    package func tryPost(_ work: @escaping @Sendable () -> Void) -> Bool {
        inbox.push(work)
    }

    /// Queues `work` for the loop's thread without allocating: its `run` is called there, with
    /// `closed` 0, during a later iteration. Safe from any thread; the node must stay put until
    /// then. Returns false, queueing nothing, once the loop has begun to close; a node queued
    /// before that is run during ``close()`` with `closed` 1, so none is ever lost.
    ///
    /// Remote nodes and ``post(_:)`` closures share the loop's one wakeup: many posts from many
    /// threads cost one `uv_async_send` each and one drain on the loop.
    @discardableResult
    package func post(remote work: UnsafeMutablePointer<spindle_remote_work_t>) -> Bool {
        inbox.push(remote: work)
    }

    /// Set while work posted from another thread waits for the loop (a hint, relaxed): the fiber
    /// scheduler looks at it between fibers to end a busy turn early.
    package var postedFlag: UnsafePointer<Int32> { UnsafePointer(inbox.postedFlag) }

    /// Posted work (closures and remote nodes, from any thread) the loop has run so far: how
    /// often other threads handed it work (`post`, `call`, cross-loop wakes, Swift concurrency
    /// jobs on a loop executor). Read it on the loop's thread.
    package var postedWorkRun: UInt64 { inbox.ranCount }
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
///
/// Closing: a producer counts itself in (`posters`) before it looks at the closed flag and out
/// after its `uv_async_send`; ``closeHandle()`` sets the flag, then waits for the producers
/// already inside to leave before it closes the wakeup handle, so no signal reaches a closed
/// handle. The remote stack is sealed with ``sealed`` at close: a push after that fails instead
/// of leaving a node nobody will run.
final class PostInbox: @unchecked Sendable {
    private let head = Atomic<UInt>(0)
    private let remoteHead = Atomic<UInt>(0)
    private let closedFlag = Atomic<Bool>(false)
    private let posters = Atomic<Int>(0)
    /// Set by every push, cleared by the drain: a hint a busy loop's scheduler reads between
    /// fibers, to end its turn early and let the loop run what was posted.
    let postedFlag: UnsafeMutablePointer<Int32> = {
        let flag = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
        flag.initialize(to: 0)
        return flag
    }()
    private var wakeup: Wakeup!
    /// Work items run so far (written and read on the loop's thread only).
    private(set) var ranCount: UInt64 = 0
    /// The remote stack's head once the loop closes: no node has this address.
    private static let sealed: UInt = 1

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

    /// Queues `work`; false once the loop has begun to close.
    func push(_ work: @escaping @Sendable () -> Void) -> Bool {
        posters.add(1, ordering: .sequentiallyConsistent)
        defer { posters.subtract(1, ordering: .releasing) }
        if closedFlag.load(ordering: .sequentiallyConsistent) { return false }
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
        spindle_flag_set(postedFlag)
        wakeup.signal()
        return true
    }

    func push(remote work: UnsafeMutablePointer<spindle_remote_work_t>) -> Bool {
        posters.add(1, ordering: .sequentiallyConsistent)
        defer { posters.subtract(1, ordering: .releasing) }
        let raw = UInt(bitPattern: work)
        var old = remoteHead.load(ordering: .relaxed)
        while true {
            if old == Self.sealed { return false }
            work.pointee.next = UnsafeMutablePointer(bitPattern: old)
            let (exchanged, current) = remoteHead.compareExchange(
                expected: old, desired: raw, successOrdering: .releasing, failureOrdering: .relaxed)
            if exchanged { break }
            old = current
        }
        // Pushed before the seal: close() runs it. The handle is open while we are counted in.
        spindle_flag_set(postedFlag)
        if !closedFlag.load(ordering: .sequentiallyConsistent) { wakeup.signal() }
        return true
    }

    /// Runs everything posted so far, oldest first.
    func drain(closed: Bool = false) {
        spindle_flag_clear(postedFlag)
        drainRemote(taking: closed ? Self.sealed : 0)
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
        ranCount &+= UInt64(items.count)
        for item in items.reversed() { item.work() }
    }

    /// Takes the remote stack (leaving `replacement`: 0, or ``sealed`` at close) and runs its
    /// nodes oldest first. Reversed in place through their own links: nothing is allocated.
    private func drainRemote(taking replacement: UInt) {
        let taken = remoteHead.exchange(replacement, ordering: .acquiring)
        guard taken != 0, taken != Self.sealed else { return }
        var newest = UnsafeMutablePointer<spindle_remote_work_t>(bitPattern: taken)
        var oldest: UnsafeMutablePointer<spindle_remote_work_t>? = nil
        while let node = newest {
            newest = node.pointee.next
            node.pointee.next = oldest
            oldest = node
        }
        let closed: Int32 = replacement == Self.sealed ? 1 : 0
        while let node = oldest {
            ranCount &+= 1
            oldest = node.pointee.next  // read first: `run` may let the node go
            node.pointee.run(node, closed)
        }
    }

    func closeHandle() {
        closedFlag.store(true, ordering: .sequentiallyConsistent)
        // A producer counted in before the flag was set may still signal: let it finish.
        while posters.load(ordering: .sequentiallyConsistent) != 0 { sched_yield() }
        wakeup.close()
    }

    deinit { postedFlag.deallocate() }

    /// Work that raced with close: run it, so nothing posted before close is silently lost.
    /// Remote nodes run with `closed` set, and the remote stack is sealed.
    func drainAfterClose() { drain(closed: true) }
}
