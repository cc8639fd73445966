import Glibc
import SpindleLoop

/// Keeps an object alive while it has operations pending, so a completion is never lost (or
/// delivered to freed memory) because its owner dropped the object early.
struct KeepAlive {
    private var count = 0
    private var retain: Unmanaged<AnyObject>?

    mutating func begin(_ owner: AnyObject) {
        if count == 0 { retain = Unmanaged.passRetained(owner) }
        count += 1
    }

    /// The owner may be freed when this returns.
    mutating func end() {
        endLater().perform()
    }

    /// A release to perform later (after a completion that may touch the owner has run).
    struct Release {
        fileprivate let retain: Unmanaged<AnyObject>?
        func perform() { retain?.release() }
    }

    mutating func endLater() -> Release {
        count -= 1
        guard count == 0, let retain else { return Release(retain: nil) }
        self.retain = nil
        return Release(retain: retain)
    }
}

/// The bookkeeping of one outstanding read — a stream read or a datagram receive: whether one
/// is outstanding, and keeping the owner alive meanwhile (the socket itself holds the buffer). The completion itself stays in
/// the owner, at its concrete type: a closure stored in a generic class goes through a
/// reabstraction thunk, an allocation per read.
struct OutstandingRead {
    private(set) var isOutstanding = false
    private var pending = KeepAlive()

    /// Records a read for `owner` (the caller has checked none is outstanding).
    mutating func begin(owner: AnyObject) {
        isOutstanding = true
        pending.begin(owner)
    }

    /// The read is over; returns the release to perform once its completion has run (the owner
    /// may be freed then).
    mutating func end() -> KeepAlive.Release {
        isOutstanding = false
        return pending.endLater()
    }
}

extension Callbacks {
    /// A connected stream — TCP (``TCPConnection``) or Unix-domain (``PipeConnection``) — with
    /// one closure per read and per write, on the loop's thread.
    ///
    /// Reads go straight into the caller's buffer (libuv reads into it; nothing is copied); one
    /// read is outstanding at a time. Reading stays switched on between reads, so a read issued
    /// from a completion costs no epoll re-registration; data that arrives while no read is
    /// outstanding waits in the kernel.
    public class StreamConnection {
        /// The underlying libuv stream.
        public let stream: StreamSocket
        private var reading = OutstandingRead()
        private var readCompletion: (Result<Int, UVError>) throws -> Void = { _ in }
        /// The completion of a read started by ``read(into:holding:_:)``, and its object.
        private var objectReadCompletion: ((inout AnyObject?, Result<Int, UVError>) -> Void)?
        private var readObject: AnyObject?
        private var pending = KeepAlive()

        init(stream: StreamSocket) {
            self.stream = stream
            stream.setReadHandler { [unowned self] result in self.readFinished(result) }
        }

        /// Reads what is available (at least one byte, up to `buffer.count`) into `buffer` and
        /// calls `completion` with the count (0 at end of stream) or the error (`ECONNRESET`,
        /// `ECANCELED` when the connection is closed first). `buffer` must stay valid until then.
        /// One read at a time: a second read before the first completes is a programming error
        /// and stops the process with a message.
        public final func read(
            into buffer: UnsafeMutableRawBufferPointer, _ completion: @escaping (Result<Int, UVError>) throws -> Void
        ) {
            guard startRead(into: buffer) else {
                Callbacks.deliver(completion, .failure(Self.closedForReading), "read")
                return
            }
            readCompletion = completion
            continueRead()
        }

        /// ``read(into:_:)`` for a layer above with an object to complete and a completion that
        /// captures nothing: the connection keeps `object` until the read is over and hands it
        /// to `completion` in a slot it may move it out of (so the completion holds the only
        /// reference, if no one else does). The futures layer completes a read's future this
        /// way, and reuses the future once nothing else holds it.
        @usableFromInline
        package final func read(
            into buffer: UnsafeMutableRawBufferPointer, holding object: __owned AnyObject,
            _ completion: @escaping (inout AnyObject?, Result<Int, UVError>) -> Void
        ) {
            guard startRead(into: buffer) else {
                var object: AnyObject? = object
                completion(&object, .failure(Self.closedForReading))
                return
            }
            readObject = object
            objectReadCompletion = completion
            continueRead()
        }

        private static var closedForReading: UVError {
            UVError(code: -ECANCELED, operation: "read on a closed connection")
        }

        /// Checks and records the start of a read; false when the connection is closed.
        @inline(__always)
        private func startRead(into buffer: UnsafeMutableRawBufferPointer) -> Bool {
            stream.preconditionOnLoopThread("Callbacks.StreamConnection.read")
            precondition(
                !reading.isOutstanding,
                "Callbacks.StreamConnection.read: a read is already outstanding on this connection")
            if stream.isClosed { return false }
            reading.begin(owner: self)
            stream.readTarget = buffer
            return true
        }

        /// Switches reading on once the completion is in place.
        @inline(__always)
        private func continueRead() {
            do {
                try stream.startReading()
            } catch {
                readFinished(.failure(error))
            }
        }

        private func readFinished(_ result: Result<Int, UVError>) {
            stream.readTarget = UnsafeMutableRawBufferPointer(start: nil, count: 0)
            switch result {
            case .failure, .success(0): stream.stopReading()
            default: break
            }
            guard reading.isOutstanding else { return }
            let release = reading.end()
            if let objectCompletion = objectReadCompletion.take() {
                var object = readObject.take()
                objectCompletion(&object, result)
            } else {
                let completion = readCompletion
                readCompletion = { _ in }  // nothing captured stays alive past its read
                Callbacks.deliver(completion, result, "read")
            }
            release.perform()
        }

        /// Writes all of `bytes` and calls `completion` with nil or the error (`EPIPE`,
        /// `ECANCELED` when the connection is closed first). What the kernel takes at once is
        /// written right away and `completion` runs before `write` returns; the rest is queued
        /// (then `bytes` must stay valid until `completion` runs).
        public final func write(_ bytes: UnsafeRawBufferPointer, _ completion: @escaping (UVError?) throws -> Void) {
            let written: Int
            do {
                written = try stream.tryWrite(bytes)
            } catch {
                Callbacks.deliver(completion, error, "write")
                return
            }
            if written == bytes.count {
                Callbacks.deliver(completion, nil, "write")
                return
            }
            pending.begin(self)
            stream.write(UnsafeRawBufferPointer(rebasing: bytes[written...])) { [self] error in
                Callbacks.deliver(completion, error, "write")
                pending.end()
            }
        }

        /// Writes all of `bytes` (the array is kept until the write completes).
        public final func write(_ bytes: [UInt8], _ completion: @escaping (UVError?) throws -> Void) {
            bytes.withUnsafeBytes { raw in
                write(raw) { error in
                    withExtendedLifetime(bytes) {}
                    try completion(error)
                }
            }
        }

        /// Half-closes after pending writes: the peer reads end of stream.
        public final func shutdown(_ completion: @escaping (UVError?) throws -> Void) {
            pending.begin(self)
            stream.shutdown { [self] error in
                Callbacks.deliver(completion, error, "shutdown")
                pending.end()
            }
        }

        /// Closes the connection: an outstanding read completes with `ECANCELED` now, queued
        /// writes and shutdowns with `ECANCELED` on a later turn.
        public final func close() { stream.close() }

        deinit {
            // Nobody can read from or write to this stream any more: close it, so that data
            // arriving later does not look for a reader that is gone.
            // Stop reading first: closing a reading stream reports ECANCELED to its read handler,
            // which points back at this object.
            if stream.loop.isOnLoopThread {
                stream.stopReading()
                stream.close()
            }
        }
    }

    /// Connects `socket` with `start` and calls `completion` with the connection made by `make`
    /// or the error (closing the socket).
    static func connect<Socket: StreamSocket, Connection>(
        _ socket: Socket, _ start: (Socket, @escaping (UVError?) -> Void) -> Void,
        make: @escaping (Socket) -> Connection,
        _ completion: @escaping (Result<Connection, UVError>) throws -> Void
    ) {
        start(socket) { error in
            if let error {
                socket.close()
                Callbacks.deliver(completion, .failure(error), "connect")
            } else {
                Callbacks.deliver(completion, .success(make(socket)), "connect")
            }
        }
    }

    /// Listens on `socket` and calls `onConnection` for every connection `accept` takes (or
    /// with the error).
    static func listen<Socket: StreamSocket, Connection>(
        _ socket: Socket, backlog: Int32, accept: @escaping () throws(UVError) -> Connection,
        _ onConnection: @escaping (Result<Connection, UVError>) throws -> Void
    ) throws(UVError) {
        try socket.listen(backlog: backlog) { error in
            if let error {
                Callbacks.deliver(onConnection, .failure(error), "accept")
                return
            }
            do throws(UVError) {
                Callbacks.deliver(onConnection, .success(try accept()), "accept")
            } catch {
                Callbacks.deliver(onConnection, .failure(error), "accept")
            }
        }
    }
}
