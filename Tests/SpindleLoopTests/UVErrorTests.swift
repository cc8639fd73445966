import CLibUV
import SpindleLoop
import Testing

@Suite("UVError")
struct UVErrorTests {
    @Test("names itself the way libuv does")
    func describesItself() {
        let refused = UVError(code: UV_ECONNREFUSED.rawValue)
        #expect(refused.name == "ECONNREFUSED")
        #expect(refused.message == "connection refused")
        #expect(refused.description == "ECONNREFUSED: connection refused")
    }

    @Test("says which call failed when it knows")
    func namesTheOperation() {
        let inUse = UVError(code: UV_EADDRINUSE.rawValue, operation: "uv_tcp_bind")
        #expect(inUse.description == "uv_tcp_bind: EADDRINUSE: address already in use")
    }

    @Test("equality is by code")
    func equality() {
        #expect(UVError(code: UV_EOF.rawValue) == UVError(code: UV_EOF.rawValue, operation: "uv_read_start"))
        #expect(UVError(code: UV_EOF.rawValue) != UVError(code: UV_ECANCELED.rawValue))
    }
}
