import Glibc

/// Where the runtime's warnings go: standard error by default, or a handler the program sets
/// (the `SpindleLogging` module sends them to a swift-log `Logger`).
///
/// Warnings are conditions that are not errors of the caller's current call: a loop whose
/// fibers held its thread too long, a loop that could not stop, a handle leaked on release,
/// work posted after close.
public enum SpindleDiagnostics {
    /// One warning.
    public struct Warning: Sendable, CustomStringConvertible {
        /// What kind of trouble it reports.
        public enum Kind: String, Sendable {
            /// A turn of a loop's fibers took longer than the scheduler's `slowTurnThreshold`:
            /// I/O and timers on that loop waited meanwhile.
            case slowTurn = "slow-turn"
            /// A `LoopGroup` loop could not stop by its shutdown deadline.
            case loopDidNotStop = "loop-did-not-stop"
            /// Anything else (a leaked handle, work posted to a closed loop, ...).
            case other
        }

        /// What kind of trouble it reports.
        public let kind: Kind
        /// The warning in words.
        public let message: String
        /// The loop concerned (`loop #2 "spindle-1"`), when there is one.
        public let loop: String?

        public var description: String { message }
    }

    private static let handler = Locked<(@Sendable (Warning) -> Void)?>(nil)

    /// Sends every later warning to `handler` instead of standard error (nil: back to standard
    /// error). The handler runs on the thread that warns, a loop's thread included: it must not
    /// block.
    public static func setWarningHandler(_ handler: (@Sendable (Warning) -> Void)?) {
        self.handler.withLock { $0 = handler }
    }

    /// Reports `warning` to the handler, or to standard error.
    public static func report(_ warning: Warning) {
        if let handler = handler.withLock({ $0 }) { return handler(warning) }
        var line = warning.message.hasPrefix("spindle:") ? warning.message : "spindle: warning: \(warning.message)"
        if !line.hasSuffix("\n") { line += "\n" }
        line.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
    }
}

/// Reports a warning (``SpindleDiagnostics/report(_:)``), by default `spindle: warning:
/// <message>` on standard error in one write(2), so lines from several threads do not
/// interleave.
public func spindleWarning(_ message: String, kind: SpindleDiagnostics.Warning.Kind = .other, loop: String? = nil) {
    let trimmed = message.hasSuffix("\n") ? String(message.dropLast()) : message
    SpindleDiagnostics.report(SpindleDiagnostics.Warning(kind: kind, message: trimmed, loop: loop))
}
