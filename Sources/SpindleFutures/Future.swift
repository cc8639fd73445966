import Spindle
@_exported import SpindleCallbacks
@_exported import SpindleLoop

/// A value that arrives later, bound to one loop: callbacks run on that loop's thread, in the
/// order they were added, once the value (or error) is there.
///
/// Futures are made by a ``Promise`` (``SpindleLoop/EventLoop/makePromise(of:file:line:)``), by
/// ``SpindleLoop/EventLoop/makeSucceededFuture(_:)`` / ``SpindleLoop/EventLoop/makeFailedFuture(_:)``,
/// by the I/O adapters (`connection.read(into:) -> Future<Int>`), and by combining others with
/// ``map(_:)``, ``flatMap(_:)``, ``flatMapError(_:)``, ``and(_:)``, ``fold(_:with:)`` and
/// ``SpindleLoop/EventLoop/all(_:)``.
///
/// - Everything happens on the loop's thread: no lock. Completing a promise from another thread
///   hops to the loop through its wakeup (``SpindleLoop/EventLoop/post(_:)``).
/// - A callback added to a completed future runs at once; one added before completion runs when
///   the promise completes (nested inside the completing call).
/// - A fiber can wait for a future with ``wait()``: the fiber parks, the thread does not.
/// - A future dropped while still pending — its promise was never completed — is reported on
///   standard error, naming where the promise was made.
public final class Future<Value> {
    /// The loop whose thread runs this future's callbacks.
    public let loop: EventLoop
    @exclusivity(unchecked) @usableFromInline var value: Result<Value, any Error>?
    @exclusivity(unchecked) @usableFromInline var firstCallback: ((Result<Value, any Error>) -> Void)?
    @exclusivity(unchecked) @usableFromInline var moreCallbacks: [(Result<Value, any Error>) -> Void] = []
    let file: StaticString
    let line: UInt

    @usableFromInline
    init(loop: EventLoop, value: Result<Value, any Error>?, file: StaticString, line: UInt) {
        self.loop = loop
        self.value = value
        self.file = file
        self.line = line
    }

    /// The outcome, if the future has completed.
    public var result: Result<Value, any Error>? { value }

    /// Whether the future has completed.
    public var isComplete: Bool { value != nil }

    // MARK: Observing

    /// Runs `callback` with the outcome, on the loop's thread (at once if already complete).
    @inlinable
    public func whenComplete(_ callback: @escaping (Result<Value, any Error>) -> Void) {
        loop.preconditionOnLoopThread("Future.whenComplete")
        if let value {
            callback(value)
        } else if firstCallback == nil {
            firstCallback = callback
        } else {
            moreCallbacks.append(callback)
        }
    }

    /// Runs `callback` with the value if the future succeeds.
    @inlinable
    public func whenSuccess(_ callback: @escaping (Value) -> Void) {
        whenComplete { if case .success(let value) = $0 { callback(value) } }
    }

    /// Runs `callback` with the error if the future fails.
    @inlinable
    public func whenFailure(_ callback: @escaping (any Error) -> Void) {
        whenComplete { if case .failure(let error) = $0 { callback(error) } }
    }

    // MARK: Completing (through a Promise)

    @usableFromInline
    func complete(_ outcome: Result<Value, any Error>) {
        guard loop.isOnLoopThread else {
            let transfer = UncheckedTransfer((self, outcome))
            loop.post {
                let (future, outcome) = transfer.value
                future.complete(outcome)
            }
            return
        }
        precondition(value == nil, "a Promise was completed twice (made at \(file):\(line))")
        value = outcome
        guard let first = firstCallback else { return }
        firstCallback = nil
        first(outcome)
        if !moreCallbacks.isEmpty {
            let rest = moreCallbacks
            moreCallbacks = []
            for callback in rest { callback(outcome) }
        }
    }

    // MARK: Combining

    /// A future of `transform` applied to this one's value (an error, or what `transform`
    /// throws, fails it).
    @inlinable
    public func map<NewValue>(
        file: StaticString = #fileID, line: UInt = #line, _ transform: @escaping (Value) throws -> NewValue
    ) -> Future<NewValue> {
        if let value {  // already complete: no promise, no callback
            return Future<NewValue>(loop: loop, value: Result { try transform(value.get()) }, file: file, line: line)
        }
        let next = Future<NewValue>(loop: loop, value: nil, file: file, line: line)
        whenComplete { outcome in next.complete(Result { try transform(outcome.get()) }) }
        return next
    }

    /// A future that completes with the future `next` returns for this one's value.
    @inlinable
    public func flatMap<NewValue>(
        file: StaticString = #fileID, line: UInt = #line, _ next: @escaping (Value) -> Future<NewValue>
    ) -> Future<NewValue> {
        if case .success(let value) = value { return next(value) }
        if case .failure(let error) = value { return Future<NewValue>(loop: loop, value: .failure(error), file: file, line: line) }
        let result = Future<NewValue>(loop: loop, value: nil, file: file, line: line)
        whenComplete { outcome in
            switch outcome {
            case .success(let value): next(value).whenComplete { result.complete($0) }
            case .failure(let error): result.complete(.failure(error))
            }
        }
        return result
    }

    /// A future that recovers from this one's error with the future `recover` returns.
    @inlinable
    public func flatMapError(
        file: StaticString = #fileID, line: UInt = #line, _ recover: @escaping (any Error) -> Future<Value>
    ) -> Future<Value> {
        let result = Future<Value>(loop: loop, value: nil, file: file, line: line)
        whenComplete { outcome in
            switch outcome {
            case .success: result.complete(outcome)
            case .failure(let error): recover(error).whenComplete { result.complete($0) }
            }
        }
        return result
    }

    /// A future of both values, failing with the first error.
    public func and<Other>(_ other: Future<Other>, file: StaticString = #fileID, line: UInt = #line) -> Future<(Value, Other)> {
        flatMap(file: file, line: line) { mine in other.map { (mine, $0) } }
    }

    /// Folds `futures` into this one's value with `combine`, in order, failing with the first error.
    public func fold<Other>(
        _ futures: [Future<Other>], with combine: @escaping (Value, Other) -> Future<Value>
    ) -> Future<Value> {
        futures.reduce(self) { accumulated, next in
            accumulated.flatMap { value in next.flatMap { combine(value, $0) } }
        }
    }

    // MARK: Fibers

    /// Waits for the outcome in the running fiber (parking the fiber, not the thread) and
    /// returns the value or throws the error. Cancellable: a cancelled fiber throws
    /// `CancellationError` (the future itself carries on).
    public func wait() throws -> Value {
        if let value { return try value.get() }
        let me = Fiber.current
        precondition(me.loop === loop, "Future.wait(): the future belongs to another loop than the waiting fiber's")
        try Fiber.checkCancellation()
        whenComplete { [unowned(unsafe) self] _ in if me.isParked(waitingFor: self) { me.wake(.ready) } }
        while value == nil {
            let reason = Fiber.park(waitingFor: self, .future)
            if reason == .cancelled { throw CancellationError() }
            if reason == .timedOut { throw FiberTimeoutError() }
        }
        return try value!.get()
    }

    deinit {
        if value == nil {
            spindleWarning("a Future was dropped before its Promise was completed (made at \(file):\(line)); "
                + "whatever waited for it will never run")
        }
    }
}

/// The writing end of a ``Future``: complete it once, from any thread.
public struct Promise<Value>: @unchecked Sendable {
    /// The future this promise completes.
    public let futureResult: Future<Value>

    @usableFromInline init(_ future: Future<Value>) { futureResult = future }

    /// Completes the future with `value`.
    @inlinable public func succeed(_ value: Value) { futureResult.complete(.success(value)) }

    /// Completes the future with `error`.
    @inlinable public func fail(_ error: any Error) { futureResult.complete(.failure(error)) }

    /// Completes the future with `outcome`.
    @inlinable public func complete(_ outcome: Result<Value, any Error>) { futureResult.complete(outcome) }

    /// Completes the future with a UVError-or-value result, as the callback layer delivers them.
    @inlinable public func complete<Failure: Error>(_ outcome: Result<Value, Failure>) {
        futureResult.complete(outcome.mapError { $0 as any Error })
    }
}

extension EventLoop {
    /// A promise whose future belongs to this loop. `file` and `line` name it if it is dropped
    /// without being completed.
    @inlinable
    public func makePromise<Value>(
        of type: Value.Type = Value.self, file: StaticString = #fileID, line: UInt = #line
    ) -> Promise<Value> {
        Promise(Future(loop: self, value: nil, file: file, line: line))
    }

    /// A future that has already succeeded with `value`.
    @inlinable
    public func makeSucceededFuture<Value>(_ value: Value, file: StaticString = #fileID, line: UInt = #line) -> Future<Value> {
        Future(loop: self, value: .success(value), file: file, line: line)
    }

    /// A future that has already failed with `error`.
    @inlinable
    public func makeFailedFuture<Value>(
        _ error: any Error, of type: Value.Type = Value.self, file: StaticString = #fileID, line: UInt = #line
    ) -> Future<Value> {
        Future(loop: self, value: .failure(error), file: file, line: line)
    }

    /// A future of every value of `futures`, in their order; fails with the first error to arrive.
    public func all<Value>(_ futures: [Future<Value>], file: StaticString = #fileID, line: UInt = #line) -> Future<[Value]> {
        let promise = makePromise(of: [Value].self, file: file, line: line)
        var values = [Value?](repeating: nil, count: futures.count)
        var remaining = futures.count
        if remaining == 0 { promise.succeed([]) }
        for (index, future) in futures.enumerated() {
            future.whenComplete { outcome in
                guard !promise.futureResult.isComplete else { return }
                switch outcome {
                case .success(let value):
                    values[index] = value
                    remaining -= 1
                    if remaining == 0 { promise.succeed(values.map { $0! }) }
                case .failure(let error):
                    promise.fail(error)
                }
            }
        }
        return promise.futureResult
    }
}

/// Carries a non-Sendable value to the loop's thread, where it is used alone.
struct UncheckedTransfer<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
