// swift-tools-version:6.1
//
// spindle-bench and everything heavy (peers, regression targets, argument parsing, histograms)
// lives in this nested package, so a service that links Spindle pulls in none of it.
import PackageDescription

let package = Package(
    name: "SpindleBenchmarks",
    products: [
        .executable(name: "spindle-bench", targets: ["spindle-bench"]),
        .executable(name: "spindle-bench-allocs", targets: ["spindle-bench-allocs"]),
        .executable(name: "spindle-echo-c", targets: ["spindle-echo-c"]),
        .executable(name: "spindle-echo-load", targets: ["spindle-echo-load"]),
        .executable(name: "spindle-bench-nio", targets: ["spindle-bench-nio"]),
    ],
    dependencies: [
        .package(name: "Spindle", path: ".."),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/ordo-one/malloc-interposer", from: "1.6.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        // Regression guard (`make bench-check`); only its malloc interposer trait: the ARC
        // runtime interposer is not needed and not vendored here.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // C floors and pitfalls: raw fcontext, ucontext, thread handoff, polling the loop per switch.
        .target(
            name: "CBenchKernels",
            linkerSettings: [.linkedLibrary("boost_context"), .linkedLibrary("uv")]
        ),
        // The `echo` workload's baseline server and its load generator: C on libuv, each run
        // as a process of its own.
        .executableTarget(
            name: "spindle-echo-c",
            linkerSettings: [.linkedLibrary("uv")]
        ),
        .executableTarget(
            name: "spindle-echo-load",
            linkerSettings: [.linkedLibrary("uv")]
        ),
        // Workloads and report formats, shared by the two executables.
        .target(
            name: "BenchKit",
            dependencies: [
                "CBenchKernels",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Spindle", package: "Spindle"),
                .product(name: "SpindleCallbacks", package: "Spindle"),
                .product(name: "SpindleFutures", package: "Spindle"),
                .product(name: "SpindleAsync", package: "Spindle"),
                .product(name: "SpindleLoop", package: "Spindle"),
                .product(name: "SpindleTrace", package: "Spindle"),
            ]
        ),
        // The CLI. It does not link the malloc interposer, so timed runs use plain malloc.
        .executableTarget(
            name: "spindle-bench",
            dependencies: [
                "BenchKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The SwiftNIO peer (fanout in EventLoopFuture style, NIO's echo server): a process of
        // its own, so NIO's threads and allocator never share the measured process.
        .executableTarget(
            name: "spindle-bench-nio",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // Hot-path regression benchmarks with committed thresholds (Thresholds/): run by
        // `make bench-check` through `swift package benchmark thresholds check`.
        .executableTarget(
            name: "SpindleRegression",
            dependencies: [
                "BenchKit",
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "Spindle", package: "Spindle"),
                .product(name: "SpindleLoop", package: "Spindle"),
            ],
            path: "Benchmarks/SpindleRegression",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // Counts allocations of one workload run with ordo-one's malloc interposer; spindle-bench
        // runs it as a child process.
        .executableTarget(
            name: "spindle-bench-allocs",
            dependencies: [
                "BenchKit",
                .product(name: "MallocInterposerSwift", package: "malloc-interposer"),
            ]
        ),
    ]
)
