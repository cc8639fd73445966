import Logging
import SpindleLoop

/// Spindle's warnings as swift-log records.
///
/// ```swift
/// import Logging
/// import SpindleLogging
///
/// SpindleLogging.bootstrap(Logger(label: "my-service.spindle"))
/// ```
///
/// Every runtime warning — a turn in which a loop's fibers held its thread past the
/// scheduler's `slowTurnThreshold`, a loop that could not stop by its shutdown deadline, a
/// handle leaked on release — is then logged at `warning` level, with the kind of warning in the
/// `spindle.warning` metadata key and the loop, when there is one, in `spindle.loop`, instead of
/// going to standard error.
public enum SpindleLogging {
    /// Sends every later runtime warning to `logger` (it is copied: later changes to the
    /// caller's logger do not apply). Warnings are logged on the thread that raises them, a
    /// loop's thread included, so the logger's handler must not block.
    public static func bootstrap(_ logger: Logger) {
        SpindleDiagnostics.setWarningHandler { warning in
            var metadata: Logger.Metadata = ["spindle.warning": .string(warning.kind.rawValue)]
            if let loop = warning.loop { metadata["spindle.loop"] = .string(loop) }
            logger.warning("\(warning.message)", metadata: metadata)
        }
    }

    /// Sends warnings to standard error again.
    public static func reset() {
        SpindleDiagnostics.setWarningHandler(nil)
    }
}
