package enum BenchError: Error, CustomStringConvertible {
    case unknownExecutor(String, workload: String)
    case unknownWorkload(String)
    case incorrect(String)
    case tool(String)

    package var description: String {
        switch self {
        case .unknownExecutor(let executor, let workload):
            return "unknown executor '\(executor)' for workload '\(workload)' (see `spindle-bench list`)"
        case .unknownWorkload(let workload):
            return "unknown workload '\(workload)' (see `spindle-bench list`)"
        case .incorrect(let what): return "incorrect result: \(what)"
        case .tool(let what): return what
        }
    }
}
