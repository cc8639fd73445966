import CLibUV
import CSpindleSupport
import Glibc
import Synchronization

/// Something that lives on an ``EventLoop`` and takes part in its checks: the fiber scheduler,
/// tracers. The loop asks attachments what they still hold when it runs out of work or closes.
public protocol EventLoopAttachment: AnyObject {
    /// Waiters that nothing left on the loop can wake, each named in a few words. Asked when the
    /// loop runs out of work; a non-empty answer makes ``EventLoop/run(_:)`` throw a deadlock.
    func stalledWaiters() -> [String]
    /// What this attachment still holds that would be lost if the loop closed now.
    func openItems() -> [String]
    /// Releases this attachment's handles. Called by ``EventLoop/close()`` once nothing is open.
    func loopWillClose()
    /// Lets go of what the attachment keeps only while the loop runs (objects that may hold the
    /// loop). Called each time ``EventLoop/run(_:)`` returns. The default does nothing.
    func loopDidStop()
}

extension EventLoopAttachment {
    /// Does nothing: an attachment that keeps nothing only while the loop runs needs no more.
    public func loopDidStop() {}
}

/// A libuv event loop owned by one thread.
///
/// The loop belongs to the thread that created it. Every method refuses, with a message that
/// names both threads, to run on any other thread — except ``post(_:)``, the one cross-thread
/// entry, which queues work and wakes the loop. Several loops on several threads in one process
/// are independent: Spindle keeps no global mutable state.
///
/// ```swift
/// let loop = EventLoop()
/// loop.schedule(after: .milliseconds(5)) { print("tick") }
/// try loop.run()      // returns when no work is left
/// try loop.close()
/// ```
///
/// Wraps uv_loop_t.
public final class EventLoop: @unchecked Sendable, CustomStringConvertible {
    /// Where the loop is in its life.
    @usableFromInline enum State {
        case open
        case running
        case closed
    }

    /// How long ``run(_:)`` keeps going.
    public enum RunMode: Sendable {
        /// Until nothing is left that could produce an event (libuv's `UV_RUN_DEFAULT`). Work posted
        /// from other threads does not keep the loop alive in this mode.
        case untilNoWork
        /// Until ``stop()`` is called; the loop waits for ``post(_:)`` even with nothing else to do.
        case untilStopped
    }

    @usableFromInline package let uv: UnsafeMutablePointer<uv_loop_t>
    /// The owner thread, to name it in messages.
    @usableFromInline let owner: pthread_t
    /// The owner thread's process-unique number (see ``isOnLoopThread``).
    @usableFromInline let ownerThreadID: UInt64
    @exclusivity(unchecked) @usableFromInline var state: State = .open
    @exclusivity(unchecked) private var stopRequested = false
    /// Whether ``run(_:)`` runs ``RunMode/untilStopped`` (the wakeup then keeps the loop alive).
    @exclusivity(unchecked) private var keptAliveByRun = false {
        didSet { updateWakeupRef() }
    }
    /// Waits for another thread's answer under way on this loop (``beginRemoteWait()``).
    @exclusivity(unchecked) private var remoteWaits = 0
    /// The loop that was current on this thread when this one began running (usually none).
    @exclusivity(unchecked) private var outerLoop: UnsafeMutableRawPointer?
    @exclusivity(unchecked) private var attachments: [ObjectIdentifier: EventLoopAttachment] = [:]
    /// The attachments in the order they were made (the dictionary finds them by type). Walked
    /// at the end of every run: kept as an array, so a walk allocates nothing.
    @exclusivity(unchecked) private var attachmentsInOrder: [EventLoopAttachment] = []
    // One-entry cache in front of the dictionary: nearly every lookup is the fiber scheduler.
    // The address is unretained (the dictionary holds the object until the loop closes), so
    // `withAttachment` can lend it with no reference count change.
    @exclusivity(unchecked) @usableFromInline var cachedAttachmentKey: ObjectIdentifier?
    @exclusivity(unchecked) @usableFromInline var cachedAttachmentAddress: UnsafeMutableRawPointer?
    @exclusivity(unchecked) var inbox: PostInbox!
    @exclusivity(unchecked) var nextTurn: NextTurnQueue?
    /// The address of the hot attachment (see ``hotAttachment(_:_:)``), unretained: the
    /// attachments dictionary holds it until the loop closes.
    @exclusivity(unchecked) @usableFromInline var hotAttachmentAddress: UnsafeMutableRawPointer?

    /// The loop's number, unique in the process (1 for the first loop made).
    public let id: UInt64
    /// The loop's name, if it was given one (a `LoopGroup` names its loops); messages
    /// about the loop show it.
    public let name: String?

    /// Creates a loop owned by the calling thread. Wraps uv_loop_init.
    ///
    /// The first loop of the process sets SIGPIPE to be ignored, unless the program installed a
    /// handler of its own: a write to a peer that has gone then fails with `EPIPE`, which the
    /// writer sees as an error, instead of the signal killing the process.
    ///
    /// - Parameter name: how messages about the loop name it (see ``description``).
    public convenience init(name: String? = nil) {
        self.init(name: name, reservedID: Self.reserveIDs(1))
    }

    /// A loop numbered `reservedID`, a number ``reserveIDs(_:)`` handed out: a group numbers its
    /// loops in order although their threads start in any order.
    package init(name: String?, reservedID: UInt64) {
        id = reservedID
        self.name = name
        Self.ignoreSIGPIPE
        uv = UnsafeMutablePointer<uv_loop_t>.allocate(capacity: 1)
        UVError.mustSucceed(uv_loop_init(uv), "uv_loop_init")
        // Idle-time accounting (two clock reads around each epoll_wait): the time the loop spent
        // blocked, for the doctor and the counters.
        UVError.mustSucceed(spindle_uv_enable_idle_time(uv), "uv_loop_configure(UV_METRICS_IDLE_TIME)")
        owner = pthread_self()
        ownerThreadID = spindle_thread_id()
        inbox = PostInbox(loop: self)
    }

    /// The `data` of raw libuv handles that belong to the runtime's machinery rather than to a
    /// ``LoopHandle`` object (the fiber scheduler's sleep timers): handle walks skip them.
    nonisolated(unsafe) package static let rawMachineryMarker = UnsafeMutableRawPointer.allocate(
        byteCount: 1, alignment: 1)

    /// Evaluated once, by the first loop.
    private static let ignoreSIGPIPE: Void = {
        var current = sigaction()
        if sigaction(SIGPIPE, nil, &current) == 0, current.__sigaction_handler.sa_handler == nil {
            signal(SIGPIPE, SIG_IGN)
        }
    }()

    // MARK: Threads

    /// Whether the caller runs on the thread that owns this loop. The owner is known by its
    /// process-unique number (`spindle_thread_id`), not its pthread_t: glibc gives a finished
    /// thread's pthread_t to the next thread made, which would pass for the owner of a loop
    /// whose thread has gone.
    @inlinable public var isOnLoopThread: Bool { spindle_thread_id_or_zero() == ownerThreadID }

    /// Stops the process with a clear message when called from a thread that does not own the loop.
    @inlinable
    public func preconditionOnLoopThread(_ what: @autoclosure () -> String) {
        if _slowPath(spindle_thread_id_or_zero() != ownerThreadID) {
            wrongThread(what())
        }
    }

    @inline(never) @usableFromInline
    func wrongThread(_ what: String) -> Never {
        let here = Self.current.map { "\($0)'s thread " } ?? "thread "
        fatalError(
            "EventLoop used from the wrong thread: \(what) on \(here)\(Self.threadName(pthread_self())), "
                + "but this loop (\(self)) belongs to thread \(Self.threadName(owner)); "
                + "use loop.post { } to reach it from another thread")
    }

    /// `loop #3`, or `loop #3 "name"` for a named loop: how messages name the loop.
    public var description: String { name.map { "loop #\(id) \"\($0)\"" } ?? "loop #\(id)" }

    private static let lastID = Atomic<UInt64>(0)

    /// Reserves `count` consecutive loop numbers and returns the first.
    package static func reserveIDs(_ count: Int) -> UInt64 {
        lastID.add(UInt64(count), ordering: .relaxed).newValue - UInt64(count) + 1
    }

    static func threadName(_ thread: pthread_t) -> String {
        var buffer = [CChar](repeating: 0, count: 32)
        if spindle_thread_name(UInt64(thread), &buffer, buffer.count) == 0, buffer[0] != 0 {
            let name = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            return "\"\(name)\" (0x\(String(UInt(thread), radix: 16)))"
        }
        return "0x\(String(UInt(thread), radix: 16))"
    }

    /// The loop running on the calling thread: the one whose ``run(_:)`` or
    /// ``runOnce(blocking:)`` is under way here (so inside a fiber, the fiber's loop), or nil.
    public static var current: EventLoop? {
        guard let raw = spindle_current_loop() else { return nil }
        return Unmanaged<EventLoop>.fromOpaque(raw).takeUnretainedValue()
    }

    // MARK: Running

    /// Whether ``close()`` has begun tearing the loop down (its attachments are closed; work
    /// posted before the close still runs, and must not start new work).
    @exclusivity(unchecked) public private(set) var isClosing = false

    /// Whether ``close()`` has completed.
    public var isClosed: Bool { state == .closed }

    /// Runs the loop on the calling (owning) thread.
    ///
    /// With ``RunMode/untilNoWork`` it returns when no active handle, runnable fiber or pending
    /// callback is left. If at that point an attachment still has waiters — fibers parked on
    /// something that can no longer happen — it throws ``LoopError/deadlock(waiting:)`` naming them.
    /// A ``stop()`` makes it return early without that check. Wraps uv_run.
    public func run(_ mode: RunMode = .untilNoWork) throws {
        try beginRunning("EventLoop.run()")
        stopRequested = false
        defer { endRunning() }
        if mode == .untilStopped { keptAliveByRun = true }
        defer { if mode == .untilStopped { keptAliveByRun = false } }
        let started = Self.monotonicNanoseconds()
        defer { runningNanoseconds &+= Self.monotonicNanoseconds() &- started }
        while true {
            uv_run(uv, UV_RUN_DEFAULT)
            if stopRequested { return }
            // uv_run can return with work still runnable only when stopped; re-check once more in
            // case a close callback queued something.
            if uv_loop_alive(uv) != 0 { continue }
            break
        }
        var stalled: [String] = []
        for attachment in attachmentsInOrder { stalled += attachment.stalledWaiters() }
        if !stalled.isEmpty { throw LoopError.deadlock(waiting: stalled) }
    }

    /// Checks that the loop can run now and marks it running.
    private func beginRunning(_ what: String) throws {
        preconditionOnLoopThread(what)
        switch state {
        case .closed: throw LoopError.closed
        case .running: throw LoopError.alreadyRunning
        case .open: state = .running
        }
        outerLoop = spindle_current_loop()
        spindle_set_current_loop(Unmanaged.passUnretained(self).toOpaque())
    }

    private func endRunning() {
        spindle_set_current_loop(outerLoop)
        outerLoop = nil
        state = .open
        for attachment in attachmentsInOrder { attachment.loopDidStop() }
    }

    /// Whether ``run(_:)`` is running the loop now.
    @inlinable package var isRunning: Bool { state == .running }

    /// Runs one loop iteration. With `blocking` it waits for at least one event if there is work
    /// that could produce one. Returns whether work remains. Wraps uv_run with `UV_RUN_ONCE` or
    /// `UV_RUN_NOWAIT`.
    @discardableResult
    public func runOnce(blocking: Bool = true) throws -> Bool {
        try beginRunning("EventLoop.runOnce()")
        defer { endRunning() }
        let started = Self.monotonicNanoseconds()
        defer { runningNanoseconds &+= Self.monotonicNanoseconds() &- started }
        return uv_run(uv, blocking ? UV_RUN_ONCE : UV_RUN_NOWAIT) != 0
    }

    /// Marks the start of a wait for work another thread will post here (a fiber waiting for a
    /// cross-loop reply or message): until the matching ``endRemoteWait()``, the loop's wakeup
    /// keeps ``run(_:)`` from returning for lack of work, as an active handle would. Call both on
    /// the loop's thread.
    package func beginRemoteWait() {
        remoteWaits += 1
        if remoteWaits == 1 { updateWakeupRef() }
    }

    /// Ends a wait begun with ``beginRemoteWait()``.
    package func endRemoteWait() {
        remoteWaits -= 1
        if remoteWaits == 0 { updateWakeupRef() }
    }

    private func updateWakeupRef() {
        if state != .closed { inbox.keepsLoopAlive = keptAliveByRun || remoteWaits > 0 }
    }

    /// Nanoseconds spent inside ``run(_:)`` and ``runOnce(blocking:)`` so far.
    public private(set) var runningNanoseconds: UInt64 = 0

    /// Nanoseconds the loop spent blocked in the kernel waiting for events (epoll_wait), so far.
    /// Wraps uv_metrics_idle_time.
    public var idleNanoseconds: UInt64 { uv_metrics_idle_time(uv) }

    static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    /// Makes ``run(_:)`` return after the current iteration. Call it on the loop's thread; from
    /// another thread, use `loop.post { loop.stop() }`. Wraps uv_stop.
    public func stop() {
        preconditionOnLoopThread("EventLoop.stop()")
        stopRequested = true
        uv_stop(uv)
    }

    /// The loop's cached notion of now, in milliseconds, updated at the start of each iteration.
    /// Wraps uv_now.
    public var now: UInt64 { uv_now(uv) }

    /// The raw libuv loop, for code that must call libuv directly (tests, benchmarks' C kernels).
    public var unsafeUVLoop: UnsafeMutableRawPointer { UnsafeMutableRawPointer(uv) }

    // MARK: Attachments

    /// Returns the attachment of type `T`, creating it with `make` on first use.
    @inlinable
    public func attachment<T: EventLoopAttachment>(_ type: T.Type, _ make: () -> T) -> T {
        withAttachment(type, make) { $0 }
    }

    /// Runs `body` with the attachment of type `T` (made with `make` on first use), lent without
    /// a reference count change: the loop holds it. For hot paths such as a fiber's spawn,
    /// where ``attachment(_:_:)``'s returned reference cost a retain and a release.
    @inlinable
    public func withAttachment<T: EventLoopAttachment, R>(
        _ type: T.Type, _ make: () -> T, _ body: (T) throws -> R
    ) rethrows -> R {
        if ObjectIdentifier(type) == cachedAttachmentKey, let address = cachedAttachmentAddress {
            return try Unmanaged<T>.fromOpaque(address)._withUnsafeGuaranteedRef(body)
        }
        return try body(attachmentSlow(type, make))
    }

    @usableFromInline
    func attachmentSlow<T: EventLoopAttachment>(_ type: T.Type, _ make: () -> T) -> T {
        let key = ObjectIdentifier(type)
        if let existing = attachments[key] {
            cachedAttachmentKey = key
            cachedAttachmentAddress = Unmanaged.passUnretained(existing as AnyObject).toOpaque()
            return unsafeDowncast(existing, to: T.self)
        }
        preconditionOnLoopThread("attaching \(T.self) to the loop")
        precondition(state != .closed, "cannot attach \(T.self) to a closed EventLoop")
        let made = make()
        attachments[key] = made
        attachmentsInOrder.append(made)
        return made
    }

    /// The attachment of type `T` (made with `make` on first use), lent: the loop holds it.
    ///
    /// For the one layer whose hot paths reach its per-loop state on every operation (the
    /// futures layer: the futures it reuses). The first type to ask claims the hot slot for the
    /// whole process; any other type asking stops the process, saying so. Other attachments use
    /// ``withAttachment(_:_:_:)``. Once it is made, the hot path reads ``madeHotAttachment``: a
    /// load and a test.
    package func hotAttachment<T: EventLoopAttachment>(_ type: T.Type, _ make: () -> T) -> Unmanaged<T> {
        let claimed = Self.hotAttachmentType.withLock { claimed -> ObjectIdentifier in
            if claimed == nil { claimed = ObjectIdentifier(type) }
            return claimed!
        }
        precondition(
            claimed == ObjectIdentifier(type),
            "\(T.self) asked for the loop's hot attachment, which another layer's type holds: use withAttachment")
        if let address = hotAttachmentAddress { return Unmanaged.fromOpaque(address) }
        let attachment = Unmanaged.passUnretained(attachmentSlow(type, make))
        hotAttachmentAddress = attachment.toOpaque()
        return attachment
    }

    /// The hot attachment, lent, once one was made (see ``hotAttachment(_:_:)``). Its type is
    /// the one that claimed the slot for the process.
    @inlinable package var madeHotAttachment: UnsafeMutableRawPointer? { hotAttachmentAddress }

    /// The type that claimed the hot slot, for every loop of the process.
    private static let hotAttachmentType = Locked<ObjectIdentifier?>(nil)

    /// The attachment of type `T`, if one was made.
    public func existingAttachment<T: EventLoopAttachment>(_ type: T.Type) -> T? {
        attachments[ObjectIdentifier(type)].map { unsafeDowncast($0, to: T.self) }
    }

    // MARK: Closing

    /// Everything that would stop ``close()``: open handles, suspended fibers, queued work.
    public func openItems() -> [String] {
        var items = attachmentsInOrder.flatMap { $0.openItems() }
        items += userHandleDescriptions()
        if let nextTurn, nextTurn.pendingCount > 0 {
            items.append("\(nextTurn.pendingCount) next-turn callback(s) not yet run")
        }
        return items
    }

    private func userHandleDescriptions() -> [String] {
        var found: [String] = []
        withUnsafeMutablePointer(to: &found) { list in
            uv_walk(uv, describeOpenHandle, UnsafeMutableRawPointer(list))
        }
        return found
    }

    /// Closes every handle still open on this loop that belongs to its user (listeners,
    /// connections, timers, watchers); the loop's own machinery and its attachments' stay.
    /// Their close callbacks run on the loop's next turn. For a shutdown that must not leave
    /// handles behind once the fibers that used them are gone. Returns how many it closed.
    @discardableResult
    public func closeOpenHandles() -> Int {
        preconditionOnLoopThread("EventLoop.closeOpenHandles()")
        var open: [LoopHandle] = []
        withUnsafeMutablePointer(to: &open) { list in
            uv_walk(uv, collectOpenHandle, UnsafeMutableRawPointer(list))
        }
        for handle in open { handle.close() }
        return open.count
    }

    /// Closes the loop and frees it.
    ///
    /// Refuses, throwing ``LoopError/stillOpen(_:)``, while anything is still open: a handle the
    /// user did not close, a fiber still suspended (it cannot be unwound by force). The loop then
    /// stays usable, so the caller can finish that work and close again. Wraps uv_loop_close.
    public func close() throws {
        preconditionOnLoopThread("EventLoop.close()")
        switch state {
        case .closed: return
        case .running: throw LoopError.alreadyRunning
        case .open: break
        }
        let open = openItems()
        if !open.isEmpty { throw LoopError.stillOpen(open) }
        isClosing = true
        for attachment in attachmentsInOrder { attachment.loopWillClose() }
        nextTurn?.closeHandles()
        inbox.closeHandle()
        // Let the close callbacks run, then free.
        try beginRunning("EventLoop.close()")
        uv_run(uv, UV_RUN_DEFAULT)
        endRunning()
        inbox.drainAfterClose()
        let status = uv_loop_close(uv)
        if status < 0 {
            fatalError("uv_loop_close failed after every handle was closed: \(UVError(code: status))")
        }
        state = .closed
        attachments.removeAll()
        attachmentsInOrder.removeAll()
        cachedAttachmentAddress = nil
        cachedAttachmentKey = nil
        hotAttachmentAddress = nil
        nextTurn = nil
        uv.deallocate()
    }

    deinit {
        if state != .closed {
            if openItems().isEmpty, isOnLoopThread {
                try? close()
            } else {
                spindleWarning(
                    "an EventLoop was released without close(); its memory is leaked "
                        + "because it still holds: \(openItems().joined(separator: "; "))\n")
            }
        }
    }
}

/// uv_walk callback that collects the user's open handles as objects.
private let collectOpenHandle: @convention(c) (UnsafeMutablePointer<uv_handle_t>?, UnsafeMutableRawPointer?) -> Void = {
    handle, context in
    guard let handle, let context, uv_is_closing(handle) == 0, let data = handle.pointee.data,
        data != EventLoop.rawMachineryMarker
    else { return }
    let object = Unmanaged<LoopHandle>.fromOpaque(data).takeUnretainedValue()
    if object.isLoopMachinery { return }
    context.assumingMemoryBound(to: [LoopHandle].self).pointee.append(object)
}

/// uv_walk callback that lists open, non-internal handles.
private let describeOpenHandle: @convention(c) (UnsafeMutablePointer<uv_handle_t>?, UnsafeMutableRawPointer?) -> Void =
    {
        handle, context in
        guard let handle, let context else { return }
        if uv_is_closing(handle) != 0 { return }
        let list = context.assumingMemoryBound(to: [String].self)
        if let data = handle.pointee.data {
            if data == EventLoop.rawMachineryMarker { return }
            let object = Unmanaged<LoopHandle>.fromOpaque(data).takeUnretainedValue()
            if object.isLoopMachinery { return }
            list.pointee.append("\(object.handleDescription) handle not closed")
        } else {
            list.pointee.append("\(String(cString: uv_handle_type_name(handle.pointee.type))) handle not closed")
        }
    }

extension Optional where Wrapped == AnyObject {
    /// Stores `object` in this slot. Assigning would release the old value even when there is
    /// none, and a release of nil is still a call: a slot on a hot path that is usually empty
    /// when filled (a future's first callback target, its forward, a reused future) is
    /// initialised instead when it is empty.
    @inlinable @inline(__always)
    package mutating func fill(with object: __owned AnyObject?) {
        if self == nil {
            withUnsafeMutablePointer(to: &self) { $0.initialize(to: object) }
        } else {
            self = object
        }
    }
}
