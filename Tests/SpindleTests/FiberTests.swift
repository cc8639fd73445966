import Spindle
import SpindleLoop
import Testing

@Suite("Fibers")
struct FiberTests {
    @Test("a spawned fiber runs and join returns its value")
    func spawnAndJoin() throws {
        let value = try withLoop { loop -> Int in
            let worker = loop.spawn(name: "worker") { () -> Int in 41 + 1 }
            let joiner = loop.spawn(name: "joiner") { () -> Int in try worker.join() * 2 }
            try loop.run()
            return try joiner.join()
        }
        #expect(value == 84)
    }

    @Test("join returns results of every shape: large structs, strings, classes")
    func resultShapes() throws {
        struct Wide: Equatable { var a, b, c, d, e: Int }
        final class Ref { let value = 7 }
        let (wide, text, ref) = try withLoop { loop -> (Wide, String, Int) in
            let wide = loop.spawn { Wide(a: 1, b: 2, c: 3, d: 4, e: 5) }
            let text = loop.spawn { String(repeating: "fiber ", count: 20) }
            let ref = loop.spawn { Ref() }
            try loop.run()
            return (try wide.join(), try text.join(), try ref.join().value)
        }
        #expect(wide == Wide(a: 1, b: 2, c: 3, d: 4, e: 5))
        #expect(text == String(repeating: "fiber ", count: 20))
        #expect(ref == 7)
    }

    @Test("a fiber spawned without a name has none, even on the pooled stack of a named one")
    func unnamedAfterNamed() throws {
        let names = try withLoop { loop -> [String] in
            var names: [String] = []
            loop.spawn(name: "first") { names.append(Fiber.current.name) }
            try loop.run()
            loop.spawn { names.append(Fiber.current.name) }  // takes the first one's stack from the pool
            try loop.run()
            #expect(loop.scheduler.counters.stacksPooled == 1)
            return names
        }
        #expect(names == ["first", ""])
    }

    @Test("join rethrows the body's error")
    func joinRethrows() throws {
        struct Boom: Error, Equatable {}
        let outcome = try withLoop { loop -> Bool in
            let failing = loop.spawn { () throws -> Int in throw Boom() }
            try loop.run()
            do {
                _ = try failing.join()
                return false
            } catch let error as Boom {
                return error == Boom()
            }
        }
        #expect(outcome)
    }

    @Test("yield interleaves fibers in FIFO order")
    func yieldInterleaves() throws {
        let trace = try withLoop { loop -> [String] in
            var trace: [String] = []
            for name in ["a", "b", "c"] {
                loop.spawn(name: name) {
                    for step in 0..<3 {
                        trace.append("\(name)\(step)")
                        Fiber.yield()
                    }
                }
            }
            try loop.run()
            return trace
        }
        #expect(trace == ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"])
    }
}
