import Foundation
import Glibc
import Testing

/// spindle-doctor on a program whose code does not call the doctor: `spindle-doctor-demo` run
/// with SPINDLE_TRACE, then the tool on the trace it wrote — as README's "Debugging" section
/// tells a user to do.
@Suite("spindle-doctor")
struct DoctorToolTests {
    /// Runs the demo with `arguments` under SPINDLE_TRACE, then spindle-doctor on the trace; its
    /// exit status and output.
    func diagnose(_ name: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let trace = FileManager.default.temporaryDirectory.appendingPathComponent(
            "spindle-doctor-\(getpid())-\(name).json"
        ).path
        defer { unlink(trace) }
        let demo = try ServiceProcess(
            ServiceProcess.path(of: "spindle-doctor-demo"), arguments, mergingErrors: true,
            environment: ["SPINDLE_TRACE=\(trace)"])
        let demoOutput = ServiceProcess.readAll(demo.stdoutFD)
        #expect(demo.wait() == 0, "\(demoOutput)")
        #expect(demoOutput.contains("1000 of 1000 operations finished"), "\(demoOutput)")
        #expect(demoOutput.contains("trace written to \(trace)"), "\(demoOutput)")
        let doctor = try ServiceProcess(ServiceProcess.path(of: "spindle-doctor"), [trace], mergingErrors: true)
        let output = ServiceProcess.readAll(doctor.stdoutFD)
        return (doctor.wait(), output)
    }

    @Test("fibers parked on their timers: nothing about how they wait; the exit status says whether anything was found")
    func healthy() throws {
        let (status, output) = try diagnose("parked", [])
        #expect(output.contains("1000 fibers spawned, 1000 finished"), "\(output)")
        #expect(output.contains("doctor: "), "\(output)")
        // Only a slice stretched past 1 ms of wall time may be named: a loaded machine or a
        // sanitizer can do that to any slice (the finding then says the OS preempted the loop).
        for wrong in ["busy-yield", "cold stacks", "thread hand-offs", "a system call", "a loop turn", "switches far"] {
            #expect(!output.contains(wrong), "\(output)")
        }
        #expect((status == 0) == output.contains("no pathology found"), "exit status \(status):\n\(output)")
    }

    @Test("fibers polling with Fiber.yield(): busy-yield polling; a 20 ms slice: named with its fiber; exit status 1")
    func findings() throws {
        let busy = try diagnose("busy", ["--busy"])
        #expect(busy.status == 1, "\(busy.output)")
        #expect(busy.output.contains("busy-yield polling: 10."), "\(busy.output)")
        #expect(!busy.output.contains("cold stacks"), "\(busy.output)")
        let hog = try diagnose("hog", ["--hog"])
        #expect(hog.status == 1, "\(hog.output)")
        #expect(hog.output.contains("slices that block the loop"), "\(hog.output)")
        #expect(hog.output.contains("in fiber \"hog\""), "\(hog.output)")
    }

    @Test("a missing trace or a wrong option: the reason on standard error, exit status 2")
    func refusals() throws {
        let tool = ServiceProcess.path(of: "spindle-doctor")
        let missing = try ServiceProcess(tool, ["/nonexistent/run.json"], mergingErrors: true)
        let missingOutput = ServiceProcess.readAll(missing.stdoutFD)
        #expect(missing.wait() == 2)
        #expect(
            missingOutput == "spindle-doctor: /nonexistent/run.json: ENOENT: no such file or directory\n",
            "\(missingOutput)")
        let wrong = try ServiceProcess(tool, ["run.json", "--operations", "many"], mergingErrors: true)
        let wrongOutput = ServiceProcess.readAll(wrong.stdoutFD)
        #expect(wrong.wait() == 2)
        #expect(wrongOutput.contains("--operations needs a whole number above 0"), "\(wrongOutput)")
    }

    @Test("a trace in which no fiber finished: the tool says its figures are for the whole run")
    func noFiberFinished() throws {
        let trace = FileManager.default.temporaryDirectory.appendingPathComponent(
            "spindle-doctor-\(getpid())-none.json"
        ).path
        defer { unlink(trace) }
        try Data(
            """
            {"displayTimeUnit":"ns","otherData":{"droppedEvents":0,"spindle":{"spawns":3,"finishes":0,"switches":3,\
            "yields":0,"parks":3,"loopTurns":1}},"traceEvents":[
            {"name":"thread_name","ph":"M","pid":1,"tid":1,"args":{"name":"loop"}}
            ]}

            """.utf8
        ).write(to: URL(fileURLWithPath: trace))
        let doctor = try ServiceProcess(ServiceProcess.path(of: "spindle-doctor"), [trace], mergingErrors: true)
        let output = ServiceProcess.readAll(doctor.stdoutFD)
        #expect(doctor.wait() == 0, "\(output)")
        #expect(output.contains("3 fibers spawned, 0 finished"), "\(output)")
        #expect(output.contains("no fiber finished in this trace"), "\(output)")
    }
}
