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
        .executable(name: "spindle-echo", targets: ["spindle-echo"]),
        .executable(name: "spindle-http", targets: ["spindle-http"]),
        .executable(name: "spindle-doctor", targets: ["spindle-doctor"]),
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
        .target(
            name: "SpindleLoop",
            dependencies: ["CLibUV", "CSpindleSupport"]
        ),
        .target(
            name: "Spindle",
            dependencies: ["SpindleLoop", "CLibUV", "CBoostContext", "CSpindleSupport"]
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
            dependencies: ["Spindle", "SpindleLoop"]
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
            dependencies: ["SpindleCallbacks", "SpindleTestSupport", "CLibUV"]
        ),
        .testTarget(
            name: "SpindleFuturesTests",
            dependencies: ["SpindleFutures", "Spindle", "SpindleTestSupport", "CLibUV"]
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
            name: "SpindleTests",
            dependencies: ["Spindle", "SpindleLoop", "SpindleTestSupport", "CSpindleSupport"]
        ),
    ]
)
