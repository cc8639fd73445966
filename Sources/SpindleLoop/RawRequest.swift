import CLibUV

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
