// spindle-doctor: the doctor for a program whose code you do not change. Either run the
// program with SPINDLE_TRACE=run.json (every loop traces from its start and writes the file
// when it closes, or at exit), then read the trace:
//
//   spindle-doctor run.json [--operations N] [--waits-per-operation W]
//
// or let the doctor run it, under a system call counter (ptrace) as well:
//
//   spindle-doctor [--operations N] [--waits-per-operation W] run PROGRAM [ARGUMENTS...]
//
// It prints what the doctor finds in the loop's totals (kept in the trace), in the order of its
// events, and, under `run`, in the system calls of the loop's thread. Exit status: 0 no finding,
// 1 findings, 2 the trace could not be read, the program could not be run or the arguments are
// wrong.
import Glibc
import SpindleLoop
import SpindleTrace

let usage = """
    usage: spindle-doctor TRACE.json [--operations N] [--waits-per-operation W]
           spindle-doctor [--operations N] [--waits-per-operation W] run PROGRAM [ARGUMENTS...]
    """

func fail(_ message: String) -> Never {
    var line = "spindle-doctor: \(message)\n"
    line.withUTF8 { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
    exit(2)
}

var path: String?
var command: [String]?
var operations: Int?
var waits: Double?
var arguments = CommandLine.arguments.dropFirst()[...]
while let argument = arguments.popFirst() {
    switch argument {
    case "-h", "--help":
        print(usage)
        print("Reads a trace a Spindle program wrote (SPINDLE_TRACE=TRACE.json or Trace.write), or runs PROGRAM")
        print("with SPINDLE_TRACE and counts its system calls by thread (ptrace), and names what makes its fibers")
        print("slow. --operations: the units of work the run did (default: the fibers that finished, less")
        print("one-slice helpers); --waits-per-operation: how many times each had to wait (lets the doctor compare).")
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
    case "run" where path == nil:
        if arguments.first == "--" { arguments.removeFirst() }
        guard !arguments.isEmpty else { fail("run what?\n\(usage)") }
        command = Array(arguments)
        arguments = []
    default:
        if argument.hasPrefix("-") { fail("unknown option \(argument)\n\(usage)") }
        if path != nil { fail("one trace at a time\n\(usage)") }
        path = argument
    }
}

var syscalls: Doctor.SyscallCount?
if let command {
    // The trace goes to a file of our own, removed afterwards.
    var template = Array("/tmp/spindle-doctor-XXXXXX.json".utf8CString)
    let descriptor = template.withUnsafeMutableBufferPointer { mkstemps($0.baseAddress!, 5) }
    guard descriptor >= 0 else { fail("cannot make a trace file in /tmp: \(UVError(code: -errno))") }
    close(descriptor)
    let tracePath = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    path = tracePath
    var environment: [String] = []
    var entry = environ
    while let variable = entry.pointee {
        let text = String(cString: variable)
        if !text.hasPrefix("SPINDLE_TRACE=") { environment.append(text) }
        entry += 1
    }
    environment.append("SPINDLE_TRACE=\(tracePath)")
    // LeakSanitizer stops a program it finds traced ("does not work under ptrace"): a program
    // built with AddressSanitizer runs without leak checking here.
    if let index = environment.firstIndex(where: { $0.hasPrefix("ASAN_OPTIONS=") }) {
        environment[index] += ":detect_leaks=0"
    } else {
        environment.append("ASAN_OPTIONS=detect_leaks=0")
    }
    do {
        syscalls = try Doctor.SyscallCount.run(command, environment: environment)
    } catch {
        unlink(tracePath)
        fail("\(error)")
    }
    let threads = syscalls!.threads.count
    print(
        "\(command.joined(separator: " ")): \(syscalls!.ending), \(threads) thread\(threads == 1 ? "" : "s")")
    // Each loop of the program wrote a trace (path, path.2, path.3, ...): the first to close is
    // read; the others are only removed.
    var more = 0
    while unlink("\(tracePath).\(more + 2)") == 0 { more += 1 }
    if more > 0 {
        print(
            "(\(more + 1) loops wrote traces: this reads the one that closed first; trace the others with "
                + "SPINDLE_TRACE=run.json and read run.json.2, ...)")
    }
}
guard let path else { fail("which trace?\n\(usage)") }

let trace: Doctor.TraceFile
do {
    trace = try Doctor.TraceFile(path: path)
    if command != nil { unlink(path) }
} catch {
    if command != nil {
        unlink(path)
        fail("the program wrote no trace Spindle can read (\(error)): does it run a Spindle EventLoop?")
    }
    fail("\(error)")
}
let totals = trace.totals
func count(_ key: String) -> Int { Int(totals[key] ?? 0) }
print(
    "\(command == nil ? path : "trace"): \(count("spawns")) fibers spawned, \(count("finishes")) finished; "
        + "\(count("switches")) resumes, \(count("yields")) yields, \(count("parks")) parks, "
        + "\(count("loopTurns")) loop turns; \(trace.eventCount) events"
        + (trace.droppedEvents > 0
            ? " (the \(trace.droppedEvents) before them were overwritten: slices cover the end only)" : ""))
let parks = totals.filter { $0.key.hasPrefix("parks:") }.sorted { $0.value > $1.value }
if !parks.isEmpty {
    print("parks by reason: " + parks.map { "\($0.key.dropFirst(6)) \(Int($0.value))" }.joined(separator: ", "))
}
if let syscalls, let loopThread = totals["loopKernelThread"] {
    let (loop, others) = syscalls.split(loopThread: Int(loopThread))
    func top(_ calls: [String: Int]) -> String {
        let sorted = calls.sorted { $0.value > $1.value }.prefix(6)
        return sorted.isEmpty ? "none" : sorted.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
    }
    print("system calls of the loop's thread: \(top(loop)); of the other threads: \(top(others))")
    // Each thread's calls and preemptions (involuntary switches: ptrace's own stops are
    // voluntary, so these still say who waited for a CPU).
    let threads = syscalls.threads.prefix(8).map { thread in
        let role = thread.id == Int(loopThread) ? ", the loop" : ""
        let calls = thread.calls.values.reduce(0, +)
        let preempted = thread.involuntarySwitches.map { ", preempted \($0) times" } ?? ""
        return "\(thread.name.isEmpty ? "?" : thread.name) (\(thread.id)\(role)): \(calls) calls\(preempted)"
    }
    let more = syscalls.threads.count > 8 ? "; \(syscalls.threads.count - 8) more" : ""
    print("threads: " + threads.joined(separator: "; ") + more)
}
if operations == nil, count("finishes") == 0 {
    print(
        "(no fiber finished in this trace: the figures \"per operation\" are for the whole run; "
            + "--operations N sets the unit)")
}
let report = trace.report(operations: operations, waitsPerOperation: waits, syscalls: syscalls)
print(report)
exit(report.findings.isEmpty ? 0 : 1)
