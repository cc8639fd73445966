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
        final class Pending {
            let completion: (Result<[SocketAddress], UVError>) -> Void
            let port: Int
            init(_ completion: @escaping (Result<[SocketAddress], UVError>) -> Void, port: Int) {
                self.completion = completion
                self.port = port
            }
        }
        guard let memory = calloc(1, MemoryLayout<uv_getaddrinfo_t>.size) else { fatalError("out of memory") }
        let request = memory.bindMemory(to: uv_getaddrinfo_t.self, capacity: 1)
        request.pointee.data = Unmanaged.passRetained(Pending(completion, port: port)).toOpaque()
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        let status = uv_getaddrinfo(
            loop.uv, request,
            { request, status, info in
                guard let request else { return }
                let pending = Unmanaged<Pending>.fromOpaque(request.pointee.data!).takeRetainedValue()
                free(request)
                defer { uv_freeaddrinfo(info) }
                if status < 0 {
                    pending.completion(.failure(UVError(code: status, operation: "uv_getaddrinfo")))
                    return
                }
                var addresses: [SocketAddress] = []
                var cursor = info
                while let entry = cursor {
                    if let address = entry.pointee.ai_addr {
                        var found = SocketAddress(address)
                        found.setPort(pending.port)
                        if !addresses.contains(found) { addresses.append(found) }
                    }
                    cursor = entry.pointee.ai_next
                }
                pending.completion(.success(addresses))
            }, host, nil, &hints)
        if status < 0 {
            let pending = Unmanaged<Pending>.fromOpaque(request.pointee.data!).takeRetainedValue()
            free(request)
            pending.completion(.failure(UVError(code: status, operation: "uv_getaddrinfo \(host)")))
        }
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
