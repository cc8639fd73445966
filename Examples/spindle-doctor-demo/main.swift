// A program for spindle-doctor: 1,000 operations, each waiting ten times for a timer, as fibers
// on one loop. By default each wait parks the fiber on a 1 ms timer (Fiber.sleep); with --busy
// each wait starts a zero-delay timer and yields until its callback has run ("ready yet?"), the mistake
// of README's "Debugging a slow coroutine design". With --hog one fiber also computes for 20 ms
// without yielding. Nothing here calls the doctor: run it with SPINDLE_TRACE and read the trace.
//
//   SPINDLE_TRACE=busy.json .build/debug/spindle-doctor-demo --busy
//   .build/debug/spindle-doctor busy.json
import Glibc
import Spindle
import SpindleLoop

let arguments = Set(CommandLine.arguments.dropFirst())
let unknown = arguments.subtracting(["--busy", "--hog"])
guard unknown.isEmpty else {
    print("usage: spindle-doctor-demo [--busy] [--hog]  (unknown: \(unknown.sorted().joined(separator: " ")))")
    exit(2)
}
let busy = arguments.contains("--busy")
let operations = 1_000
let waits = 10

let loop = EventLoop()
var finished = 0
for index in 0..<operations {
    loop.spawnDetached(name: "operation-\(index)") {
        for _ in 0..<waits {
            if busy {
                // The mistake: poll for the timer's callback instead of waiting for it.
                var fired = false
                let timer = LoopTimer(loop: loop) { timer in
                    fired = true
                    timer.close()
                }
                timer.start(after: .zero)
                while !fired { Fiber.yield() }
            } else {
                try? Fiber.sleep(for: .milliseconds(1))
            }
        }
        finished += 1
    }
}
if arguments.contains("--hog") {
    loop.spawnDetached(name: "hog") {
        // 20 ms of work in one slice: the loop runs nothing else meanwhile.
        let start = ContinuousClock.now
        var spins = 0
        while ContinuousClock.now - start < .milliseconds(20) { spins &+= 1 }
        precondition(spins > 0)
    }
}
try loop.run()
try loop.close()
print(
    "spindle-doctor-demo: \(finished) of \(operations) operations finished, \(waits) waits each (\(busy ? "polling with Fiber.yield()" : "parked on the timer"))"
)
