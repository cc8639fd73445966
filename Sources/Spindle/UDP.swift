import CSpindleSupport
import Glibc
import SpindleLoop

/// A UDP socket for fibers: ``receive(into:)-(UnsafeMutableRawBufferPointer)`` parks the fiber
/// until a datagram arrives and says who sent it; ``send(_:to:)-(UnsafeRawBufferPointer,_)``
/// parks until the kernel has it.
public final class DatagramSocket {
    /// The underlying libuv socket.
    public let socket: UDPSocket
    private let pending = Pending<(Int, SocketAddress?)>()

    /// Binds a socket to `address` (port 0 picks one) on the running fiber's loop, or `loop`.
    public init(address: SocketAddress, reuseAddress: Bool = false, loop: EventLoop? = nil) throws {
        let loop = loop ?? Scheduler.of(Fiber.runningFiber("DatagramSocket.init").pointee.sched).loop
        socket = try UDPSocket(loop: loop, boundTo: address, reuseAddress: reuseAddress)
        // Holds the pending receive, not this object (see StreamConnection.init).
        socket.setReceiveHandler { [unowned(unsafe) socket = self.socket, pending = self.pending] result in
            socket.receiveTarget = UnsafeMutableRawBufferPointer(start: nil, count: 0)
            socket.stopReceiving()
            pending.finish(result)
        }
    }

    /// The bound address.
    public var localAddress: SocketAddress { get throws { try socket.localAddress } }

    /// Sends one datagram. When the kernel takes it at once (the usual case) nothing parks or
    /// allocates; otherwise the fiber waits, with the send request on its own stack.
    public func send(_ bytes: UnsafeRawBufferPointer, to address: SocketAddress) throws {
        if try socket.trySend(bytes, to: address) { return }
        try Fiber.awaitRequest("uv_udp_send to \(address)") { completion, inFlight in
            socket.send(bytes, to: address, completion: completion, inFlight: inFlight)
        }
    }

    /// Sends one datagram.
    public func send(_ bytes: [UInt8], to address: SocketAddress) throws {
        try bytes.withUnsafeBytes { try send($0, to: address) }
    }

    /// Waits for the next datagram, copies it into `buffer` (the excess of a longer one is
    /// dropped, as the kernel does) and returns its length and sender.
    public func receive(into buffer: UnsafeMutableRawBufferPointer) throws -> (count: Int, from: SocketAddress) {
        let (count, sender) = try pending.wait(
            "DatagramSocket.receive(into:)", closed: socket.isClosed,
            start: {
                socket.receiveTarget = buffer
                try socket.startReceiving()
            },
            stop: {
                socket.receiveTarget = UnsafeMutableRawBufferPointer(start: nil, count: 0)
                socket.stopReceiving()
            })
        return (count, sender.unsafelyUnwrapped)
    }

    /// Waits for the next datagram into an array's storage.
    public func receive(into bytes: inout [UInt8]) throws -> (count: Int, from: SocketAddress) {
        try bytes.withUnsafeMutableBytes { try receive(into: $0) }
    }

    /// Joins the multicast `group` (for example `239.1.2.3`).
    public func joinMulticast(_ group: String, interface: String? = nil) throws {
        try socket.setMembership(group: group, interface: interface, join: true)
    }

    /// Leaves the multicast `group`.
    public func leaveMulticast(_ group: String, interface: String? = nil) throws {
        try socket.setMembership(group: group, interface: interface, join: false)
    }

    /// Sends multicast datagrams out of the interface with address `interface`, looping them
    /// back to this host's own members when `loopback` is true (the default, as in the kernel).
    public func setMulticastSending(interface: String, loopback: Bool = true) throws {
        try socket.setMulticastInterface(interface)
        try socket.setMulticastLoopback(loopback)
    }

    /// Closes the socket; a fiber receiving on it gets `ECANCELED`.
    public func close() { socket.close() }

    deinit {
        if socket.loop.isOnLoopThread {
            socket.stopReceiving()
            socket.close()
        }
    }
}
