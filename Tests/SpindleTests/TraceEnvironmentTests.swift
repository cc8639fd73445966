import Foundation
import Glibc
import Testing

@Suite("SPINDLE_TRACE")
struct TraceEnvironmentTests {
    @Test("SPINDLE_TRACE=path traces a program from its start and writes the file when its loop closes")
    func environmentVariable() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("spindle-env-trace-\(getpid()).json")
            .path
        defer { unlink(path) }
        let demo = try ServiceProcess(
            ServiceProcess.path(of: "spindle-gdb-demo"), [], mergingErrors: true, environment: ["SPINDLE_TRACE=\(path)"]
        )
        let output = ServiceProcess.readAll(demo.stdoutFD)
        #expect(demo.wait() == 0, "\(output)")
        #expect(output.contains("trace written to \(path)"), "\(output)")
        let json =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any]
        let events = json?["traceEvents"] as? [[String: Any]] ?? []
        let names = Set(events.compactMap { $0["name"] as? String })
        for index in 1...3 {
            #expect(
                names.contains("fiber #\(index) sleeper-\(index)")
                    || names.contains("spawn fiber #\(index) sleeper-\(index)"), "\(names.sorted().prefix(20))")
        }
        // The sleepers parked in their sleep and, cancelled, finished; so did the checkpoint fiber.
        let ends = events.compactMap { ($0["args"] as? [String: Any])?["end"] as? String }
        #expect(ends.filter { $0 == "park: sleep" }.count == 3)
        #expect(ends.filter { $0 == "finish" }.count == 4)
    }
}
