/// Misuse or an end state of an ``EventLoop`` that is reported as an error rather than a crash.
public enum LoopError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The loop ran out of work while some of its users were still waiting for something that can
    /// no longer happen. Each string names one waiter, for example
    /// `fiber "consumer" (#3) parked on channel receive`.
    case deadlock(waiting: [String])
    /// ``EventLoop/close()`` found work still open: handles not closed, fibers still suspended.
    /// Each string names one item. The loop stays open and usable.
    case stillOpen([String])
    /// The loop was already closed.
    case closed
    /// `run()` was called while the loop was already running (a reentrant call).
    case alreadyRunning

    public var description: String {
        switch self {
        case .deadlock(let waiting):
            return "deadlock: the loop has nothing left that could wake \(waiting.count) waiter(s):\n"
                + waiting.map { "  - \($0)" }.joined(separator: "\n")
        case .stillOpen(let items):
            return "cannot close the loop: \(items.count) item(s) still open:\n"
                + items.map { "  - \($0)" }.joined(separator: "\n")
        case .closed:
            return "the event loop is closed"
        case .alreadyRunning:
            return "EventLoop.run() called while the loop is already running (reentrant run)"
        }
    }
}
