// swift-tools-version:6.1
//
// Spindle: a libuv + Boost.Context coroutine runtime for Swift on Linux.
// The root package needs only libuv, Boost.Context and the Swift toolchain; benchmarks, peers and
// tools live in the nested Benchmarks/ package.
import PackageDescription

let package = Package(
    name: "Spindle",
    products: [
        .library(name: "Spindle", targets: ["Spindle"]),
        .library(name: "SpindleLoop", targets: ["SpindleLoop"]),
        .library(name: "SpindleCallbacks", targets: ["SpindleCallbacks"]),
        .library(name: "SpindleFutures", targets: ["SpindleFutures"]),
        .library(name: "SpindleAsync", targets: ["SpindleAsync"]),
        .library(name: "SpindleTrace", targets: ["SpindleTrace"]),
        // Opt-in integrations with the Swift server ecosystem, each a product of its own: a
        // service that links only the products above builds none of their dependencies.
        .library(name: "SpindleLogging", targets: ["SpindleLogging"]),
        .library(name: "SpindleMetrics", targets: ["SpindleMetrics"]),
        .library(name: "SpindleServiceLifecycle", targets: ["SpindleServiceLifecycle"]),
        .executable(name: "spindle-echo", targets: ["spindle-echo"]),
        .executable(name: "spindle-http", targets: ["spindle-http"]),
        .executable(name: "spindle-doctor", targets: ["spindle-doctor"]),
    ],
    dependencies: [
        // Only for the integration products (SpindleLogging, SpindleMetrics,
        // SpindleServiceLifecycle); Tools/build/check-core-dependencies.sh proves that the core
        // products reach none of them.
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CLibUV",
            path: "CSupport/CLibUV",
            pkgConfig: "libuv",
            providers: [.apt(["libuv1-dev"])]
        ),
        .systemLibrary(
            name: "CBoostContext",
            path: "CSupport/CBoostContext",
            providers: [.apt(["libboost-context-dev"])]
        ),
        .target(
            name: "CSpindleSupport",
            path: "CSupport/CSpindleSupport"
        ),
        // The system call counter (ptrace) behind `spindle-doctor run`.
        .target(
            name: "CSpindleSyscalls",
            path: "CSupport/CSpindleSyscalls"
        ),
        .target(
            name: "SpindleLoop",
            dependencies: ["CLibUV", "CSpindleSupport"]
        ),
        .target(
            name: "Spindle",
            dependencies: ["SpindleLoop", "CBoostContext", "CSpindleSupport"]
        ),
        .target(
            name: "SpindleCallbacks",
            dependencies: ["SpindleLoop"]
        ),
        .target(
            name: "SpindleFutures",
            dependencies: ["Spindle", "SpindleCallbacks", "SpindleLoop"]
        ),
        .target(
            name: "SpindleAsync",
            dependencies: ["Spindle", "SpindleLoop"]
        ),
        // Counters, the doctor (and, to come, the trace recorder) over the fiber scheduler.
        .target(
            name: "SpindleTrace",
            dependencies: ["Spindle", "SpindleLoop", "CSpindleSyscalls"]
        ),
        // swift-log: the runtime's warnings (slow turns, loops that could not stop) as log records.
        .target(
            name: "SpindleLogging",
            dependencies: ["SpindleLoop", .product(name: "Logging", package: "swift-log")]
        ),
        // swift-metrics: each loop's scheduler counters and its lag, for any metrics backend.
        .target(
            name: "SpindleMetrics",
            dependencies: ["Spindle", "SpindleLoop", .product(name: "CoreMetrics", package: "swift-metrics")]
        ),
        // swift-service-lifecycle: a LoopGroup as a Service, shut down gracefully on SIGTERM.
        .target(
            name: "SpindleServiceLifecycle",
            dependencies: [
                "Spindle", "SpindleLoop",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Example services: real programs on fibers, run by the tests as separate processes.
        .target(
            name: "ExampleSupport",
            dependencies: ["Spindle", "SpindleLoop"],
            path: "Examples/ExampleSupport"
        ),
        .executableTarget(
            name: "spindle-echo",
            dependencies: ["ExampleSupport", "Spindle", "SpindleLoop"],
            path: "Examples/spindle-echo"
        ),
        .executableTarget(
            name: "spindle-http",
            dependencies: ["ExampleSupport", "Spindle", "SpindleLoop"],
            path: "Examples/spindle-http"
        ),
        // The doctor for a program run with SPINDLE_TRACE: reads the trace, names the pathology.
        .executableTarget(
            name: "spindle-doctor",
            dependencies: ["SpindleTrace"],
            path: "Tools/spindle-doctor"
        ),
        // Busy-polling or parked fibers for spindle-doctor (its test runs the two on it).
        .executableTarget(
            name: "spindle-doctor-demo",
            dependencies: ["Spindle", "SpindleLoop"],
            path: "Examples/spindle-doctor-demo"
        ),
        // The doctor's second gallery: ten mistakes people make with fibers, and a healthy
        // program, each run with SPINDLE_TRACE by DoctorGalleryTests.
        .executableTarget(
            name: "spindle-mistakes",
            dependencies: ["Spindle", "SpindleLoop", "SpindleAsync"],
            path: "Examples/spindle-mistakes"
        ),
        // Parked fibers for Tools/gdb/spindle.py (its test runs gdb on it).
        .executableTarget(
            name: "spindle-gdb-demo",
            dependencies: ["Spindle", "SpindleLoop"],
            path: "Examples/spindle-gdb-demo"
        ),
        .testTarget(
            name: "SpindleLoopTests",
            dependencies: ["SpindleLoop"]
        ),
        // Helpers the test targets share (a target of its own, linked only into tests).
        .target(
            name: "SpindleTestSupport",
            dependencies: ["SpindleLoop"],
            path: "Tests/SpindleTestSupport"
        ),
        .testTarget(
            name: "SpindleCallbacksTests",
            dependencies: ["SpindleCallbacks", "SpindleTestSupport"]
        ),
        .testTarget(
            name: "SpindleFuturesTests",
            dependencies: ["SpindleFutures", "Spindle", "SpindleTestSupport"]
        ),
        .testTarget(
            name: "SpindleAsyncTests",
            dependencies: ["SpindleAsync", "Spindle", "SpindleLoop", "SpindleTestSupport"]
        ),
        .testTarget(
            name: "SpindleTraceTests",
            dependencies: ["SpindleTrace", "Spindle", "SpindleLoop", "SpindleTestSupport"]
        ),
        .testTarget(
            name: "SpindleIntegrationTests",
            dependencies: [
                "SpindleLogging", "SpindleMetrics", "SpindleServiceLifecycle", "Spindle", "SpindleLoop",
                "SpindleTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "SpindleTests",
            dependencies: ["Spindle", "SpindleLoop", "SpindleTestSupport", "CSpindleSupport"]
        ),
    ]
)
