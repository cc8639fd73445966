import Spindle
import SpindleLoop

/// The workload runs whose allocations `spindle-bench-allocs` counts, by name.
package enum AllocationProbe {
    /// One run of `workload` on `executor`; `size` is round trips for `switch` (ignored by
    /// `fanout`, whose size is fixed).
    package static func run(
        workload: String, variant: String, executor: String, size: UInt64, state: FanoutWorkload.State
    ) throws {
        switch workload {
        case SwitchWorkload.name:
            _ = try SwitchWorkload.run(executor, variant: variant, rounds: size, loop: state.loop)
        case FanoutWorkload.name:
            _ = try FanoutWorkload.run(executor, variant: variant, state: state)
        case ChannelWorkload.name:
            _ = try ChannelWorkload.run(executor, variant: variant, loop: state.loop)
        case SpawnWorkload.name:
            _ = try SpawnWorkload.run(executor, variant: variant, loop: state.loop)
        default:
            throw BenchError.unknownWorkload(workload)
        }
    }
}
