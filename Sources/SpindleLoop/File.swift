import CLibUV
import Glibc

/// File operations on libuv's thread pool, with completions on the loop's thread.
/// Each wraps the uv_fs_* call of the same name; results are byte counts or descriptors, errors
/// `UVError` (`ENOENT: no such file or directory`).
public enum FileSystem {
    /// What ``stat(_:on:_:)`` reports.
    public struct Status: Sendable, Equatable {
        /// The size in bytes (`st_size`).
        public var size: UInt64
        /// The file type and permission bits (`st_mode`).
        public var mode: UInt64
        // S_IFMT, S_IFDIR and S_IFREG (the Glibc overlay imports them ambiguously).
        /// Whether the path is a directory.
        public var isDirectory: Bool { mode & 0o170000 == 0o040000 }
        /// Whether the path is a regular file.
        public var isRegularFile: Bool { mode & 0o170000 == 0o100000 }
    }

    /// Opens `path` (`O_RDONLY`, `O_WRONLY | O_CREAT | O_TRUNC`, ...) and gives the descriptor.
    public static func open(
        _ path: String, flags: Int32, mode: Int32 = 0o644, on loop: EventLoop,
        _ completion: @escaping (Result<Int32, UVError>) -> Void
    ) {
        run(on: loop, "uv_fs_open \(path)", { uv_fs_open(loop.uv, $0, path, flags, mode, $1) }) { request, error in
            completion(error.map { .failure($0) } ?? .success(Int32(request.pointee.result)))
        }
    }

    /// Reads up to `buffer.count` bytes at `offset` (-1: the current position); 0 at end of file.
    public static func read(
        _ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int64 = -1, on loop: EventLoop,
        _ completion: @escaping (Result<Int, UVError>) -> Void
    ) {
        var buf = uv_buf_init(buffer.baseAddress?.assumingMemoryBound(to: CChar.self), UInt32(buffer.count))
        run(on: loop, "uv_fs_read", { uv_fs_read(loop.uv, $0, fd, &buf, 1, offset, $1) }) { request, error in
            completion(error.map { .failure($0) } ?? .success(Int(request.pointee.result)))
        }
    }

    /// Writes `bytes` at `offset` (-1: the current position) and gives the count written.
    public static func write(
        _ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int64 = -1, on loop: EventLoop,
        _ completion: @escaping (Result<Int, UVError>) -> Void
    ) {
        var buf = uv_buf_init(
            UnsafeMutablePointer(mutating: bytes.baseAddress?.assumingMemoryBound(to: CChar.self)), UInt32(bytes.count))
        run(on: loop, "uv_fs_write", { uv_fs_write(loop.uv, $0, fd, &buf, 1, offset, $1) }) { request, error in
            completion(error.map { .failure($0) } ?? .success(Int(request.pointee.result)))
        }
    }

    /// Flushes a file's data and metadata to the device.
    public static func fsync(_ fd: Int32, on loop: EventLoop, _ completion: @escaping (Result<Void, UVError>) -> Void) {
        run(on: loop, "uv_fs_fsync", { uv_fs_fsync(loop.uv, $0, fd, $1) }) { _, error in
            completion(error.map { .failure($0) } ?? .success(()))
        }
    }

    /// Closes a descriptor.
    public static func close(_ fd: Int32, on loop: EventLoop, _ completion: @escaping (Result<Void, UVError>) -> Void) {
        run(on: loop, "uv_fs_close", { uv_fs_close(loop.uv, $0, fd, $1) }) { _, error in
            completion(error.map { .failure($0) } ?? .success(()))
        }
    }

    /// The size and mode of `path`.
    public static func stat(
        _ path: String, on loop: EventLoop, _ completion: @escaping (Result<Status, UVError>) -> Void
    ) {
        run(on: loop, "uv_fs_stat \(path)", { uv_fs_stat(loop.uv, $0, path, $1) }) { request, error in
            completion(
                error.map { .failure($0) }
                    ?? .success(Status(size: request.pointee.statbuf.st_size, mode: request.pointee.statbuf.st_mode)))
        }
    }

    /// Starts a uv_fs request with its memory and completion; the completion runs on the loop,
    /// with the request (its result) and the error, if any.
    private static func run(
        on loop: EventLoop, _ operation: String,
        _ start: (UnsafeMutablePointer<uv_fs_t>, uv_fs_cb?) -> Int32,
        _ done: @escaping (UnsafeMutablePointer<uv_fs_t>, UVError?) -> Void
    ) {
        loop.preconditionOnLoopThread(operation)
        let request = Request<uv_fs_t>(operation, reading: done)
        let status = start(request.pointer) { request in
            // A uv_fs request's status is its result.
            Request<uv_fs_t>.finish(
                request, status: request.map { Int32(clamping: $0.pointee.result) } ?? 0,
                cleanUp: { uv_fs_req_cleanup($0) })
        }
        if status < 0 { request.fail(status, operation: operation, cleanUp: { uv_fs_req_cleanup($0) }) }
    }
}
