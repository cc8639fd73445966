import Foundation
import Glibc

/// An example service (`spindle-echo`, `spindle-http`) run as a real child process with
/// posix_spawn, its standard output and error on pipes, plus a plain blocking socket client.
final class ServiceProcess {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    let pid: pid_t
    let stdoutFD: Int32
    let stderrFD: Int32

    /// The built executable `name`, next to this test bundle.
    static func path(of name: String) -> String {
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent(name).path
    }

    /// Starts `name --host 127.0.0.1 --port 0` (then `extra`) and returns it with the port from
    /// its first line ("NAME listening on 127.0.0.1:PORT").
    static func start(_ name: String, _ extra: [String] = []) throws -> (ServiceProcess, Int) {
        let child = try ServiceProcess(path(of: name), ["--host", "127.0.0.1", "--port", "0"] + extra)
        let line = child.readLine()
        guard line.hasPrefix("\(name) listening on 127.0.0.1:"),
            let port = line.split(separator: ":").last.flatMap({ Int($0) })
        else { throw Failure(description: "\(name) printed \"\(line)\"") }
        return (child, port)
    }

    /// Starts `path` with `arguments`. The child starts with `blocked` signals blocked (default:
    /// SIGINT and SIGTERM, as some supervisors leave them) and every other signal unblocked and
    /// at its default action, whatever the test runner's thread had blocked or ignored.
    /// `mergingErrors` sends standard error into the standard output pipe; `environment` adds
    /// "NAME=value" entries to the child's environment. Standard input is /dev/null.
    init(
        _ path: String, _ arguments: [String], blocked blockedSignals: [Int32] = [SIGINT, SIGTERM],
        mergingErrors: Bool = false, environment extra: [String] = []
    ) throws {
        var out: [Int32] = [0, 0]
        var err: [Int32] = [0, 0]
        guard pipe(&out) == 0, pipe(&err) == 0 else { throw Failure(description: "pipe failed") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, out[1], 1)
        posix_spawn_file_actions_adddup2(&actions, mergingErrors ? out[1] : err[1], 2)
        posix_spawn_file_actions_addclose(&actions, out[0])
        posix_spawn_file_actions_addclose(&actions, err[0])
        // Nothing else of this process: other tests' descriptors are open here (sockets, the
        // pipes of other children), and a child holding a copy of one keeps it open after its
        // test closed it (a test saw ECONNRESET instead of end of stream; a pipe would not end).
        if let closeFrom = Self.addCloseFrom { _ = closeFrom(&actions, 3) }
        // By default SIGINT and SIGTERM start out blocked, as some supervisors (and test
        // runners) leave them: a service must unblock what it waits for.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var blocked = sigset_t()
        sigemptyset(&blocked)
        for signal in blockedSignals { sigaddset(&blocked, signal) }
        posix_spawnattr_setsigmask(&attributes, &blocked)
        // The runner's threads block and ignore signals a child needs (gdb waits for SIGCHLD).
        var defaults = sigset_t()
        sigfillset(&defaults)
        sigdelset(&defaults, SIGKILL)
        sigdelset(&defaults, SIGSTOP)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for arg in argv { free(arg) } }
        var pid: pid_t = 0
        // This process's environment plus `extra` ("NAME=value").
        var inherited: [String] = []
        var cursor = environ
        while let entry = cursor.pointee {
            inherited.append(String(cString: entry))
            cursor += 1
        }
        let envp = (inherited + extra).map { strdup($0) } + [nil]
        defer { for entry in envp { free(entry) } }
        let status = posix_spawn(&pid, path, &actions, &attributes, argv, envp)
        close(out[1])
        close(err[1])
        guard status == 0 else {
            throw Failure(description: "posix_spawn \(path): \(String(cString: strerror(status)))")
        }
        self.pid = pid
        stdoutFD = out[0]
        stderrFD = err[0]
    }

    /// glibc's posix_spawn_file_actions_addclosefrom_np (2.34+), which Swift's Glibc module does
    /// not import (a GNU extension), or nil where the C library lacks it.
    static let addCloseFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
        guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(
            symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }()

    /// Reads standard output up to the next newline.
    func readLine() -> String {
        var bytes: [UInt8] = []
        var byte: UInt8 = 0
        while read(stdoutFD, &byte, 1) == 1 {
            if byte == UInt8(ascii: "\n") { break }
            bytes.append(byte)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Reads `fd` to end of file.
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

    /// Waits for the child; returns its exit status, or 128 + the signal that killed it.
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

    // MARK: A blocking client

    static func connect(port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard status == 0 else { throw Failure(description: "connect: \(String(cString: strerror(errno)))") }
        return fd
    }

    static func send(_ fd: Int32, _ message: [UInt8]) throws {
        var sent = 0
        while sent < message.count {
            let n = message.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, message.count - sent, 0) }
            guard n > 0 else { throw Failure(description: "send: \(String(cString: strerror(errno)))") }
            sent += n
        }
    }

    static func exchange(_ fd: Int32, _ message: [UInt8]) throws -> [UInt8] {
        try send(fd, message)
        var reply = [UInt8](repeating: 0, count: message.count)
        var got = 0
        while got < message.count {
            let n = reply.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, message.count - got, 0) }
            guard n > 0 else { throw Failure(description: "recv returned \(n)") }
            got += n
        }
        return reply
    }

    /// Reads until the peer closes.
    static func receiveAll(_ fd: Int32) -> String {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &chunk, chunk.count, 0)
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
