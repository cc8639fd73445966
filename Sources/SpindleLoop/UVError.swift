import CLibUV

/// An error reported by libuv, carrying its symbolic name and message.
///
/// Its description reads the way libuv names the error: `ECONNREFUSED: connection refused`.
/// When Spindle knows which call failed, the description says so as well:
/// `uv_tcp_connect: ECONNREFUSED: connection refused`.
public struct UVError: Error, Equatable, Hashable, CustomStringConvertible, Sendable {
    /// The negative libuv error code (for example `UV_ECONNREFUSED`).
    public let code: Int32
    /// The libuv function that failed, when known (for example `"uv_tcp_connect"`).
    public let operation: String?

    /// Wraps a negative libuv status code.
    public init(code: Int32, operation: String? = nil) {
        self.code = code
        self.operation = operation
    }

    /// The libuv error name, such as `ECONNREFUSED`. Wraps uv_err_name_r.
    public var name: String {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buffer in
            String(cString: uv_err_name_r(code, buffer.baseAddress, buffer.count))
        }
    }

    /// The libuv error message, such as `connection refused`. Wraps uv_strerror_r.
    public var message: String {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 256) { buffer in
            String(cString: uv_strerror_r(code, buffer.baseAddress, buffer.count))
        }
    }

    public var description: String {
        if let operation { return "\(operation): \(name): \(message)" }
        return "\(name): \(message)"
    }

    public static func == (lhs: UVError, rhs: UVError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}

extension UVError {
    /// Turns a libuv status into a thrown error when it is negative.
    @inline(__always)
    @usableFromInline
    static func check(_ status: Int32, _ operation: @autoclosure () -> String) throws(UVError) {
        if status < 0 { throw UVError(code: status, operation: operation()) }
    }

    /// Crashes with the libuv error named when a call that cannot fail in correct use fails.
    @inline(__always)
    package static func mustSucceed(_ status: Int32, _ operation: StaticString) {
        if status < 0 {
            fatalError("\(operation) failed: \(UVError(code: status))")
        }
    }
}
