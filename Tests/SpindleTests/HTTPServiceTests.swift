import Foundation
import Glibc
import Testing

/// Runs the `spindle-http` executable as a real process and drives it with curl and raw sockets.
@Suite("spindle-http service")
struct HTTPServiceTests {
    /// Runs curl and returns its standard output and error together.
    static func curl(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let child = try ServiceProcess("/usr/bin/curl", arguments)
        let output = ServiceProcess.readAll(child.stdoutFD) + ServiceProcess.readAll(child.stderrFD)
        return (child.wait(), output)
    }

    @Test("answers GET / with 200, other paths with 404, on one kept-alive connection")
    func keepAlive() throws {
        let (server, port) = try ServiceProcess.start("spindle-http")
        let base = "http://127.0.0.1:\(port)"
        let result = try Self.curl(["-sv", "\(base)/", "\(base)/missing"])
        #expect(result.status == 0)
        #expect(result.output.contains("< HTTP/1.1 200 OK"))
        #expect(result.output.contains("Hello from Spindle fibers"))
        #expect(result.output.contains("< HTTP/1.1 404 Not Found"))
        #expect(result.output.contains("Re-using existing connection"))
        kill(server.pid, SIGTERM)
        #expect(server.wait() == 0)
    }

    @Test("with --loops 2, curl's connections land on both loops", arguments: [[], ["--acceptor"]])
    func twoLoops(_ spreading: [String]) throws {
        let (server, port) = try ServiceProcess.start("spindle-http", ["--loops", "2"] + spreading)
        // Each curl run is a new connection (a new source port, so a new reuseport hash).
        for _ in 0..<24 {
            let result = try Self.curl(["-s", "http://127.0.0.1:\(port)/"])
            #expect(result.status == 0)
            #expect(result.output == "Hello from Spindle fibers\n")
        }
        kill(server.pid, SIGTERM)
        #expect(server.wait() == 0)
        let rest = ServiceProcess.readAll(server.stdoutFD)
        let perLoop = EchoServiceTests.connectionsPerLoop(rest)
        #expect(perLoop.count == 2 && perLoop.reduce(0, +) == 24)
        #expect(perLoop.allSatisfy { $0 > 0 }, "\(rest)")
    }

    @Test("a malformed request gets 400 and the connection is closed")
    func malformed() throws {
        let (server, port) = try ServiceProcess.start("spindle-http")
        let fd = try ServiceProcess.connect(port: port)
        try ServiceProcess.send(fd, Array("GARBAGE\r\n\r\n".utf8))
        let reply = ServiceProcess.receiveAll(fd)  // returns once the server closes
        close(fd)
        #expect(reply.hasPrefix("HTTP/1.1 400 Bad Request"))
        #expect(reply.contains("Connection: close"))
        kill(server.pid, SIGINT)
        #expect(server.wait() == 0)
    }

    @Test("pipelined requests with bodies are answered in order")
    func pipelined() throws {
        let (server, port) = try ServiceProcess.start("spindle-http")
        let fd = try ServiceProcess.connect(port: port)
        let requests =
            "POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
            + "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
            + "GET /b HTTP/1.1\r\nConnection: close\r\n\r\n"
        try ServiceProcess.send(fd, Array(requests.utf8))
        let replies = ServiceProcess.receiveAll(fd)
        close(fd)
        // ("\r\n" is one Character in Swift: split on any newline.)
        let statuses = replies.split(whereSeparator: \.isNewline).map(String.init).filter { $0.hasPrefix("HTTP/1.1 ") }
        #expect(statuses == ["HTTP/1.1 404 Not Found", "HTTP/1.1 200 OK", "HTTP/1.1 404 Not Found"])
        kill(server.pid, SIGTERM)
        #expect(server.wait() == 0)
    }
}
