// spindle-doctor: the doctor for a program whose code you do not change. Run the program with
// SPINDLE_TRACE=run.json (every loop traces from its start and writes the file when it
// closes, or at exit), then:
//
//   spindle-doctor run.json [--operations N] [--waits-per-operation W]
//
// It prints what the doctor finds in the loop's totals (kept in the trace) and in the fiber
// slices of its events. Exit status: 0 no finding, 1 findings, 2 the trace could not be read
// or the arguments are wrong.
import Glibc
import SpindleTrace

let usage = "usage: spindle-doctor TRACE.json [--operations N] [--waits-per-operation W]"

func fail(_ message: String) -> Never {
    var line = "spindle-doctor: \(message)\n"
    line.withUTF8 { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
    exit(2)
}

var path: String?
var operations: Int?
var waits: Double?
var arguments = CommandLine.arguments.dropFirst()[...]
while let argument = arguments.popFirst() {
    switch argument {
    case "-h", "--help":
        print(usage)
        print("Reads a trace a Spindle program wrote (SPINDLE_TRACE=TRACE.json or Trace.write) and names what")
        print("makes its fibers slow. --operations: the units of work the run did (default: the fibers that")
        print("finished); --waits-per-operation: how many times each had to wait (lets the doctor compare).")
        exit(0)
    case "--operations":
        guard let text = arguments.popFirst(), let value = Int(text), value > 0 else {
            fail("--operations needs a whole number above 0\n\(usage)")
        }
        operations = value
    case "--waits-per-operation":
        guard let text = arguments.popFirst(), let value = Double(text), value >= 0 else {
            fail("--waits-per-operation needs a number of at least 0\n\(usage)")
        }
        waits = value
    default:
        if argument.hasPrefix("-") { fail("unknown option \(argument)\n\(usage)") }
        if path != nil { fail("one trace at a time\n\(usage)") }
        path = argument
    }
}
guard let path else { fail("which trace?\n\(usage)") }

let trace: Doctor.TraceFile
do {
    trace = try Doctor.TraceFile(path: path)
} catch {
    fail("\(error)")
}
let totals = trace.totals
func count(_ key: String) -> Int { Int(totals[key] ?? 0) }
print(
    "\(path): \(count("spawns")) fibers spawned, \(count("finishes")) finished; \(count("switches")) resumes, "
        + "\(count("yields")) yields, \(count("parks")) parks, \(count("loopTurns")) loop turns; "
        + "\(trace.eventCount) events"
        + (trace.droppedEvents > 0
            ? " (the \(trace.droppedEvents) before them were overwritten: slices cover the end only)" : ""))
if operations == nil, count("finishes") == 0 {
    print(
        "(no fiber finished in this trace: the figures \"per operation\" are for the whole run; "
            + "--operations N sets the unit)")
}
let report = trace.report(operations: operations, waitsPerOperation: waits)
print(report)
exit(report.findings.isEmpty ? 0 : 1)
