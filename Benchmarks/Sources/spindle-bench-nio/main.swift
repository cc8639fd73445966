// The SwiftNIO peer: the fanout workload in EventLoopFuture style on one NIO event loop, and
// NIO's echo server for the echo workload. A process of its own, run by spindle-bench.
//
//   spindle-bench-nio fanout yield|timer OPS STEPS TRIALS   one JSON line per trial: {"ms": …, "completed": …}
//   spindle-bench-nio serve-echo [--threads N]              prints "listening on 127.0.0.1:PORT"; SIGTERM stops it
import Foundation
import NIOCore
import NIOPosix

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data((message + "\n").utf8))
    exit(2)
}

/// Each step is one future: `yield` completes on the loop's next task (`submit`), `timer` is a
/// zero-delay scheduled task; steps chain with flatMap, as future code does.
func fanout(variant: String, ops: Int, steps: Int, trials: Int) throws {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    defer { try? group.syncShutdownGracefully() }
    let loop = group.next()
    for _ in 0..<trials {
        let result = try loop.submit { () -> EventLoopFuture<(Double, Int, Int)> in
            let start = DispatchTime.now().uptimeNanoseconds
            // Touched only on the loop's thread, as in the Spindle styles (no check on each access).
            nonisolated(unsafe) var completed = 0, taken = 0
            @Sendable func step(_ remaining: Int) -> EventLoopFuture<Void> {
                guard remaining > 0 else { return loop.makeSucceededVoidFuture() }
                let wait = variant == "yield" ? loop.submit {} : loop.scheduleTask(in: .zero) {}.futureResult
                return wait.flatMap {
                    taken += 1
                    return step(remaining - 1)
                }
            }
            var all: [EventLoopFuture<Void>] = []
            all.reserveCapacity(ops)
            for _ in 0..<ops { all.append(step(steps).map { completed += 1 }) }
            return EventLoopFuture.andAllSucceed(all, on: loop).map {
                (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6, completed, taken)
            }
        }.flatMap { $0 }.wait()
        guard result.2 == ops * steps else { fail("took \(result.2) steps, expected \(ops * steps)") }
        print("{\"ms\": \(result.0), \"completed\": \(result.1)}")
    }
}

/// NIO's echo server: a handler that writes back what it reads, on `threads` event loops.
final class EchoHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) { context.write(data, promise: nil) }
    func channelReadComplete(context: ChannelHandlerContext) { context.flush() }
    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
}

func serveEcho(threads: Int) throws {
    // SIGTERM and SIGINT are blocked before any thread exists (threads inherit the mask) and
    // taken with sigwait below. A dispatch signal source over SIG_IGN never fired here: the
    // server outlived every SIGTERM and spindle-bench killed it after its 5 s grace period.
    var stopSignals = sigset_t()
    sigemptyset(&stopSignals)
    sigaddset(&stopSignals, SIGTERM)
    sigaddset(&stopSignals, SIGINT)
    pthread_sigmask(SIG_BLOCK, &stopSignals, nil)
    let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
    let bootstrap = ServerBootstrap(group: group)
        .serverChannelOption(.backlog, value: 4096)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
        .childChannelInitializer { channel in channel.pipeline.addHandler(EchoHandler()) }
    let channel = try bootstrap.bind(host: "127.0.0.1", port: 0).wait()
    FileHandle.standardOutput.write(Data("listening on 127.0.0.1:\(channel.localAddress!.port!)\n".utf8))
    var received: Int32 = 0
    sigwait(&stopSignals, &received)
    try channel.close().wait()
    try group.syncShutdownGracefully()
}

let arguments = CommandLine.arguments.dropFirst()
switch arguments.first {
case "fanout":
    let rest = Array(arguments.dropFirst())
    guard rest.count == 4, ["yield", "timer"].contains(rest[0]), let ops = Int(rest[1]), let steps = Int(rest[2]),
        let trials = Int(rest[3])
    else { fail("usage: spindle-bench-nio fanout yield|timer OPS STEPS TRIALS") }
    try fanout(variant: rest[0], ops: ops, steps: steps, trials: trials)
case "serve-echo":
    let rest = Array(arguments.dropFirst())
    var threads = 1
    if !rest.isEmpty {
        guard rest.count == 2, rest[0] == "--threads", let count = Int(rest[1]), count >= 1 else {
            fail("usage: spindle-bench-nio serve-echo [--threads N]")
        }
        threads = count
    }
    try serveEcho(threads: threads)
default:
    fail("usage: spindle-bench-nio fanout yield|timer OPS STEPS TRIALS | serve-echo [--threads N]")
}
