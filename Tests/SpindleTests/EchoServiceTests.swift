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
                let message = (0..<(1 + (round * 37 + index) % 3000)).map {
                    UInt8(truncatingIfNeeded: $0 &* 7 &+ index)
                }
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

    /// "connections per loop: 17 15" from the stop line, as numbers.
    static func connectionsPerLoop(_ text: String) -> [Int] {
        guard let range = text.range(of: "connections per loop: ") else { return [] }
        return text[range.upperBound...].prefix { $0 != "\n" }.split(separator: " ").compactMap { Int($0) }
    }

    @Test(
        "with --loops 2, connections land on both loops and every byte comes back",
        arguments: [[], ["--acceptor"]])
    func twoLoops(_ spreading: [String]) throws {
        let (server, port) = try ServiceProcess.start("spindle-echo", ["--loops", "2"] + spreading)
        #expect(server.readLine().contains("runs 2 loop(s)"))
        let clients = try (0..<32).map { _ in try Self.connect(port: port) }
        for round in 0..<20 {
            for (index, fd) in clients.enumerated() {
                let message = (0..<(1 + (round * 53 + index) % 2000)).map { UInt8(truncatingIfNeeded: $0 &+ index) }
                #expect(try Self.exchange(fd, message) == message)
            }
        }
        kill(server.pid, SIGTERM)
        #expect(server.wait() == 0)
        let rest = ServiceProcess.readAll(server.stdoutFD)
        #expect(rest.contains("stopping on signal 15 with 32 connection(s) open"))
        let perLoop = Self.connectionsPerLoop(rest)
        #expect(perLoop.count == 2)
        #expect(perLoop.reduce(0, +) == 32)
        #expect(perLoop.allSatisfy { $0 > 0 }, "\(rest)")
        if spreading == ["--acceptor"] { #expect(perLoop == [16, 16]) }
        for fd in clients {
            var byte: UInt8 = 0
            #expect(recv(fd, &byte, 1, 0) == 0)
            close(fd)
        }
    }

    @Test("a bad flag is refused with usage and exit status 2")
    func badFlag() throws {
        let child = try ServiceProcess(Self.executable, ["--port", "99999"])
        #expect(child.wait() == 2)
        let text = ServiceProcess.readAll(child.stderrFD)
        #expect(text.contains("--port needs a number from 0 to 65535"))
        let loops = try ServiceProcess(Self.executable, ["--loops", "0"])
        #expect(loops.wait() == 2)
        #expect(ServiceProcess.readAll(loops.stderrFD).contains("--loops needs a number from 1 to 1024"))
    }
}
