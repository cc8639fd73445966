import CSpindleSupport
import Glibc
import SpindleLoop

// The trace recorder's storage and its Chrome/Perfetto JSON export. The hooks: the drain reads
// "tracing?" once per loop turn and records each resume and each switch-out (yield, park or
// finish, from the state the fiber left) behind a test of that register; spawn and wake each
// have one C inline call (spindle_trace_record: a load and a not-taken branch when off). The
// SPINDLE_TRACE environment variable turns tracing on for every loop from its start and writes
// the file when the loop closes. Why the recorder is here and its reader in SpindleTrace:
// docs/layout.md, "Why the layers are cut where they are".

extension Scheduler {
    /// Whether this scheduler records trace events.
    package var isTracing: Bool { core.pointee.trace != nil }

    /// The name a traced fiber was spawned with ("" when none, or not known).
    package func tracedName(of id: UInt64) -> String {
        if let name = traceNames[id] { return name }
        return liveFibers().first { $0.pointee.id == id }.map(Self.name(of:)) ?? ""
    }

    /// Starts recording into a ring of `capacity` events (rounded up to a power of two; the
    /// newest overwrite the oldest). Restarting drops what was recorded.
    package func startTracing(capacity: Int) {
        stopTracing()
        var size = 1
        while size < max(capacity, 2) { size <<= 1 }
        let trace = UnsafeMutablePointer<spindle_trace>.allocate(capacity: 1)
        let events = UnsafeMutablePointer<spindle_trace_event_t>.allocate(capacity: size)
        let startTicks = spindle_trace_clock()
        trace.initialize(
            to: spindle_trace(
                events: events, mask: UInt64(size - 1), count: 0, start_ticks: startTicks,
                start_ns: spindle_monotonic_ns(), last_ticks: startTicks))
        traceNames = [:]
        for fiber in liveFibers() { traceNames[fiber.pointee.id] = Self.name(of: fiber) }
        core.pointee.trace = trace
    }

    /// Stops recording and frees the ring.
    package func stopTracing() {
        guard let trace = core.pointee.trace else { return }
        core.pointee.trace = nil
        traceNames = [:]
        trace.pointee.events.deallocate()
        trace.deallocate()
    }

    /// The recorded events, oldest first, their clock turned into CLOCK_MONOTONIC nanoseconds,
    /// and how many older ones the ring overwrote.
    package func traceEvents() -> (events: [spindle_trace_event_t], dropped: UInt64) {
        guard let trace = core.pointee.trace else { return ([], 0) }
        spindle_trace_fence()
        let capacity = trace.pointee.mask + 1
        let count = trace.pointee.count
        let first = count > capacity ? count - capacity : 0
        // The clock's rate, from the two pairs of readings (start and now).
        let (ticksNow, nsNow) = (spindle_trace_clock(), spindle_monotonic_ns())
        let (ticks0, ns0) = (trace.pointee.start_ticks, trace.pointee.start_ns)
        let rate = ticksNow > ticks0 && nsNow > ns0 ? Double(nsNow - ns0) / Double(ticksNow - ticks0) : 1
        var events: [spindle_trace_event_t] = []
        events.reserveCapacity(Int(count - first))
        for index in first..<count {
            var event = trace.pointee.events[Int(index & trace.pointee.mask)]
            let elapsed = event.ticks >= ticks0 ? Double(event.ticks - ticks0) * rate : 0
            event.ticks = ns0 + UInt64(elapsed)
            events.append(event)
        }
        return (events, first)
    }

    /// Writes the recorded events as Chrome trace JSON (it opens in ui.perfetto.dev): each
    /// fiber's running slices on the loop thread's track, ended by a yield, a park (with its
    /// reason) or its finish; spawns, wakes, I/O completions and loop turns as instants.
    package func writeTrace(to path: String) throws(UVError) {
        guard let file = fopen(path, "w") else {
            throw UVError(code: -errno, operation: "opening the trace file \(path)")
        }
        defer { fclose(file) }
        let (events, dropped) = traceEvents()
        // Names as the fibers were spawned (finished fibers are gone from the live list).
        var names = traceNames
        for fiber in liveFibers() { names[fiber.pointee.id] = Self.name(of: fiber) }
        func label(_ id: UInt64) -> String {
            let name = names[id] ?? ""
            return name.isEmpty ? "fiber #\(id)" : "fiber #\(id) \(jsonEscaped(name))"
        }
        let pid = getpid()
        let tid = Int(core.pointee.owner_thread % 1_000_000_007)
        var open: UInt64? = nil  // the fiber whose slice is open
        fputs(
            "{\"displayTimeUnit\":\"ns\",\"otherData\":{\"droppedEvents\":\(dropped),\"spindle\":\(traceSummary())},"
                + "\"traceEvents\":[\n", file)
        fputs(
            "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":\(pid),\"tid\":\(tid),\"args\":{\"name\":\"loop\"}}", file)
        for event in events {
            let ts = microseconds(event.ticks)
            var line: String?
            switch Int32(event.kind) {
            case Int32(SPINDLE_TRACE_RESUME):
                open = event.fiber
                line = "{\"name\":\"\(label(event.fiber))\",\"ph\":\"B\",\"ts\":\(ts),\"pid\":\(pid),\"tid\":\(tid)}"
            case Int32(SPINDLE_TRACE_YIELD), Int32(SPINDLE_TRACE_PARK), Int32(SPINDLE_TRACE_FINISH):
                guard open == event.fiber else { continue }  // its start was overwritten
                open = nil
                let end =
                    event.kind == UInt32(SPINDLE_TRACE_YIELD)
                    ? "yield"
                    : event.kind == UInt32(SPINDLE_TRACE_FINISH)
                        ? "finish"
                        : "park: \(Fiber.ParkReason(rawValue: UInt8(truncatingIfNeeded: event.detail))?.description ?? "?")"
                line = "{\"ph\":\"E\",\"ts\":\(ts),\"pid\":\(pid),\"tid\":\(tid),\"args\":{\"end\":\"\(end)\"}}"
            case Int32(SPINDLE_TRACE_SPAWN), Int32(SPINDLE_TRACE_WAKE):
                let what = event.kind == UInt32(SPINDLE_TRACE_SPAWN) ? "spawn" : "wake"
                line =
                    "{\"name\":\"\(what) \(label(event.fiber))\",\"ph\":\"i\",\"s\":\"t\",\"ts\":\(ts),\"pid\":\(pid),\"tid\":\(tid)}"
            case Int32(SPINDLE_TRACE_TURN):
                line = "{\"name\":\"loop turn\",\"ph\":\"i\",\"s\":\"t\",\"ts\":\(ts),\"pid\":\(pid),\"tid\":\(tid)}"
            case Int32(SPINDLE_TRACE_IO):
                let then = event.detail == 1 ? "runs it at once" : "queues it"
                line =
                    "{\"name\":\"I/O completion for \(label(event.fiber))\",\"ph\":\"i\",\"s\":\"t\",\"ts\":\(ts),"
                    + "\"pid\":\(pid),\"tid\":\(tid),\"args\":{\"then\":\"\(then)\"}}"
            default:
                continue
            }
            if let line { fputs(",\n" + line, file) }
        }
        fputs("\n]}\n", file)
        if ferror(file) != 0 { throw UVError(code: -EIO, operation: "writing the trace file \(path)") }
    }

    /// The loop's totals since it started, for a trace file's `otherData.spindle`: what the
    /// doctor reads besides the events (`Doctor.TraceFile`), since the ring keeps only the newest
    /// events. This scheduler's and loop's counters, and — when written on the loop's own thread,
    /// as at loop close — that thread's resource usage (getrusage RUSAGE_THREAD,
    /// /proc/thread-self/io), so other threads of the program do not blur it.
    func traceSummary() -> String {
        let counters = self.counters
        var fields: [(String, String)] = [
            ("spawns", "\(counters.spawns)"), ("finishes", "\(counters.finishes)"),
            ("switches", "\(counters.switches)"), ("yields", "\(counters.yields)"), ("parks", "\(counters.parks)"),
            ("wakes", "\(counters.wakes)"), ("stacksCold", "\(counters.stacksCold)"),
            ("stacksPooled", "\(counters.stacksPooled)"), ("stacksDiscarded", "\(stacks.discardedCount)"),
            ("loopTurns", "\(counters.loopTurns)"),
            ("runQueueHighWater", "\(counters.runQueueHighWater)"),
            ("fiberNanoseconds", "\(counters.fiberNanoseconds)"), ("runningNanoseconds", "\(loop.runningNanoseconds)"),
            ("idleNanoseconds", "\(loop.idleNanoseconds)"),
            ("zeroSleeps", "\(counters.zeroSleeps)"), ("channelsMade", "\(counters.channelsMade)"),
            ("stacksColdBesidePooled", "\(stacks.coldTakesBesidePooled)"),
            ("stackSizesMapped", "\(stacks.sizesMapped.count)"), ("postedWorkRun", "\(loop.postedWorkRun)"),
        ]
        // Parks by what they waited for, under "parks:" and the reason's name.
        fields += counters.parksByReason.sorted { $0.key.rawValue < $1.key.rawValue }.map {
            ("parks:\($0.key)", "\($0.value)")
        }
        if spindle_thread_id_or_zero() == core.pointee.owner_thread_id {
            var usage = rusage()
            getrusage(1, &usage)  // RUSAGE_THREAD (Linux; a GNU name Swift's Glibc does not import)
            func microseconds(_ time: timeval) -> Int { time.tv_sec * 1_000_000 + time.tv_usec }
            fields += [
                ("userMicroseconds", "\(microseconds(usage.ru_utime))"),
                ("systemMicroseconds", "\(microseconds(usage.ru_stime))"), ("minorFaults", "\(usage.ru_minflt)"),
                ("threadSwitches", "\(usage.ru_nvcsw + usage.ru_nivcsw)"), ("preemptions", "\(usage.ru_nivcsw)"),
            ]
            if let syscalls = Self.readWriteSyscalls(of: "/proc/thread-self/io") {
                fields.append(("ioSyscalls", "\(syscalls)"))
            }
            // The other threads' context switches (finished threads included): the process's
            // totals less this thread's.
            var process = rusage()
            getrusage(RUSAGE_SELF.rawValue, &process)
            fields += [
                ("otherThreadsVoluntarySwitches", "\(max(0, process.ru_nvcsw - usage.ru_nvcsw))"),
                ("loopKernelThread", "\(spindle_kernel_thread_id())"),
            ]
        }
        if let mark = stackHighWater {
            fields += [
                ("stackUsedBytes", "\(mark.usedBytes)"), ("stackBytes", "\(mark.stackBytes)"),
                ("stackFiber", "\"\(jsonEscaped(mark.fiber))\""),
            ]
        }
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }

    /// read + write system calls so far (syscr + syscw) of this process (/proc/self/io) or of
    /// the calling thread (/proc/thread-self/io), or nil where the file cannot be read.
    package static func readWriteSyscalls(of path: String = "/proc/self/io") -> Int? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var total = 0
        var line = [CChar](repeating: 0, count: 128)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = line.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            for key in ["syscr: ", "syscw: "] where text.hasPrefix(key) {
                total += Int(text.dropFirst(key.count).filter(\.isNumber)) ?? 0
            }
        }
        return total
    }

    /// SPINDLE_TRACE=path: trace from the start; written when the loop closes (the first loop
    /// of the process to close writes `path`, later ones `path.2`, `path.3`, ...).
    func startTracingFromEnvironment() {
        guard let path = getenv("SPINDLE_TRACE").map({ String(cString: $0) }), !path.isEmpty else { return }
        startTracing(capacity: 1 << 20)
        environmentTracePath = path
        // A program may end without closing its loop: write at exit what is still unwritten.
        spindle_trace_at_exit_once(writeEnvironmentTracesAtExit)
    }

    func writeEnvironmentTrace() {
        guard let path = environmentTracePath else { return }
        environmentTracePath = nil
        let index = spindle_trace_file_index()
        let target = index == 0 ? path : "\(path).\(index + 1)"
        do {
            try writeTrace(to: target)
            spindleWarning("trace written to \(target) (SPINDLE_TRACE); open it in ui.perfetto.dev")
        } catch {
            spindleWarning("could not write the trace to \(target) (SPINDLE_TRACE): \(error)")
        }
        stopTracing()
    }
}

/// At exit: every registered scheduler still holding a SPINDLE_TRACE trace writes it.
private let writeEnvironmentTracesAtExit: @convention(c) () -> Void = {
    var sched = spindle_sched_registry_first()
    while let core = sched {
        if let owner = core.pointee.owner {
            Unmanaged<Scheduler>.fromOpaque(owner).takeUnretainedValue().writeEnvironmentTrace()
        }
        sched = core.pointee.registry_next
    }
}

/// Nanoseconds as the microseconds Chrome's trace format wants (three decimals, no Foundation).
private func microseconds(_ ns: UInt64) -> String {
    let fraction = ns % 1_000
    return "\(ns / 1_000).\(fraction < 10 ? "00" : fraction < 100 ? "0" : "")\(fraction)"
}

private func jsonEscaped(_ text: String) -> String {
    var out = ""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case _ where scalar.value < 0x20: out += "?"
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out
}
