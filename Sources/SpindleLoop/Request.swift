import CLibUV
import Glibc

// A libuv request, in one of two forms:
// - `Request<R>`: on the heap, with a retained completion. The closure-taking operations of
//   this module (connect, write, shutdown, send, the file system, the resolver) use it.
// - `RawCompletion`: a context and a C callback for a request that this module keeps in its own
//   frame on the caller's stack. The fiber layer uses it, so that a write or a send that has to
//   wait allocates nothing.

/// A libuv request on the heap (`uv_connect_t`, `uv_write_t`, `uv_shutdown_t`, `uv_udp_send_t`,
/// `uv_fs_t`, `uv_getaddrinfo_t`) with its completion: the memory is calloc'ed, `data` holds the
/// retained completion, and both go once the completion has run. The completion gets the
/// request, to read what libuv left in it, and the error, if there was one.
struct Request<R> {
    let pointer: UnsafeMutablePointer<R>

    final class Completion {
        /// What to call: kept at the caller's own type, so that no closure wraps another.
        enum Body {
            case outcome((UVError?) -> Void)
            case reading((UnsafeMutablePointer<R>, UVError?) -> Void)
        }
        let body: Body
        /// How an error names the call (`uv_tcp_connect`, `uv_fs_open /tmp/x`).
        let operation: String

        init(_ operation: String, _ body: Body) {
            self.operation = operation
            self.body = body
        }

        func run(_ request: UnsafeMutablePointer<R>, _ error: UVError?) {
            switch body {
            case .outcome(let completion): completion(error)
            case .reading(let completion): completion(request, error)
            }
        }
    }

    private init(_ operation: String, body: Completion.Body) {
        guard let memory = calloc(1, MemoryLayout<R>.size) else {
            fatalError("out of memory allocating a libuv request")
        }
        pointer = memory.bindMemory(to: R.self, capacity: 1)
        UnsafeMutableRawPointer(pointer).assumingMemoryBound(to: uv_req_t.self).pointee.data =
            Unmanaged.passRetained(Completion(operation, body)).toOpaque()
    }

    /// A request whose outcome is an error or nothing.
    init(_ operation: String, _ completion: @escaping (UVError?) -> Void) {
        self.init(operation, body: .outcome(completion))
    }

    /// A request whose completion reads it (the file system's result, the resolver's
    /// addresses).
    init(_ operation: String, reading completion: @escaping (UnsafeMutablePointer<R>, UVError?) -> Void) {
        self.init(operation, body: .reading(completion))
    }

    /// libuv finished the request with `status`: runs the completion, then `cleanUp` (what
    /// libuv itself allocated for the request), then frees the request.
    static func finish(
        _ raw: UnsafeMutablePointer<R>?, status: Int32, cleanUp: (UnsafeMutablePointer<R>) -> Void = { _ in }
    ) {
        guard let raw else { return }
        let completion = takeCompletion(raw)
        completion.run(raw, status < 0 ? UVError(code: status, operation: completion.operation) : nil)
        cleanUp(raw)
        free(raw)
    }

    /// The request could not start: reports `status` through the completion, naming the call
    /// as `operation`, then cleans up and frees the request as ``finish(_:status:cleanUp:)``.
    func fail(_ status: Int32, operation: String, cleanUp: (UnsafeMutablePointer<R>) -> Void = { _ in }) {
        Self.takeCompletion(pointer).run(pointer, UVError(code: status, operation: operation))
        cleanUp(pointer)
        free(pointer)
    }

    private static func takeCompletion(_ raw: UnsafeMutablePointer<R>) -> Completion {
        let data = UnsafeMutableRawPointer(raw).assumingMemoryBound(to: uv_req_t.self).pointee.data
        return Unmanaged<Completion>.fromOpaque(data.unsafelyUnwrapped).takeRetainedValue()
    }
}

/// Where a libuv request that a layer above issues with memory of its own reports: `callback`
/// is called with the request once libuv is done, and ``context(of:)`` reads `context` back
/// from it. The fiber layer keeps the request in the waiting fiber's stack frame and the
/// context points at its waiter, so a write or send that has to wait allocates nothing.
@usableFromInline package struct RawCompletion {
    /// The C function a finished request calls, with the request and libuv's status.
    @usableFromInline package typealias Callback =
        @convention(c) (_ request: UnsafeMutableRawPointer?, _ status: Int32) -> Void

    @usableFromInline package let context: UnsafeMutableRawPointer
    @usableFromInline package let callback: Callback

    @inlinable package init(context: UnsafeMutableRawPointer, callback: Callback) {
        self.context = context
        self.callback = callback
    }

    /// The `context` of the completion the request was issued with.
    @inlinable package static func context(of request: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer {
        request.unsafelyUnwrapped.assumingMemoryBound(to: uv_req_t.self).pointee.data.unsafelyUnwrapped
    }
}

/// Runs `issue` with a request of type `R` in this frame whose `data` is the completion's
/// context, then `inFlight` with the status `issue` returned (see
/// ``StreamSocket/write(_:completion:inFlight:)``).
@inline(__always)
private func issueInThisFrame<R>(
    _ empty: R, _ completion: RawCompletion, _ issue: (UnsafeMutablePointer<R>) -> Int32,
    inFlight: (_ started: Int32) -> Int32
) -> Int32 {
    var request = empty
    return withUnsafeMutablePointer(to: &request) { request in
        UnsafeMutableRawPointer(request).assumingMemoryBound(to: uv_req_t.self).pointee.data = completion.context
        return inFlight(issue(request))
    }
}

/// libuv's buffer descriptor of `bytes` (which libuv only reads).
@inline(__always)
private func uvBuffer(_ bytes: UnsafeRawBufferPointer) -> uv_buf_t {
    uv_buf_init(
        UnsafeMutablePointer(mutating: bytes.baseAddress?.assumingMemoryBound(to: CChar.self)), UInt32(bytes.count))
}

extension StreamSocket {
    /// Issues a write whose request lives in this call's frame, then calls `inFlight` with
    /// uv_write's status and returns what it returns. When the status is 0, `completion` runs
    /// once libuv is done, and `inFlight` must not return before that (a fiber parks in it);
    /// when it is negative the completion never runs.
    package final func write(
        _ bytes: UnsafeRawBufferPointer, completion: RawCompletion, inFlight: (_ started: Int32) -> Int32
    ) -> Int32 {
        var buffer = uvBuffer(bytes)
        let callback = unsafeBitCast(completion.callback, to: uv_write_cb.self)
        return issueInThisFrame(
            uv_write_t(), completion, { uv_write($0, stream, &buffer, 1, callback) }, inFlight: inFlight)
    }
}

extension UDPSocket {
    /// Issues a send whose request lives in this call's frame, then calls `inFlight` with
    /// uv_udp_send's status and returns what it returns; the contract of
    /// ``StreamSocket/write(_:completion:inFlight:)``.
    package func send(
        _ bytes: UnsafeRawBufferPointer, to address: SocketAddress, completion: RawCompletion,
        inFlight: (_ started: Int32) -> Int32
    ) -> Int32 {
        var buffer = uvBuffer(bytes)
        let callback = unsafeBitCast(completion.callback, to: uv_udp_send_cb.self)
        return issueInThisFrame(
            uv_udp_send_t(), completion,
            { request in
                address.withSockaddr { uv_udp_send(request, udp, &buffer, 1, $0, callback) }
            }, inFlight: inFlight)
    }
}
