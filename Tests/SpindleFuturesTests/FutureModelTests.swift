import Spindle
import SpindleFutures
import SpindleTestSupport
import Testing

/// Random graphs of futures checked against a model: each future's outcome is worked out when it
/// is made, from the outcomes its promises will get, and every callback must see exactly that.
/// The graphs mix what the futures layer optimises — links in recursive flatMap chains, futures
/// recycled between steps, a timer's fire future handed out again, the shared succeeded
/// `Future<Void>` — with futures held, observed twice, chained from many places and completed in
/// a random order, so that a future reused while something still sees it shows as a wrong value
/// (or, under `make asan`, as a use after free).
@Suite("Futures against a model")
struct FutureModelTests {
    /// What a future must come to: one outcome, or (for `all`) a failure with one of these codes,
    /// since which failure arrives first depends on the completion order.
    enum Expected: Equatable {
        case exactly(Result<Int, Failure>)
        case failureAmong(Set<Int>)

        func admits(_ outcome: Result<Int, any Error>) -> Bool {
            switch (self, outcome) {
            case (.exactly(.success(let a)), .success(let b)): return a == b
            case (.exactly(.failure(let a)), .failure(let b)): return (b as? Failure) == a
            case (.failureAmong(let codes), .failure(let b)):
                return (b as? Failure).map { codes.contains($0.code) } ?? false
            default: return false
            }
        }

        var value: Int? { if case .exactly(.success(let value)) = self { value } else { nil } }
    }

    /// One graph, built while its loop runs (recycling and the shared future are active then).
    final class Graph {
        let loop: EventLoop
        let timer: LoopTimer
        var random: SeededGenerator
        var nodes: [(future: Future<Int>, expected: Expected)] = []
        var pending: [(promise: Promise<Int>, outcome: Result<Int, Failure>)] = []
        /// Futures the test keeps, to read their results at the end (never observed otherwise).
        var held: [(future: Future<Int>, expected: Expected)] = []
        var everyFuture: [Weak<Future<Int>>] = []
        var observations: [(expected: Expected, seen: Result<Int, any Error>?)] = []
        var calls = 0

        init(loop: EventLoop, seed: UInt64) {
            self.loop = loop
            self.timer = LoopTimer(loop: loop) { _ in }
            self.random = SeededGenerator(seed: seed)
        }

        func chance(_ percent: Int) -> Bool { Int.random(in: 0..<100, using: &random) < percent }
        func anyNode() -> (future: Future<Int>, expected: Expected) { nodes.randomElement(using: &random)! }
        func someOutcome() -> Result<Int, Failure> {
            chance(75)
                ? .success(Int.random(in: 0..<1_000, using: &random))
                : .failure(Failure(code: Int.random(in: 1..<1_000, using: &random)))
        }

        /// A promise to complete later.
        func leaf() -> (future: Future<Int>, expected: Expected) {
            let promise = loop.makePromise(of: Int.self)
            let outcome = someOutcome()
            pending.append((promise, outcome))
            return (promise.futureResult, .exactly(outcome))
        }

        /// A recursive chain of `depth` steps (next turns, timer fires or the shared succeeded
        /// `Future<Void>`) that ends in `end`: the shape whose levels are linked and recycled.
        func chain(_ depth: Int, to end: (future: Future<Int>, expected: Expected)) -> Future<Int> {
            if depth == 0 { return end.future }
            let wait: Future<Void>
            switch Int.random(in: 0..<3, using: &random) {
            case 0: wait = loop.nextTurnFuture()
            case 1 where !timer.isActive: wait = timer.fire(after: .zero)
            default: wait = loop.makeSucceededFuture(())
            }
            let rest = chain(depth - 1, to: end)
            let future = wait.flatMap { rest }
            everyFuture.append(Weak(future))
            if chance(10) { held.append((future, end.expected)) }  // held: never handed out again
            return future
        }

        /// The same, built the way `fanout` builds it: each step's wait is made when the step
        /// before has finished (`step(n) = op().flatMap { step(n - 1) }`), so the chained
        /// futures come from the loop's recycled one. A timer chain has a timer of its own.
        func lazyChain(_ depth: Int, timer: LoopTimer?, to end: (future: Future<Int>, expected: Expected))
            -> Future<Int>
        {
            if depth == 0 {
                timer?.close()
                return end.future
            }
            let wait = timer?.fire(after: .zero) ?? (chance(50) ? loop.nextTurnFuture() : loop.makeSucceededFuture(()))
            let future = wait.flatMap { [unowned self] in self.lazyChain(depth - 1, timer: timer, to: end) }
            everyFuture.append(Weak(future))
            if chance(10) { held.append((future, end.expected)) }
            return future
        }

        func add(_ future: Future<Int>, _ expected: Expected) {
            nodes.append((future, expected))
            everyFuture.append(Weak(future))
            if chance(15) { held.append((future, expected)) }
            // Most futures are observed, some twice (two callbacks on one future).
            for _ in 0..<(chance(80) ? (chance(20) ? 2 : 1) : 0) {
                let index = observations.count
                observations.append((expected, nil))
                future.whenComplete { [unowned self] outcome in
                    self.calls += 1
                    self.observations[index].seen = outcome
                }
            }
        }

        func build(size: Int) {
            let first = leaf()
            add(first.future, first.expected)
            while nodes.count < size {
                let source = anyNode()
                switch Int.random(in: 0..<9, using: &random) {
                case 0:
                    let node = leaf()
                    add(node.future, node.expected)
                case 1:
                    let outcome = someOutcome()
                    switch outcome {
                    case .success(let value): add(loop.makeSucceededFuture(value), .exactly(outcome))
                    case .failure(let error): add(loop.makeFailedFuture(error), .exactly(outcome))
                    }
                case 2:
                    // A transform that throws for some values.
                    let expected: Expected
                    if let value = source.expected.value {
                        expected =
                            value % 7 == 0
                            ? .exactly(.failure(Failure(code: 7_000 + value))) : .exactly(.success(value &* 3 &+ 1))
                    } else {
                        expected = source.expected
                    }
                    add(
                        source.future.map { value in
                            if value % 7 == 0 { throw Failure(code: 7_000 + value) }
                            return value &* 3 &+ 1
                        }, expected)
                case 3:
                    let target = chance(50) ? anyNode() : leaf()
                    add(
                        source.future.flatMap { _ in target.future },
                        source.expected.value == nil ? source.expected : target.expected)
                case 4:
                    let target = chance(50) ? anyNode() : leaf()
                    let expected = source.expected.value != nil ? source.expected : target.expected
                    add(source.future.flatMapError { _ in target.future }, expected)
                case 5:
                    let end = chance(50) ? anyNode() : leaf()
                    let depth = Int.random(in: 1...12, using: &random)
                    switch Int.random(in: 0..<3, using: &random) {
                    case 0: add(chain(depth, to: end), end.expected)
                    case 1: add(lazyChain(depth, timer: nil, to: end), end.expected)
                    default: add(lazyChain(depth, timer: LoopTimer(loop: loop) { _ in }, to: end), end.expected)
                    }
                case 6:
                    let other = anyNode()
                    let expected: Expected
                    switch (source.expected.value, other.expected.value) {
                    case (let a?, let b?): expected = .exactly(.success(a &+ b))
                    case (nil, _): expected = source.expected
                    case (_, nil): expected = other.expected
                    }
                    add(source.future.and(other.future).map { $0.0 &+ $0.1 }, expected)
                case 7:
                    let parts = (0..<Int.random(in: 1...4, using: &random)).map { _ in anyNode() }
                    let values = parts.compactMap(\.expected.value)
                    var codes = Set<Int>()
                    for part in parts {
                        switch part.expected {
                        case .exactly(.failure(let failure)): codes.insert(failure.code)
                        case .failureAmong(let among): codes.formUnion(among)
                        case .exactly(.success): break
                        }
                    }
                    let expected: Expected =
                        values.count == parts.count ? .exactly(.success(values.reduce(0, &+))) : .failureAmong(codes)
                    add(loop.all(parts.map(\.future)).map { $0.reduce(0, &+) }, expected)
                default:
                    // A value-dependent next step, already complete.
                    add(
                        source.future.flatMap { [loop] value in loop.makeSucceededFuture(value &+ 1) },
                        source.expected.value.map { .exactly(.success($0 &+ 1)) } ?? source.expected)
                }
            }
        }

        /// Completes the promises in a random order, a few each loop turn.
        func completeSome() {
            for _ in 0..<min(pending.count, Int.random(in: 1...4, using: &random)) {
                let (promise, outcome) = pending.remove(at: Int.random(in: 0..<pending.count, using: &random))
                promise.complete(outcome)
            }
            if !pending.isEmpty { loop.deferToNextTurn { [self] in completeSome() } }
        }
    }

    @Test(
        "map, flatMap, flatMapError, and, all, recursive chains and timer fires give every callback the outcome the model predicts, once, and leave no future behind"
    )
    func randomGraphs() throws {
        for seed in 1...400 as ClosedRange<UInt64> {
            let (failures, alive) = try LoopThread.withLoop(name: "futures-model") { loop -> ([String], Int) in
                let graph = Graph(loop: loop, seed: seed)
                loop.deferToNextTurn {
                    graph.build(size: 60)
                    graph.nodes = []  // from here on, only what the futures and the test hold
                    graph.completeSome()
                }
                try loop.run()
                var failures: [String] = []
                for (index, observation) in graph.observations.enumerated() {
                    if let seen = observation.seen {
                        if !observation.expected.admits(seen) {
                            failures.append("observer \(index): saw \(seen), expected \(observation.expected)")
                        }
                    } else {
                        failures.append("observer \(index): never called")
                    }
                }
                for (index, kept) in graph.held.enumerated() {
                    if let result = kept.future.result {
                        if !kept.expected.admits(result) {
                            failures.append("held future \(index): reads \(result), expected \(kept.expected)")
                        }
                    } else {
                        failures.append("held future \(index): still pending")
                    }
                }
                if graph.calls != graph.observations.count {
                    failures.append("\(graph.calls) callbacks for \(graph.observations.count) observers")
                }
                graph.timer.close()
                try loop.run()
                graph.held = []
                return (failures, graph.everyFuture.filter { $0.value != nil }.count)
            }
            #expect(failures.isEmpty, "seed \(seed): \(failures.prefix(5))")
            #expect(alive == 0, "seed \(seed): \(alive) futures outlived the loop's run")
        }
    }
}
