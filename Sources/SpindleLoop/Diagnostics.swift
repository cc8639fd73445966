import Glibc

/// Writes `spindle: warning: <message>` to standard error with one write(2), so lines from
/// several threads do not interleave. For conditions that are not errors of the caller's
/// current call (a handle leaked on release, work posted after close).
public func spindleWarning(_ message: String) {
    var line = message.hasPrefix("spindle:") ? message : "spindle: warning: \(message)"
    if !line.hasSuffix("\n") { line += "\n" }
    line.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
}
