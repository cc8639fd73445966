import Glibc
import SpindleLoop

extension Callbacks {
    /// A UDP socket with one closure per send and per receive.
    public final class DatagramSocket {
        /// The underlying libuv socket.
        public let socket: UDPSocket
        private var receiving = OutstandingRead()
        private var receiveCompletion: (Result<(count: Int, from: SocketAddress), UVError>) throws -> Void = { _ in }
        private var pending = KeepAlive()

        /// Binds to `address` (port 0 picks one).
        public init(address: SocketAddress, reuseAddress: Bool = false, loop: EventLoop) throws(UVError) {
            socket = try UDPSocket(loop: loop, boundTo: address, reuseAddress: reuseAddress)
            socket.setReceiveHandler { [unowned self] result in self.received(result) }
        }

        /// The bound address.
        public var localAddress: SocketAddress { get throws(UVError) { try socket.localAddress } }

        /// Sends one datagram; `completion` gets nil or the error. When the kernel takes it at
        /// once, `completion` runs before `send` returns; otherwise `bytes` must stay valid until
        /// it runs.
        public func send(
            _ bytes: UnsafeRawBufferPointer, to address: SocketAddress,
            _ completion: @escaping (UVError?) throws -> Void
        ) {
            do {
                if try socket.trySend(bytes, to: address) {
                    Callbacks.deliver(completion, nil, "send")
                    return
                }
            } catch {
                Callbacks.deliver(completion, error, "send")
                return
            }
            pending.begin(self)
            socket.send(bytes, to: address) { [self] error in
                Callbacks.deliver(completion, error, "send")
                pending.end()
            }
        }

        /// Sends one datagram (the array is kept until the send completes).
        public func send(_ bytes: [UInt8], to address: SocketAddress, _ completion: @escaping (UVError?) throws -> Void)
        {
            bytes.withUnsafeBytes { raw in
                send(raw, to: address) { error in
                    withExtendedLifetime(bytes) {}
                    try completion(error)
                }
            }
        }

        /// Receives the next datagram into `buffer` (a longer one is cut to fit) and calls
        /// `completion` with its length and sender, or the error (`ECANCELED` when closed first).
        public func receive(
            into buffer: UnsafeMutableRawBufferPointer,
            _ completion: @escaping (Result<(count: Int, from: SocketAddress), UVError>) throws -> Void
        ) {
            socket.preconditionOnLoopThread("Callbacks.DatagramSocket.receive")
            precondition(!receiving.isOutstanding, "Callbacks.DatagramSocket.receive: a receive is already outstanding")
            if socket.isClosed {
                Callbacks.deliver(
                    completion, .failure(UVError(code: -ECANCELED, operation: "receive on a closed socket")), "receive")
                return
            }
            receiving.begin(owner: self)
            socket.receiveTarget = buffer
            receiveCompletion = completion
            do {
                try socket.startReceiving()
            } catch {
                received(.failure(error))
            }
        }

        private func received(_ result: Result<(Int, SocketAddress?), UVError>) {
            socket.receiveTarget = UnsafeMutableRawBufferPointer(start: nil, count: 0)
            socket.stopReceiving()
            guard receiving.isOutstanding else { return }
            let release = receiving.end()
            let completion = receiveCompletion
            receiveCompletion = { _ in }  // nothing captured stays alive past its read
            Callbacks.deliver(completion, result.map { (count: $0.0, from: $0.1!) }, "receive")
            release.perform()
        }

        /// Joins the multicast `group`.
        public func joinMulticast(_ group: String, interface: String? = nil) throws(UVError) {
            try socket.setMembership(group: group, interface: interface, join: true)
        }

        /// Closes the socket; an outstanding receive completes with `ECANCELED`.
        public func close() { socket.close() }

        deinit {
            if socket.loop.isOnLoopThread {
                socket.stopReceiving()
                socket.close()
            }
        }
    }
}
