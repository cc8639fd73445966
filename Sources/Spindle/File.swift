import Glibc
import SpindleLoop

/// A file for fibers: every call parks the fiber while libuv's thread pool does the work, so
/// the loop keeps serving other fibers meanwhile.
public final class FiberFile {
    /// The file descriptor (-1 once closed).
    public private(set) var descriptor: Int32
    private let loop: EventLoop

    private init(descriptor: Int32, loop: EventLoop) {
        self.descriptor = descriptor
        self.loop = loop
    }

    /// Opens `path` with `open(2)` flags (`O_RDONLY`; `O_WRONLY | O_CREAT | O_TRUNC`; ...).
    /// Throws `ENOENT: no such file or directory` and the like.
    public static func open(_ path: String, flags: Int32 = O_RDONLY, mode: Int32 = 0o644) throws -> FiberFile {
        let loop = Scheduler.of(Fiber.runningFiber("FiberFile.open").pointee.sched).loop
        let fd = try Fiber.awaitResult(.file) { FileSystem.open(path, flags: flags, mode: mode, on: loop, $0) }
        return FiberFile(descriptor: fd, loop: loop)
    }

    /// Reads up to `buffer.count` bytes at `offset` (nil: the current position); 0 at end of file.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64? = nil) throws -> Int {
        try Fiber.awaitResult(.file) { FileSystem.read(openDescriptor, into: buffer, at: offset ?? -1, on: loop, $0) }
    }

    /// Writes all of `bytes` at `offset` (nil: the current position).
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64? = nil) throws {
        var done = 0
        while done < bytes.count {
            let rest = UnsafeRawBufferPointer(rebasing: bytes[done...])
            let position = offset.map { $0 + Int64(done) } ?? -1
            done += try Fiber.awaitResult(.file) { FileSystem.write(openDescriptor, rest, at: position, on: loop, $0) }
        }
    }

    /// Writes all of `bytes`.
    public func write(_ bytes: [UInt8], at offset: Int64? = nil) throws {
        try bytes.withUnsafeBytes { try write($0, at: offset) }
    }

    /// Flushes the file to its device.
    public func sync() throws {
        try Fiber.awaitResult(.file) { FileSystem.fsync(openDescriptor, on: loop, $0) }
    }

    /// The size and kind of the file at `path`.
    public static func status(of path: String) throws -> FileSystem.Status {
        let loop = Scheduler.of(Fiber.runningFiber("FiberFile.status").pointee.sched).loop
        return try Fiber.awaitResult(.file) { FileSystem.stat(path, on: loop, $0) }
    }

    /// Closes the file. Closing twice does nothing.
    public func close() throws {
        guard descriptor >= 0 else { return }
        let fd = descriptor
        descriptor = -1
        try Fiber.awaitResult(.file) { FileSystem.close(fd, on: loop, $0) }
    }

    private var openDescriptor: Int32 {
        precondition(descriptor >= 0, "FiberFile used after close()")
        return descriptor
    }

    deinit {
        if descriptor >= 0 {
            // Not in a fiber necessarily: close synchronously rather than leak the descriptor.
            Glibc.close(descriptor)
        }
    }
}

extension Fiber {
    /// Starts an operation whose completion gives a `Result`, and parks the running fiber until
    /// it does (see ``Pending/await(_:_:)``).
    static func awaitResult<T>(_ reason: ParkReason, _ start: (@escaping (Result<T, UVError>) -> Void) -> Void) throws
        -> T
    {
        try Pending<T>.await(reason, start)
    }
}
