import Glibc
import SpindleLoop
import Testing

@Suite("UVError")
struct UVErrorTests {
    @Test("names itself the way libuv does")
    func describesItself() {
        let refused = UVError.connectionRefused
        #expect(refused.name == "ECONNREFUSED")
        #expect(refused.message == "connection refused")
        #expect(refused.description == "ECONNREFUSED: connection refused")
    }

    @Test("says which call failed when it knows")
    func namesTheOperation() {
        let inUse = UVError(code: UVError.addressInUse.code, operation: "uv_tcp_bind")
        #expect(inUse.description == "uv_tcp_bind: EADDRINUSE: address already in use")
    }

    @Test("equality is by code")
    func equality() {
        #expect(UVError.endOfFile == UVError(code: UVError.endOfFile.code, operation: "uv_read_start"))
        #expect(UVError.endOfFile != UVError.cancelled)
    }

    @Test("named codes carry libuv's names, and match a thrown error whatever its operation")
    func namedCodes() {
        let named: [(UVError, String)] = [
            (.endOfFile, "EOF"), (.cancelled, "ECANCELED"), (.connectionRefused, "ECONNREFUSED"),
            (.connectionReset, "ECONNRESET"), (.connectionAborted, "ECONNABORTED"), (.notConnected, "ENOTCONN"),
            (.brokenPipe, "EPIPE"), (.timedOut, "ETIMEDOUT"), (.addressInUse, "EADDRINUSE"),
            (.addressNotAvailable, "EADDRNOTAVAIL"), (.hostUnreachable, "EHOSTUNREACH"),
            (.networkUnreachable, "ENETUNREACH"), (.unknownHost, "EAI_NONAME"), (.noSuchFile, "ENOENT"),
            (.fileExists, "EEXIST"), (.permissionDenied, "EACCES"), (.invalidArgument, "EINVAL"),
            (.tryAgain, "EAGAIN"), (.badFileDescriptor, "EBADF"), (.tooManyOpenFiles, "EMFILE"),
            (.noSpace, "ENOSPC"), (.busy, "EBUSY"), (.messageTooLong, "EMSGSIZE"),
        ]
        for (error, name) in named { #expect(error.name == name) }
        #expect(Set(named.map(\.0.code)).count == named.count)
        let thrown: any Error = UVError(code: UVError.connectionRefused.code, operation: "uv_tcp_connect")
        if let error = thrown as? UVError {
            #expect(error == .connectionRefused)
            #expect(error != .connectionReset)
        } else {
            Issue.record("not a UVError")
        }
    }
}
