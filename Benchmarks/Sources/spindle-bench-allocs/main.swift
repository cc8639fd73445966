// spindle-bench-allocs WORKLOAD VARIANT EXECUTOR SIZE
// spindle-bench-allocs serve-echo EXECUTOR
//
// Counts the malloc calls of one warm run of a workload with ordo-one's malloc interposer and
// prints "<mallocs for SIZE> <mallocs for 2*SIZE>"; or runs an echo server (as
// `spindle-bench serve-echo` does) and prints "mallocs <count>" after it stops. spindle-bench runs it as a child process so
// that its own timed runs use plain malloc. On Linux the interposer must come before libc in
// symbol lookup; when it does not, this re-executes itself with LD_PRELOAD.
import BenchKit
import Foundation
import MallocInterposerSwift
import SpindleLoop

func countingWorks() -> Bool {
    MallocInterposerSwift.initialize()
    MallocInterposerSwift.hook()
    let probe = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 16)
    probe.deallocate()
    MallocInterposerSwift.unhook()
    return MallocInterposerSwift.getStatistics().mallocCount > 0
}

func mallocs(_ body: () throws -> Void) rethrows -> Int64 {
    MallocInterposerSwift.initialize()
    MallocInterposerSwift.hook()
    defer { MallocInterposerSwift.unhook() }
    try body()
    return Int64(MallocInterposerSwift.getStatistics().mallocCount)
}

let arguments = CommandLine.arguments
let servesEcho = arguments.count == 3 && arguments[1] == "serve-echo"
guard servesEcho || arguments.count == 5, servesEcho || UInt64(arguments[4]) != nil else {
    FileHandle.standardError.write(
        "usage: spindle-bench-allocs WORKLOAD VARIANT EXECUTOR SIZE | serve-echo EXECUTOR\n".data(using: .utf8)!)
    exit(2)
}
if !countingWorks() {
    let exe = URL(fileURLWithPath: arguments[0]).resolvingSymlinksInPath()
    let library = exe.deletingLastPathComponent().appendingPathComponent("libMallocInterposerSwift.so").path
    if ProcessInfo.processInfo.environment["SPINDLE_ALLOCS_PRELOADED"] == nil,
        FileManager.default.fileExists(atPath: library)
    {
        setenv("LD_PRELOAD", library, 1)
        setenv("SPINDLE_ALLOCS_PRELOADED", "1", 1)
        execv(exe.path, arguments.map { strdup($0) } + [nil])
    }
    FileHandle.standardError.write("malloc interposer is not active; cannot count allocations\n".data(using: .utf8)!)
    exit(3)
}
if servesEcho {
    do {
        let count = try mallocs { try EchoWorkload.serve(arguments[2], port: 0) }
        print("mallocs \(count)")
        exit(0)
    } catch {
        FileHandle.standardError.write("\(error)\n".data(using: .utf8)!)
        exit(1)
    }
}
let size = UInt64(arguments[4])!
let loop = EventLoop()
let state = FanoutWorkload.State(loop: loop)
do {
    // Warm up first: the counts are for steady state (pooled stacks, grown queues).
    func probe(_ size: UInt64) throws {
        try AllocationProbe.run(
            workload: arguments[1], variant: arguments[2], executor: arguments[3], size: size, state: state)
    }
    try probe(size)
    let one = try mallocs { try probe(size) }
    let two = try mallocs { try probe(size * 2) }
    print(one, two)
} catch {
    FileHandle.standardError.write("\(error)\n".data(using: .utf8)!)
    exit(1)
}
