import Spindle
import SpindleAsync
import SpindleCallbacks
import SpindleFutures
import SpindleLoop
import SpindleTestSupport
import Testing

/// The README's "other styles" example, run as written (with `print` captured, and the loop
/// stopped once all three have printed).
@Suite("README styles example")
struct ReadmeStylesTests {
    @Test("callbacks, futures and async code wait on one loop; async and fibers await each other")
    func styles() throws {
        let printed = try LoopThread.run { () -> [String] in
            let lines = Box<[String]>([])
            let loop = EventLoop()
            func print(_ items: Any...) {
                lines.value.append(items.map { "\($0)" }.joined(separator: " "))
                if lines.value.count == 3 { loop.stop() }
            }

            _ = loop.schedule(after: .milliseconds(10)) { print("callback fired") }
            loop.scheduleFuture(after: .milliseconds(10)).map { 42 }.whenSuccess { print("future says", $0) }
            let printOnLoop = UncheckedPrint(print)
            Task(executorPreference: LoopExecutor.of(loop)) {
                let answer = try await loop.withFiber { () -> Int in  // async code awaits a fiber
                    try Fiber.awaitAsync { try await Task.sleep(for: .milliseconds(10)) }  // a fiber awaits async code
                    return 42
                }
                printOnLoop.body("task says", answer, "on the loop's thread:", loop.isOnLoopThread)
            }
            try loop.run(.untilStopped)
            try loop.run()
            try loop.close()
            return lines.value
        }
        #expect(Set(printed) == ["callback fired", "future says 42", "task says 42 on the loop's thread: true"])
    }
}

/// Lets the Task call the test's `print` (it runs on the loop's thread, like everything else).
struct UncheckedPrint: @unchecked Sendable {
    let body: (Any...) -> Void
    init(_ body: @escaping (Any...) -> Void) { self.body = body }
}
