import Foundation
import Glibc
import Testing

/// Runs the `spindle-echo` executable as a real process and talks to it over loopback with a
/// plain blocking BSD-socket client.
@Suite("spindle-echo service")
struct EchoServiceTests {
    static var executable: String { ServiceProcess.path(of: "spindle-echo") }

    static func start() throws -> (ServiceProcess, Int) {
        try ServiceProcess.start("spindle-echo")
    }

    static func connect(port: Int) throws -> Int32 { try ServiceProcess.connect(port: port) }

    static func exchange(_ fd: Int32, _ message: [UInt8]) throws -> [UInt8] {
        try ServiceProcess.exchange(fd, message)
    }

    @Test("echoes every byte for several concurrent clients, then stops cleanly on SIGTERM")
    func echoAndStop() throws {
        let (server, port) = try Self.start()
        let clients = try (0..<8).map { _ in try Self.connect(port: port) }
        for round in 0..<50 {
            for (index, fd) in clients.enumerated() {
                let message = (0..<(1 + (round * 37 + index) % 3000)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ index) }
                #expect(try Self.exchange(fd, message) == message)
            }
        }
        // Stop with connections still open: the server must close them and exit 0.
        kill(server.pid, SIGTERM)
        #expect(server.wait() == 0)
        let rest = ServiceProcess.readAll(server.stdoutFD)
        #expect(rest.contains("stopping on signal 15 with 8 connection(s) open"))
        for fd in clients {
            var byte: UInt8 = 0
            #expect(recv(fd, &byte, 1, 0) == 0)  // the server closed it: end of stream
            close(fd)
        }
    }

    @Test("a bad flag is refused with usage and exit status 2")
    func badFlag() throws {
        let child = try ServiceProcess(Self.executable, ["--port", "99999"])
        #expect(child.wait() == 2)
        let text = ServiceProcess.readAll(child.stderrFD)
        #expect(text.contains("--port needs a number from 0 to 65535"))
    }
}
