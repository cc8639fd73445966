import Spindle
import SpindleLoop
import Testing

/// The README's ten-line example, run as written (with `print` captured).
@Suite("README example")
struct ReadmeExampleTests {
    @Test("the ten-line fiber example runs and prints the worker's answer")
    func tenLines() throws {
        let printed = try LoopThread.run { () -> [String] in
            var printed: [String] = []
            func print(_ items: Any...) { printed.append(items.map { "\($0)" }.joined(separator: " ")) }

            let loop = EventLoop()
            let worker = loop.spawn(name: "worker") { () -> Int in
                try Fiber.sleep(for: .milliseconds(10))  // parks the fiber; the loop blocks in epoll
                return 42
            }
            loop.spawn(name: "main") { print("worker says", try worker.join()) }
            try loop.run()  // returns when no work is left; throws LoopError.deadlock if fibers are stuck
            try loop.close()  // refuses, naming them, while handles or suspended fibers remain
            return printed
        }
        #expect(printed == ["worker says 42"])
    }
}
