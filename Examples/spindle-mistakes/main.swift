// The doctor's second gallery: mistakes people make with fibers, each a small program on one
// loop, none of them the benchmark's pitfalls. Nothing here calls the doctor; run one with
// SPINDLE_TRACE and read the trace:
//
//   SPINDLE_TRACE=run.json .build/debug/spindle-mistakes wake-storm
//   .build/debug/spindle-doctor run.json
//
// `healthy` does the same kinds of work the right way (timers, a shared channel, a mutex held
// only for a moment, a pool of one stack size) and must get no finding. DoctorGalleryTests runs
// every program and holds the doctor to naming each one's cause and nothing else.
import Glibc
import Spindle
import SpindleAsync
import SpindleLoop

/// A program: what it does wrong (for the usage text) and its body, which spawns fibers on the
/// loop and returns a check to run after the loop has run (operations done, operations expected).
struct Mistake {
    let summary: String
    let body: (EventLoop) -> () -> (done: Int, expected: Int)
}

/// A few microseconds of work the optimiser cannot remove.
@inline(never)
func compute(_ seed: Int) -> Int {
    var value = seed
    for _ in 0..<64 { value = value &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407 }
    return value
}

/// `count` detached fibers named `name-i`, each running `body(i)`; the returned check counts
/// those that got to the end.
func operations(
    _ loop: EventLoop, _ count: Int, name: String, stackSize: ((Int) -> Int)? = nil,
    _ body: @escaping (Int) throws -> Void
) -> () -> (done: Int, expected: Int) {
    var done = 0
    for index in 0..<count {
        loop.spawnDetached(name: "\(name)-\(index)", stackSize: stackSize?(index)) {
            do {
                try body(index)
                done += 1
            } catch {
                print("\(name)-\(index): \(error)")
            }
        }
    }
    return { (done, count) }
}

let mistakes: [String: Mistake] = [
    "healthy": Mistake(summary: "timers, one shared channel, a mutex held for a moment: no mistake") { loop in
        let requests = Channel<Int>(capacity: 64)
        let mutex = FiberMutex()
        var total = 0
        let server = operations(loop, 1, name: "server") { _ in
            for value in requests { try mutex.withLock { total &+= value } }
        }
        let clients = operations(loop, 500, name: "client") { index in
            for step in 0..<5 {
                try Fiber.sleep(for: .milliseconds(1))
                try requests.send(compute(index &+ step))
            }
        }
        loop.spawnDetached(name: "closer") {
            while clients().done < 500 { try? Fiber.sleep(for: .milliseconds(2)) }
            requests.close()
        }
        return { (clients().done + server().done, 501) }
    },
    "blocking-sleep": Mistake(summary: "usleep in a fiber: the whole loop sleeps") { loop in
        operations(loop, 300, name: "request") { index in
            try Fiber.sleep(for: .milliseconds(1))
            usleep(1_000)  // the mistake: the thread sleeps, not the fiber
            _ = compute(index)
        }
    },
    "timer-polling": Mistake(summary: "polling a flag with Fiber.sleep(for: .zero)") { loop in
        // The flag is set by a watcher after 30 loop turns: each waiter polls about 30 times,
        // however fast or slow the machine (a timer would make it a matter of time).
        var ready = false
        var turns = 0
        let watcher = LoopWatcher(loop: loop, kind: .check)
        watcher.start { [unowned watcher] in
            turns += 1
            if turns == 30 {
                ready = true
                watcher.close()
            }
        }
        return operations(loop, 100, name: "waiter") { _ in
            while !ready { try Fiber.sleep(for: .zero) }  // the mistake: a timer per look
        }
    },
    "fiber-per-step": Mistake(summary: "a spawn and a join for every step that never waits") { loop in
        operations(loop, 500, name: "request") { index in
            try Fiber.sleep(for: .milliseconds(1))
            var sum = 0
            for step in 0..<10 {
                sum &+= try loop.spawn { compute(index &+ step) }.join()  // the mistake
            }
            _ = sum
        }
    },
    "varied-stacks": Mistake(summary: "a different stack size for every fiber") { loop in
        // Ten waves of 100: each wave asks for sizes no earlier fiber used.
        var done = 0
        loop.spawnDetached(name: "driver") {
            for wave in 0..<10 {
                let handles = (0..<100).map { index in
                    let size = 64 * 1024 + (wave * 100 + index) * 4096  // the mistake
                    return loop.spawn(name: "request-\(wave * 100 + index)", stackSize: size) {
                        try Fiber.sleep(for: .milliseconds(1))
                        return compute(index)
                    }
                }
                for handle in handles where (try? handle.join()) != nil { done += 1 }
            }
        }
        return { (done, 1_000) }
    },
    "step-fibers-varied-stacks": Mistake(summary: "a fiber per step, each with a stack size of its own") { loop in
        // Two mistakes at once (the program that once read as "a system call on every switch"):
        // every step spawns and joins a fiber, and every fiber asks for a new stack size.
        var spawned = 0
        return operations(loop, 300, name: "request") { index in
            try Fiber.sleep(for: .milliseconds(1))
            for step in 0..<4 {
                spawned += 1
                _ = try loop.spawn(stackSize: 64 * 1024 + spawned * 4096) { compute(index &+ step) }.join()
            }
        }
    },
    "mutex-convoy": Mistake(summary: "a FiberMutex held across a yield") { loop in
        let mutex = FiberMutex()
        var shared = 0
        return operations(loop, 500, name: "request") { index in
            for step in 0..<10 {
                try mutex.withLock {
                    shared &+= compute(index &+ step)
                    Fiber.yield()  // the mistake: waiting while holding the lock
                }
            }
        }
    },
    "channel-per-message": Mistake(summary: "a new reply channel for every request") { loop in
        let requests = Channel<(Int, Channel<Int>)>()
        let server = operations(loop, 1, name: "server") { _ in
            for (value, reply) in requests { try reply.send(compute(value)) }
        }
        let clients = operations(loop, 100, name: "client") { index in
            for step in 0..<30 {
                let reply = Channel<Int>(capacity: 1)  // the mistake
                try requests.send((index &+ step, reply))
                _ = try reply.receive()
            }
        }
        loop.spawnDetached(name: "closer") {
            while clients().done < 100 { try? Fiber.sleep(for: .milliseconds(2)) }
            requests.close()
        }
        return { (clients().done + server().done, 101) }
    },
    "wake-storm": Mistake(summary: "a FiberEvent that wakes every worker for each job") { loop in
        let workAvailable = FiberEvent()
        var queue: [Int] = []
        var finished = false
        var handled = 0
        let workers = operations(loop, 100, name: "worker") { _ in
            while true {
                while queue.isEmpty {
                    if finished { return }
                    try workAvailable.wait()  // the mistake: all 100 wake for one job
                }
                handled &+= compute(queue.removeFirst()) == 0 ? 0 : 1
            }
        }
        loop.spawnDetached(name: "producer") {
            for job in 0..<600 {
                queue.append(job)
                workAvailable.set()
                workAvailable.reset()
                Fiber.yield()
            }
            finished = true
            workAvailable.set()
        }
        return { (workers().done, 100) }
    },
    "async-hops": Mistake(summary: "Fiber.awaitAsync for every step of synchronous work") { loop in
        operations(loop, 200, name: "request") { index in
            for step in 0..<10 {
                _ = try Fiber.awaitAsync { compute(index &+ step) }  // the mistake
            }
        }
    },
    "thread-handoff": Mistake(summary: "every step handed to a worker loop's thread and waited for") { loop in
        let workers = LoopGroup(loops: 1, name: "worker")
        let worker = workers.loops[0]
        let check = operations(loop, 4, name: "request") { index in
            for step in 0..<500 {
                _ = try worker.call { compute(index &+ step) }  // the mistake: a thread hop a step
            }
        }
        return {
            try? workers.shutdown()
            return check()
        }
    },
]

let arguments = CommandLine.arguments.dropFirst()
guard arguments.count == 1, let name = arguments.first, let mistake = mistakes[name] else {
    print("usage: spindle-mistakes PROGRAM   (run it with SPINDLE_TRACE=run.json, then spindle-doctor run.json)")
    for name in mistakes.keys.sorted() { print("  \(name): \(mistakes[name]!.summary)") }
    exit(2)
}
let loop = EventLoop()
let check = mistake.body(loop)
do {
    try loop.run()
    try loop.close()
} catch {
    print("spindle-mistakes \(name): \(error)")
    exit(1)
}
let (done, expected) = check()
print("spindle-mistakes \(name): \(done) of \(expected) operations done (\(mistake.summary))")
exit(done == expected ? 0 : 1)
