import CLibUV
import Glibc

/// Host name resolution on libuv's thread pool. Wraps uv_getaddrinfo.
public enum Resolver {
    /// Resolves `host` (a name such as `localhost`, or a numeric address) for TCP and calls
    /// `completion` on the loop's thread with the addresses found (with `port`) or the error,
    /// such as `EAI_NONAME: unknown node or service`.
    public static func resolve(
        _ host: String, port: Int, on loop: EventLoop,
        _ completion: @escaping (Result<[SocketAddress], UVError>) -> Void
    ) {
        loop.preconditionOnLoopThread("Resolver.resolve")
        let request = Request<uv_getaddrinfo_t>(
            "uv_getaddrinfo",
            reading: { request, error in
                if let error { return completion(.failure(error)) }
                var addresses: [SocketAddress] = []
                var cursor = request.pointee.addrinfo
                while let entry = cursor {
                    if let address = entry.pointee.ai_addr {
                        var found = SocketAddress(address)
                        found.setPort(port)
                        if !addresses.contains(found) { addresses.append(found) }
                    }
                    cursor = entry.pointee.ai_next
                }
                completion(.success(addresses))
            })
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        let status = uv_getaddrinfo(
            loop.uv, request.pointer,
            { request, status, _ in
                // The addresses libuv found are the request's to free, once they are read.
                Request<uv_getaddrinfo_t>.finish(
                    request, status: status, cleanUp: { uv_freeaddrinfo($0.pointee.addrinfo) })
            },
            host, nil, &hints)
        if status < 0 { request.fail(status, operation: "uv_getaddrinfo \(host)") }
    }
}

extension SocketAddress {
    /// Replaces the port.
    mutating func setPort(_ port: Int) {
        withUnsafeMutableBytes(of: &storage) { raw in
            raw.storeBytes(of: UInt16(port).bigEndian, toByteOffset: 2, as: UInt16.self)
        }
    }
}
