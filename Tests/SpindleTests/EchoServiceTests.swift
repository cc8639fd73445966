import Foundation
import Glibc
import Testing

/// Runs the `spindle-echo` executable as a real process and talks to it over loopback with a
/// plain blocking BSD-socket client.
@Suite("spindle-echo service")
struct EchoServiceTests {
    /// The built executable, next to this test bundle.
    static var executable: String {
        let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        return me.deletingLastPathComponent().appendingPathComponent("spindle-echo").path
    }

    /// A child process started with posix_spawn, its standard output and error on pipes.
    final class Child {
        let pid: pid_t
        let stdoutFD: Int32
        let stderrFD: Int32

        init(_ path: String, _ arguments: [String]) throws {
            var out: [Int32] = [0, 0]
            var err: [Int32] = [0, 0]
            guard pipe(&out) == 0, pipe(&err) == 0 else { throw EchoTestError.socket("pipe failed") }
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_adddup2(&actions, out[1], 1)
            posix_spawn_file_actions_adddup2(&actions, err[1], 2)
            posix_spawn_file_actions_addclose(&actions, out[0])
            posix_spawn_file_actions_addclose(&actions, err[0])
            let argv = ([path] + arguments).map { strdup($0) } + [nil]
            defer { for arg in argv { free(arg) } }
            // SIGINT and SIGTERM start out blocked, as some supervisors (and test runners) leave
            // them: the server must unblock what it waits for.
            var attributes = posix_spawnattr_t()
            posix_spawnattr_init(&attributes)
            defer { posix_spawnattr_destroy(&attributes) }
            var blocked = sigset_t()
            sigemptyset(&blocked)
            sigaddset(&blocked, SIGINT)
            sigaddset(&blocked, SIGTERM)
            posix_spawnattr_setsigmask(&attributes, &blocked)
            posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK))
            var pid: pid_t = 0
            let status = posix_spawn(&pid, path, &actions, &attributes, argv, environ)
            close(out[1])
            close(err[1])
            guard status == 0 else { throw EchoTestError.socket("posix_spawn \(path): \(String(cString: strerror(status)))") }
            self.pid = pid
            stdoutFD = out[0]
            stderrFD = err[0]
        }

        /// Reads standard output up to and including the next newline.
        func readLine() -> String {
            var bytes: [UInt8] = []
            var byte: UInt8 = 0
            while read(stdoutFD, &byte, 1) == 1 {
                if byte == UInt8(ascii: "\n") { break }
                bytes.append(byte)
            }
            return String(decoding: bytes, as: UTF8.self)
        }

        static func readAll(_ fd: Int32) -> String {
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = read(fd, &chunk, chunk.count)
                if n <= 0 { break }
                bytes += chunk[0..<n]
            }
            return String(decoding: bytes, as: UTF8.self)
        }

        /// Waits for the child and returns its exit status (or 128 + signal).
        func wait() -> Int32 {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            let signal = status & 0x7f
            return signal == 0 ? (status >> 8) & 0xff : 128 + signal
        }

        deinit {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, WNOHANG)
            close(stdoutFD)
            close(stderrFD)
        }
    }

    /// Starts the server on a free port and returns it with the port it printed.
    static func start() throws -> (Child, Int) {
        let child = try Child(executable, ["--host", "127.0.0.1", "--port", "0"])
        // First line: "spindle-echo listening on 127.0.0.1:PORT"
        let text = child.readLine()
        guard text.hasPrefix("spindle-echo listening on 127.0.0.1:"), let port = text.split(separator: ":").last.flatMap({ Int($0) })
        else { throw EchoTestError.unexpectedOutput(text) }
        return (child, port)
    }

    enum EchoTestError: Error { case unexpectedOutput(String), socket(String) }

    /// A blocking client connection.
    static func connect(port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard status == 0 else { throw EchoTestError.socket("connect: \(String(cString: strerror(errno)))") }
        return fd
    }

    static func exchange(_ fd: Int32, _ message: [UInt8]) throws -> [UInt8] {
        var sent = 0
        while sent < message.count {
            let n = message.withUnsafeBytes { send(fd, $0.baseAddress! + sent, message.count - sent, 0) }
            guard n > 0 else { throw EchoTestError.socket("send: \(String(cString: strerror(errno)))") }
            sent += n
        }
        var reply = [UInt8](repeating: 0, count: message.count)
        var got = 0
        while got < message.count {
            let n = reply.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, message.count - got, 0) }
            guard n > 0 else { throw EchoTestError.socket("recv returned \(n)") }
            got += n
        }
        return reply
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
        let rest = Child.readAll(server.stdoutFD)
        #expect(rest.contains("stopping on signal 15 with 8 connection(s) open"))
        for fd in clients {
            var byte: UInt8 = 0
            #expect(recv(fd, &byte, 1, 0) == 0)  // the server closed it: end of stream
            close(fd)
        }
    }

    @Test("a bad flag is refused with usage and exit status 2")
    func badFlag() throws {
        let child = try Child(Self.executable, ["--port", "99999"])
        #expect(child.wait() == 2)
        let text = Child.readAll(child.stderrFD)
        #expect(text.contains("--port needs a number from 0 to 65535"))
    }
}
