import CLibUV

// MARK: Named codes

/// The libuv errors a program most often tests for, by name, so that neither tests nor users
/// import CLibUV to compare codes (as swift-system's `Errno` names errno values). Equality
/// compares the code alone, so the operation a thrown error carries does not matter:
///
/// ```swift
/// do {
///     _ = try TCPConnection.connect(to: address)
/// } catch let error as UVError where error == .connectionRefused {
///     // nobody listens there
/// }
/// ```
extension UVError {
    /// `UV_EOF`: end of file or stream.
    public static let endOfFile = UVError(code: UV_EOF.rawValue)
    /// `UV_ECANCELED`: the operation was cancelled (its handle closed, say).
    public static let cancelled = UVError(code: UV_ECANCELED.rawValue)
    /// `UV_ECONNREFUSED`: nothing listens at the address.
    public static let connectionRefused = UVError(code: UV_ECONNREFUSED.rawValue)
    /// `UV_ECONNRESET`: the peer reset the connection.
    public static let connectionReset = UVError(code: UV_ECONNRESET.rawValue)
    /// `UV_ECONNABORTED`: the connection was aborted.
    public static let connectionAborted = UVError(code: UV_ECONNABORTED.rawValue)
    /// `UV_ENOTCONN`: the socket is not connected.
    public static let notConnected = UVError(code: UV_ENOTCONN.rawValue)
    /// `UV_EPIPE`: a write to a peer that has gone.
    public static let brokenPipe = UVError(code: UV_EPIPE.rawValue)
    /// `UV_ETIMEDOUT`: the operation timed out.
    public static let timedOut = UVError(code: UV_ETIMEDOUT.rawValue)
    /// `UV_EADDRINUSE`: the address is already in use.
    public static let addressInUse = UVError(code: UV_EADDRINUSE.rawValue)
    /// `UV_EADDRNOTAVAIL`: the address is not available on this host.
    public static let addressNotAvailable = UVError(code: UV_EADDRNOTAVAIL.rawValue)
    /// `UV_EHOSTUNREACH`: no route to the host.
    public static let hostUnreachable = UVError(code: UV_EHOSTUNREACH.rawValue)
    /// `UV_ENETUNREACH`: the network is unreachable.
    public static let networkUnreachable = UVError(code: UV_ENETUNREACH.rawValue)
    /// `UV_EAI_NONAME`: the host name is unknown.
    public static let unknownHost = UVError(code: UV_EAI_NONAME.rawValue)
    /// `UV_ENOENT`: no such file or directory.
    public static let noSuchFile = UVError(code: UV_ENOENT.rawValue)
    /// `UV_EEXIST`: the file already exists.
    public static let fileExists = UVError(code: UV_EEXIST.rawValue)
    /// `UV_EACCES`: permission denied.
    public static let permissionDenied = UVError(code: UV_EACCES.rawValue)
    /// `UV_EINVAL`: an invalid argument.
    public static let invalidArgument = UVError(code: UV_EINVAL.rawValue)
    /// `UV_EAGAIN`: the resource is temporarily unavailable (try again).
    public static let tryAgain = UVError(code: UV_EAGAIN.rawValue)
    /// `UV_EBADF`: a bad file descriptor.
    public static let badFileDescriptor = UVError(code: UV_EBADF.rawValue)
    /// `UV_EMFILE`: the process has too many open files.
    public static let tooManyOpenFiles = UVError(code: UV_EMFILE.rawValue)
    /// `UV_ENOSPC`: no space left on the device.
    public static let noSpace = UVError(code: UV_ENOSPC.rawValue)
    /// `UV_EBUSY`: the resource is busy.
    public static let busy = UVError(code: UV_EBUSY.rawValue)
    /// `UV_EMSGSIZE`: the message is too long.
    public static let messageTooLong = UVError(code: UV_EMSGSIZE.rawValue)
}
