import Glibc
import SpindleFutures
import SpindleTestSupport
import Testing

// The examples of the SpindleFutures and SpindleCallbacks documentation pages
// (Sources/*/Docs.docc), run as written; the callback server listens on port 0 here instead of
// 7007 and gets one client.
@Suite("Documentation examples")
struct DocExampleTests {
    @Test("SpindleFutures: a recursive flatMap loop of ten timer steps")
    func futuresExample() throws {
        let log = Box<[String]>([])
        try withLoop { loop in
            func step(_ remaining: Int) -> Future<Void> {
                remaining == 0
                    ? loop.makeSucceededFuture(())
                    : loop.scheduleFuture(after: .milliseconds(1)).flatMap { step(remaining - 1) }
            }
            step(10).whenSuccess { log.value.append("ten steps later") }
        }
        #expect(log.value == ["ten steps later"])
    }

    @Test("SpindleCallbacks: a listener that echoes one message per connection")
    func callbacksExample() throws {
        let echoed = Box<[UInt8]>([])
        try withLoop { loop in
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 1)
            let listener = try Callbacks.TCPListener(address: SocketAddress(ip: "127.0.0.1", port: 0), loop: loop) {
                result in
                let connection = try result.get()
                connection.read(into: buffer) { result in
                    let count = try result.get()
                    connection.write(UnsafeRawBufferPointer(rebasing: buffer[..<count])) { error in
                        if let error { throw error }
                        connection.close()
                    }
                }
            }
            let message: [UInt8] = Array("ping".utf8)
            let reply = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 1)
            Callbacks.TCPConnection.connect(to: try listener.localAddress, loop: loop) { result in
                let client = try result.get()
                client.write(message) { error in if let error { throw error } }
                client.read(into: reply) { result in
                    echoed.value = Array(reply[..<(try result.get())])
                    client.close()
                    listener.close()
                    buffer.deallocate()
                    reply.deallocate()
                }
            }
        }
        #expect(echoed.value == Array("ping".utf8))
    }
}
