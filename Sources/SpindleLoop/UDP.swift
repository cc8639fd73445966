import CLibUV
import Glibc

/// A UDP socket on the loop: bind, send datagrams, receive them with their sender, join
/// multicast groups. Wraps uv_udp_t.
public final class UDPSocket: LoopHandle {
    @exclusivity(unchecked) private var onReceive: ((Result<(Int, SocketAddress?), UVError>) -> Void)?
    /// Where the next datagram goes: the waiting receiver's buffer (empty: nobody receives).
    @exclusivity(unchecked) public var receiveTarget = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    /// Whether receiving is started.
    @exclusivity(unchecked) public private(set) var isReceiving = false

    /// Creates an unbound socket. Wraps uv_udp_init.
    public init(loop: EventLoop) {
        super.init(loop: loop, type: UV_UDP)
        UVError.mustSucceed(uv_udp_init(loop.uv, udp), "uv_udp_init")
        didInitialize()
    }

    /// Creates a socket bound to `address` (see ``bind(_:reuseAddress:)``); on failure the
    /// handle is closed and the error thrown.
    public convenience init(loop: EventLoop, boundTo address: SocketAddress, reuseAddress: Bool = false) throws(UVError)
    {
        self.init(loop: loop)
        do {
            try bind(address, reuseAddress: reuseAddress)
        } catch {
            close()
            throw error
        }
    }

    var udp: UnsafeMutablePointer<uv_udp_t> { UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_udp_t.self) }

    public override var handleDescription: String {
        var text = "UDP socket"
        if let local = try? localAddress { text += " \(local)" }
        return text
    }

    /// Binds to `address`; `reuseAddress` lets several sockets bind the same multicast port.
    /// Wraps uv_udp_bind.
    public func bind(_ address: SocketAddress, reuseAddress: Bool = false) throws(UVError) {
        preconditionOnLoopThread("UDPSocket.bind")
        let flags = reuseAddress ? UInt32(UV_UDP_REUSEADDR.rawValue) : 0
        let status = address.withSockaddr { uv_udp_bind(udp, $0, flags) }
        try UVError.check(status, "uv_udp_bind \(address)")
    }

    /// Sends one datagram to `address`; the bytes must stay valid until `completion` runs.
    /// Wraps uv_udp_send.
    public func send(
        _ bytes: UnsafeRawBufferPointer, to address: SocketAddress, _ completion: @escaping (UVError?) -> Void
    ) {
        preconditionOnLoopThread("UDPSocket.send")
        let request = Request<uv_udp_send_t>("uv_udp_send", completion)
        var buffer = uv_buf_init(
            UnsafeMutablePointer(mutating: bytes.baseAddress?.assumingMemoryBound(to: CChar.self)), UInt32(bytes.count))
        let status = address.withSockaddr {
            uv_udp_send(request.pointer, udp, &buffer, 1, $0) { req, status in
                Request<uv_udp_send_t>.finish(req, status: status)
            }
        }
        if status < 0 { request.fail(status, operation: "uv_udp_send to \(address)") }
    }

    /// Sends one datagram now if the kernel takes it; returns false when it would block (or
    /// earlier sends are still queued). Wraps uv_udp_try_send.
    public func trySend(_ bytes: UnsafeRawBufferPointer, to address: SocketAddress) throws(UVError) -> Bool {
        preconditionOnLoopThread("UDPSocket.trySend")
        var buffer = uv_buf_init(
            UnsafeMutablePointer(mutating: bytes.baseAddress?.assumingMemoryBound(to: CChar.self)), UInt32(bytes.count))
        let status = address.withSockaddr { uv_udp_try_send(udp, &buffer, 1, $0) }
        if status == UV_EAGAIN.rawValue { return false }
        try UVError.check(status, "uv_udp_try_send to \(address)")
        return true
    }

    /// Sets who hears about datagrams: `onReceive` gets the byte count and the sender, or the
    /// error. Datagrams go into ``receiveTarget``.
    public func setReceiveHandler(_ onReceive: @escaping (Result<(Int, SocketAddress?), UVError>) -> Void) {
        self.onReceive = onReceive
    }

    /// Starts receiving (the handler must be set). Wraps uv_udp_recv_start.
    public func startReceiving() throws(UVError) {
        preconditionOnLoopThread("UDPSocket.startReceiving")
        precondition(onReceive != nil, "UDPSocket.startReceiving() before setReceiveHandler")
        if isReceiving { return }
        let status = uv_udp_recv_start(
            udp,
            { handle, _, buf in
                guard let data = handle?.pointee.data, let buf else { return }
                let socket = LoopHandle.object(data, as: UDPSocket.self)
                let target = socket.receiveTarget
                buf.pointee = uv_buf_init(target.baseAddress?.assumingMemoryBound(to: CChar.self), UInt32(target.count))
            },
            { handle, nread, _, address, _ in
                guard let data = handle?.pointee.data else { return }
                let socket = LoopHandle.object(data, as: UDPSocket.self)
                if nread < 0 {
                    socket.onReceive?(.failure(UVError(code: Int32(nread), operation: "uv_udp_recv")))
                } else if let address {
                    socket.onReceive?(.success((nread, SocketAddress(address))))
                }
                // nread == 0 with no address: nothing to read this time.
            })
        try UVError.check(status, "uv_udp_recv_start")
        isReceiving = true
        retainWhileActive()
    }

    /// Stops receiving. Wraps uv_udp_recv_stop.
    public func stopReceiving() {
        guard isReceiving else { return }
        isReceiving = false
        uv_udp_recv_stop(udp)
        releaseActiveRetain()
    }

    /// Joins (or leaves) the multicast `group` on the interface with address `interface`
    /// (nil: the system's choice). Wraps uv_udp_set_membership.
    public func setMembership(group: String, interface: String? = nil, join: Bool = true) throws(UVError) {
        let status = uv_udp_set_membership(udp, group, interface, join ? UV_JOIN_GROUP : UV_LEAVE_GROUP)
        try UVError.check(status, "uv_udp_set_membership \(group)")
    }

    /// Sends this socket's multicast datagrams out of the interface with address `interface`
    /// (for example `127.0.0.1` to keep a feed on the host). Wraps uv_udp_set_multicast_interface.
    public func setMulticastInterface(_ interface: String) throws(UVError) {
        try UVError.check(uv_udp_set_multicast_interface(udp, interface), "uv_udp_set_multicast_interface \(interface)")
    }

    /// Sets whether multicast datagrams sent by this socket loop back to the host.
    /// Wraps uv_udp_set_multicast_loop.
    public func setMulticastLoopback(_ enabled: Bool) throws(UVError) {
        try UVError.check(uv_udp_set_multicast_loop(udp, enabled ? 1 : 0), "uv_udp_set_multicast_loop")
    }

    /// The bound address. Wraps uv_udp_getsockname.
    public var localAddress: SocketAddress {
        get throws(UVError) {
            var storage = sockaddr_storage()
            var length = Int32(MemoryLayout<sockaddr_storage>.size)
            let status = withUnsafeMutableBytes(of: &storage) {
                uv_udp_getsockname(udp, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length)
            }
            try UVError.check(status, "uv_udp_getsockname")
            return SocketAddress(storage: storage)
        }
    }

    /// Closes the socket; a pending receive hears `ECANCELED`.
    public override func close() {
        if isClosed { return }
        let receiver = isReceiving ? onReceive : nil
        isReceiving = false
        onReceive = nil
        receiveTarget = UnsafeMutableRawBufferPointer(start: nil, count: 0)
        super.close()
        receiver?(.failure(UVError(code: UV_ECANCELED.rawValue, operation: "uv_udp_recv")))
    }
}
