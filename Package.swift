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
        .executable(name: "spindle-echo", targets: ["spindle-echo"]),
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
            dependencies: ["SpindleLoop", "CBoostContext", "CSpindleSupport"]
        ),
        .executableTarget(
            name: "spindle-echo",
            dependencies: ["Spindle", "SpindleLoop"],
            path: "Examples/spindle-echo"
        ),
        .testTarget(
            name: "SpindleLoopTests",
            dependencies: ["SpindleLoop"]
        ),
        .testTarget(
            name: "SpindleTests",
            dependencies: ["Spindle", "SpindleLoop", "CSpindleSupport"]
        ),
    ]
)
