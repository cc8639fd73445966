import Foundation
import Glibc
import Testing

/// Tools/gdb/spindle.py against a real program: gdb in batch mode stops `spindle-gdb-demo` while
/// its three sleepers are parked, lists them, unwinds one from its saved fcontext registers, and
/// lets the program run on to its normal end (the registers `fiber bt` borrowed were put back).
@Suite("gdb script")
struct GdbScriptTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    @Test("info fibers lists parked fibers; fiber bt shows a fiber's own function; the program then finishes")
    func gdbLists() throws {
        guard let gdb = ["/usr/bin/gdb", "/usr/local/bin/gdb"].first(where: FileManager.default.isExecutableFile) else {
            Issue.record("gdb is not installed (apt-get install -y gdb; make test installs it when run as root)")
            return
        }
        let demo = ServiceProcess.path(of: "spindle-gdb-demo")
        #expect(FileManager.default.isExecutableFile(atPath: demo), "\(demo) was not built")
        let script = Self.repository.appendingPathComponent("Tools/gdb/spindle.py").path
        // posix_spawn with a clean signal mask: gdb hangs if SIGCHLD stays blocked, as the test
        // runner's threads have it.
        let gdbProcess = try ServiceProcess(
            gdb,
            [
                "-nx", "-batch", "-x", script,
                "-ex", "set pagination off", "-ex", "set startup-with-shell off",
                // Under `make asan`: LeakSanitizer cannot run in a traced process.
                "-ex", "set environment ASAN_OPTIONS=detect_leaks=0",
                "-ex", "break spindle_gdb_demo_checkpoint", "-ex", "run",
                "-ex", "info fibers", "-ex", "fiber bt 2", "-ex", "fiber bt -raw 3", "-ex", "continue",
                "--args", demo,
            ], blocked: [], mergingErrors: true)
        let text = ServiceProcess.readAll(gdbProcess.stdoutFD)
        #expect(gdbProcess.wait() == 0, "gdb failed:\n\(text)")

        let listing = text.split(separator: "\n").filter { $0.contains("\"sleeper-") && $0.contains(" stack 0x") }
        #expect(listing.count == 3, "info fibers listed:\n\(text)")
        #expect(listing.allSatisfy { $0.contains("parked (sleep)") }, "\(text)")
        // The backtrace starts at the fiber's switch and reaches its own function.
        let backtrace =
            (text.components(separatedBy: "fiber #2 \"sleeper-2\"").dropFirst().first ?? "")
            .components(separatedBy: "fiber #3 ").first ?? ""
        #expect(backtrace.contains("parkedInGdbDemo(_:)"), "fiber bt 2 printed:\n\(text)")
        #expect(backtrace.contains("#1 "), "a backtrace of more than one frame:\n\(text)")
        // In Swift's words (gdb does not demangle Swift); -raw leaves the symbols as they are.
        #expect(backtrace.contains("static Fiber.sleep(for:)") && !backtrace.contains("$s7Spindle"), "\(text)")
        let raw = text.components(separatedBy: "fiber #3 \"sleeper-3\"").dropFirst().first ?? ""
        #expect(raw.contains("$s7Spindle5FiberO5sleep"), "fiber bt -raw 3 printed:\n\(text)")
        // The program carried on from the breakpoint with its own registers and ended normally.
        #expect(text.contains("checkpoints: 1; all 3 sleepers finished"), "\(text)")
    }
}
