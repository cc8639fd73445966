import Glibc
import Spindle
import SpindleLoop
import Testing

/// Misuse that cannot be reported as a thrown error stops the process with a message; each
/// test runs the misuse in a child process and checks what it printed.
@Suite("Fiber misuse")
struct FiberMisuseTests {
    @Test("a stack overflow is reported with the fiber's name, id and stack size")
    func stackOverflow() async {
        let result = await #expect(processExitsWith: .signal(SIGSEGV), observing: [\.standardErrorContent]) {
            try LoopThread.run {
                let loop = EventLoop()
                loop.spawn(name: "deep-recursion", stackSize: 32 * 1024) { _ = exhaustStack(0) }
                try loop.run()
            }
        }
        let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(text.contains("fatal: stack overflow in fiber \"deep-recursion\" (#1, 32 KiB stack)"))
    }

    @Test("a stack larger than the largest a fiber may have is refused, saying so")
    func stackTooLarge() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            try LoopThread.run {
                let loop = EventLoop()
                loop.spawnDetached(stackSize: Int.max) {}
                try loop.run()
            }
        }
        let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(text.contains("a fiber stack of \(Int.max) bytes was asked for; the largest is 2 GiB"))
    }

    @Test("yield outside a fiber says so")
    func yieldOutsideFiber() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            Fiber.yield()
        }
        let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(text.contains("Fiber.yield() called outside a fiber"))
    }

    @Test("sleep outside a fiber says so")
    func sleepOutsideFiber() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            try? Fiber.sleep(for: .milliseconds(1))
        }
        let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(text.contains("Fiber.sleep(for:) called outside a fiber"))
    }

    @Test("join outside a fiber on an unfinished fiber says it would block the loop")
    func joinOutsideFiber() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            try LoopThread.run {
                let loop = EventLoop()
                let handle = loop.spawn(name: "worker") { 1 }
                _ = try handle.join()
            }
        }
        let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(text.contains("FiberHandle.join() called outside a fiber while fiber #1 is still created"))
    }

    @Test("join from another loop's fiber names both loops and says fibers never migrate")
    func joinFromAnotherLoop() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            final class Slot: @unchecked Sendable { var handle: FiberHandle<Int>? }
            let slot = Slot()
            try LoopThread.run {
                let first = EventLoop()
                slot.handle = first.spawn { () -> Int in
                    Fiber.park(.event)
                    return 1
                }
                _ = try? first.run()
                try LoopThread.run {
                    let second = EventLoop()
                    second.spawn { _ = try slot.handle!.join() }
                    try second.run()
                }
            }
        }
        let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(
            text.contains("fiber #1 belongs to loop #1, but the joining fiber runs on loop #2; fibers never migrate"))
    }

    @Test("cancelling a fiber from another loop's fiber names both loops")
    func cancelFromAnotherLoop() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let group = LoopGroup(loops: 2, name: "pair")
            final class Slot: @unchecked Sendable { var handle: FiberHandle<Void>? }
            let slot = Slot()
            group.loops[0].post {
                slot.handle = group.loops[0].spawn(name: "sleeper") { try? Fiber.sleep(for: .seconds(3600)) }
                group.spawn(on: group.loops[1], name: "intruder") { slot.handle!.cancel() }
            }
            while true { sleep(1) }
        }
        let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(
            text.contains("cancel() for fiber #1 of loop #1 \"pair-0\" called from loop #2 \"pair-1\"'s thread"),
            "\(text)")
    }

    @Test("waking a fiber that is not parked names it and its state")
    func badWake() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            try LoopThread.run {
                let loop = EventLoop()
                loop.spawn(name: "awake") { Fiber.current.wake() }
                try loop.run()
            }
        }
        let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(text.contains("FiberRef.wake(): fiber \"awake\" (#1) running is not parked"))
    }
}
