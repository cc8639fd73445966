// A program for Tools/gdb/spindle.py: three named fibers parked in a sleep, and a checkpoint
// a fourth fiber calls while they are parked. In gdb:
//
//   gdb -x Tools/gdb/spindle.py -ex 'break spindle_gdb_demo_checkpoint' -ex run .build/debug/spindle-gdb-demo
//   (gdb) info fibers
//   (gdb) fiber bt 2
//
// The test in Tests/SpindleTests/GdbScriptTests.swift runs exactly that in batch mode.
import Spindle
import SpindleLoop

/// Each sleeper's own function: it must appear in the sleeper's backtrace.
@inline(never)
func parkedInGdbDemo(_ index: Int) {
    do {
        try Fiber.sleep(for: .seconds(60))
    } catch {
        checkpointCount += index - index  // keeps the frame's work observable
    }
}

nonisolated(unsafe) var checkpointCount = 0

/// The loop calls this once every sleeper is parked; gdb breaks here.
@inline(never) @_silgen_name("spindle_gdb_demo_checkpoint")
func checkpoint() { checkpointCount += 1 }

let loop = EventLoop()
var handles: [FiberHandle<Void>] = []
for index in 1...3 {
    handles.append(loop.spawn(name: "sleeper-\(index)") { parkedInGdbDemo(index) })
}
// Spawned after the sleepers, so it runs after them in the loop's first turn, when every one of
// them is parked (a timer could fire before they ran on a slow machine).
let sleepers = handles
loop.spawnDetached(name: "checkpoint") {
    checkpoint()
    for handle in sleepers { handle.cancel() }
}
try loop.run()
print("checkpoints: \(checkpointCount); all \(handles.count) sleepers finished")
