import CSpindleSupport

extension Fiber {
    /// Where a fiber is in its life. The park reason is a value the tracer and the doctor print.
    public enum State: Equatable, Sendable, CustomStringConvertible {
        /// Spawned, not yet run (it is in the run queue).
        case created
        /// Waiting in the run queue for its turn.
        case runnable
        /// Running on the loop's thread right now.
        case running
        /// Suspended until something wakes it.
        case parked(ParkReason)
        /// Its body returned or threw; its stack has been (or is about to be) reclaimed.
        case finished

        public var description: String {
            switch self {
            case .created: return "created"
            case .runnable: return "runnable"
            case .running: return "running"
            case .parked(let reason): return "parked on \(reason)"
            case .finished: return "finished"
            }
        }
    }

    /// Why a fiber is parked. Blocking operations pass one to ``Fiber/park(_:detail:cancellable:)``.
    @frozen
    public enum ParkReason: UInt8, Sendable, CustomStringConvertible, CaseIterable {
        /// ``Fiber/sleep(for:)``: a timer.
        case sleep = 1
        /// ``FiberHandle/join()``: another fiber to finish.
        case join
        /// A read or receive: data from a socket, pipe or datagram socket.
        case read
        /// A write or send: the kernel to take the bytes.
        case write
        /// A TCP or pipe connect.
        case connect
        /// A listener's accept: the next connection.
        case accept
        /// A file operation on libuv's thread pool.
        case file
        /// A DNS resolution (getaddrinfo on libuv's thread pool).
        case resolve
        /// A signal (``Fiber/waitForSignal(_:)``).
        case signal
        /// ``Channel/send(_:)``: a receiver, or room in the buffer.
        case channelSend
        /// ``Channel/receive()``: a value, or the channel's close.
        case channelReceive
        /// ``Fiber/select(_:timeout:)-(SelectCase...,_)``: the first of several channel operations.
        case select
        /// ``FiberMutex/lock()``: the mutex.
        case mutex
        /// ``FiberSemaphore/wait()``: a permit.
        case semaphore
        /// ``FiberEvent/wait()``: the event to be set.
        case event
        /// ``WaitGroup/wait()``: the group's tasks to be done.
        case waitGroup
        /// A future's `wait()` (SpindleFutures): its promise to be completed.
        case future
        /// An async function run from the fiber (SpindleAsync): its Task to end.
        case async
        /// Anything else: a park by code outside Spindle (``Fiber/park(_:detail:cancellable:)``).
        case other
        /// A call to another loop (`EventLoop.call`): its answer. The detail is that loop's id.
        case crossLoopCall
        /// A ``CrossLoopChannel`` send: room in the channel, or its close.
        case crossLoopSend
        /// A ``CrossLoopChannel`` receive: a value, or the channel's close.
        case crossLoopReceive

        public var description: String {
            switch self {
            case .sleep: return "sleep"
            case .join: return "join"
            case .read: return "read"
            case .write: return "write"
            case .connect: return "connect"
            case .accept: return "accept"
            case .file: return "file I/O"
            case .resolve: return "DNS resolution"
            case .signal: return "signal"
            case .channelSend: return "channel send"
            case .channelReceive: return "channel receive"
            case .select: return "select"
            case .mutex: return "mutex"
            case .semaphore: return "semaphore"
            case .event: return "event"
            case .waitGroup: return "wait group"
            case .future: return "future"
            case .async: return "async task"
            case .other: return "other"
            case .crossLoopCall: return "cross-loop call"
            case .crossLoopSend: return "cross-loop channel send"
            case .crossLoopReceive: return "cross-loop channel receive"
            }
        }
    }

    /// Why a parked fiber was woken: returned by ``Fiber/park(_:detail:cancellable:)``.
    @frozen
    public enum WakeReason: UInt8, Sendable {
        /// What it waited for happened.
        case ready = 0
        /// ``FiberHandle/cancel()`` was called; the blocking call should throw `CancellationError`.
        case cancelled = 1
        /// A deadline or timeout passed.
        case timedOut = 2
        /// The object waited on was closed.
        case closed = 3
    }
}

extension Fiber.State {
    init(_ fiber: UnsafeMutablePointer<spindle_fiber_t>) {
        // The switch path does not store "running": the running fiber is the thread's current one.
        if fiber == spindle_current_fiber(), fiber.pointee.state != UInt8(SPINDLE_FIBER_FINISHED) {
            self = .running
            return
        }
        switch Int(fiber.pointee.state) {
        case SPINDLE_FIBER_CREATED: self = .created
        case SPINDLE_FIBER_RUNNABLE: self = .runnable
        case SPINDLE_FIBER_RUNNING: self = .running
        case SPINDLE_FIBER_PARKED: self = .parked(Fiber.ParkReason(rawValue: fiber.pointee.park_reason) ?? .other)
        default: self = .finished
        }
    }
}
