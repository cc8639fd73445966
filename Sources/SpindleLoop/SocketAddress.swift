import CLibUV
import Glibc

/// An IPv4 or IPv6 address and port. Wraps `struct sockaddr_storage`.
public struct SocketAddress: CustomStringConvertible, Sendable, Equatable {
    @usableFromInline var storage = sockaddr_storage()

    /// Parses a numeric IPv4 (`127.0.0.1`) or IPv6 (`::1`) address. Throws `EINVAL` for
    /// anything else (host names go through ``Resolver``). Wraps uv_ip4_addr / uv_ip6_addr.
    public init(ip: String, port: Int) throws(UVError) {
        guard (0...65535).contains(port) else { throw UVError(code: UV_EINVAL.rawValue, operation: "port \(port)") }
        let status: Int32 = withUnsafeMutableBytes(of: &storage) { raw in
            if ip.contains(":") {
                return uv_ip6_addr(ip, Int32(port), raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self))
            }
            return uv_ip4_addr(ip, Int32(port), raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self))
        }
        try UVError.check(status, "parsing the address \"\(ip)\"")
    }

    /// Copies a `sockaddr` that libuv or the system filled in.
    init(_ address: UnsafePointer<sockaddr>) {
        let length =
            address.pointee.sa_family == sa_family_t(AF_INET6)
            ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size
        withUnsafeMutableBytes(of: &storage) {
            $0.copyMemory(from: UnsafeRawBufferPointer(start: address, count: length))
        }
    }

    init(storage: sockaddr_storage) { self.storage = storage }

    /// Whether this is an IPv6 address.
    public var isIPv6: Bool { storage.ss_family == sa_family_t(AF_INET6) }

    /// The port number.
    public var port: Int {
        withUnsafeBytes(of: storage) { raw in
            // sin_port and sin6_port sit at the same offset, in network byte order.
            Int(UInt16(bigEndian: raw.load(fromByteOffset: 2, as: UInt16.self)))
        }
    }

    /// The numeric address without the port. Wraps uv_ip4_name / uv_ip6_name.
    public var ip: String {
        var buffer = [CChar](repeating: 0, count: 64)
        withUnsafeBytes(of: storage) { raw in
            if isIPv6 {
                _ = uv_ip6_name(raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self), &buffer, buffer.count)
            } else {
                _ = uv_ip4_name(raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self), &buffer, buffer.count)
            }
        }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// `127.0.0.1:8080` or `[::1]:8080`.
    public var description: String { isIPv6 ? "[\(ip)]:\(port)" : "\(ip):\(port)" }

    public static func == (lhs: SocketAddress, rhs: SocketAddress) -> Bool {
        lhs.isIPv6 == rhs.isIPv6 && lhs.port == rhs.port && lhs.ip == rhs.ip
    }

    /// Calls `body` with the address as a `sockaddr` pointer.
    func withSockaddr<T>(_ body: (UnsafePointer<sockaddr>) throws -> T) rethrows -> T {
        try withUnsafeBytes(of: storage) { try body($0.baseAddress!.assumingMemoryBound(to: sockaddr.self)) }
    }
}
