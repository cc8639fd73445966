import Foundation
import Glibc

/// Monotonic nanoseconds.
@inline(__always)
package func nowNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Times `body` once, in nanoseconds.
@inline(__always)
package func measure(_ body: () throws -> Void) rethrows -> Double {
    let start = nowNanoseconds()
    try body()
    return Double(nowNanoseconds() - start)
}

/// When the first progress line was written: each line gives the seconds since.
nonisolated(unsafe) private var progressStart: UInt64 = 0

/// Writes a progress line to stderr, after the seconds since the first one (people watch it;
/// machines read stdout).
package func progress(_ message: String) {
    if progressStart == 0 { progressStart = nowNanoseconds() }
    let seconds = Double(nowNanoseconds() - progressStart) / 1e9
    var line = "[" + String(format: "%6.1fs", seconds) + "] " + message + "\n"
    // What is already printed on stdout goes out first: with both streams in one file (`make
    // bench > log 2>&1`), a progress line must not land in the middle of a table row.
    fflush(nil)
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}
