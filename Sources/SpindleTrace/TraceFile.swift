import Glibc
import Spindle
import SpindleLoop

extension Doctor {
    /// A trace file a Spindle program wrote — run with `SPINDLE_TRACE=path`, or through
    /// ``Trace/write(_:to:)`` — read back for the doctor: the loop's totals since it started (its
    /// counters and its thread's resource usage, which the writer keeps in `otherData.spindle`)
    /// and the fiber slices of the events the ring still held.
    ///
    /// This is the doctor for a program whose code you do not change: run it with
    /// `SPINDLE_TRACE=run.json`, then `spindle-doctor run.json` (or
    /// ``report(operations:waitsPerOperation:includingResourceUsage:syscalls:)``).
    public struct TraceFile: Sendable {
        /// The loop's totals, by the names the writer gives them (`spawns`, `yields`, `parks`, ...).
        public let totals: [String: Double]
        /// The fiber that used the most of its stack, when the program painted stacks.
        public let deepestStackFiber: String?
        /// Events in the file, and how many older ones the ring had overwritten before it was written.
        public let eventCount: Int
        /// Events the ring overwrote before the file was written (the oldest ones): a trace of
        /// the run's last stretch, not all of it, when this is not 0.
        public let droppedEvents: Int
        /// Fiber slices (resume to yield, park or finish) longer than ``Doctor/longSlice``, and the
        /// longest slice with the fiber it ran.
        public let longSlices: Int
        /// The longest slice in the file (microseconds) and its fiber; nil when no slice ended.
        public let longestSlice: (microseconds: Double, fiber: String)?

        /// Reads the trace at `path`. Throws ``TraceFileError`` when the file cannot be read or is
        /// not a trace a Spindle program wrote.
        public init(path: String) throws(TraceFileError) {
            guard let file = fopen(path, "r") else {
                throw TraceFileError(path: path, reason: UVError(code: -errno).description)
            }
            defer { fclose(file) }
            // Line by line: a trace of a million events is over 100 MB.
            var buffer: UnsafeMutablePointer<CChar>?
            var capacity = 0
            defer { free(buffer) }
            func nextLine() -> String? {
                getline(&buffer, &capacity, file) >= 0 ? String(cString: buffer!) : nil
            }

            guard let header = nextLine(), header.hasPrefix("{\"displayTimeUnit\""),
                let summary = Self.object(after: "\"spindle\":", in: header[...])
            else {
                if ferror(file) != 0 { throw TraceFileError(path: path, reason: UVError(code: -errno).description) }
                throw TraceFileError(
                    path: path,
                    reason: "not a trace written by Spindle (SPINDLE_TRACE or Trace.write): its first line has no "
                        + "otherData.spindle totals")
            }
            var totals: [String: Double] = [:]
            var deepest: String?
            for (key, value) in summary {
                if let number = Double(value) { totals[key] = number } else if key == "stackFiber" { deepest = value }
            }
            for key in ["spawns", "finishes", "switches", "yields", "parks"] where totals[key] == nil {
                throw TraceFileError(path: path, reason: "its otherData.spindle totals have no \(key)")
            }
            self.totals = totals
            deepestStackFiber = deepest
            droppedEvents = Self.field("droppedEvents", in: header[...]).flatMap { Int($0) } ?? 0

            // The events in order: slices (a resume, "ph":"B", named after its fiber, up to the
            // next end, "ph":"E") and instants (spawns, wakes, loop turns), for the tally.
            var events = 0
            var tally = Doctor.EventTally()
            var labels: [UInt64: String] = [:]
            var open: UInt64?
            var closed = false
            func fiberID(_ name: Substring) -> UInt64? {
                guard let mark = name.firstRange(of: "fiber #")?.upperBound else { return nil }
                return UInt64(name[mark...].prefix { $0.isNumber })
            }
            while let line = nextLine() {
                closed = line.hasPrefix("]}")
                guard line.hasPrefix("{") else { continue }
                events += 1
                let event = line[...]
                guard let phase = Self.field("ph", in: event),
                    let time = Self.field("ts", in: event).flatMap(Double.init)
                else { continue }
                let nanoseconds = UInt64(max(0, time * 1_000))
                switch phase {
                case "B":
                    guard let name = Self.field("name", in: event), let id = fiberID(name[...]) else { continue }
                    labels[id] = name
                    open = id
                    tally.add(.resume, fiber: id, at: nanoseconds)
                case "E":
                    guard let id = open else { continue }
                    open = nil
                    let end = Self.field("end", in: event) ?? "yield"
                    if end == "yield" {
                        tally.add(.yield, fiber: id, at: nanoseconds)
                    } else if end == "finish" {
                        tally.add(.finish, fiber: id, at: nanoseconds)
                    } else {
                        let reason = end.hasPrefix("park: ") ? Self.parkReason(named: String(end.dropFirst(6))) : nil
                        tally.add(.park(reason), fiber: id, at: nanoseconds)
                    }
                case "i":
                    guard let name = Self.field("name", in: event) else { continue }
                    if name == "loop turn" {
                        tally.add(.loopTurn, fiber: 0, at: nanoseconds)
                    } else if name.hasPrefix("spawn "), let id = fiberID(name[...]) {
                        tally.add(.spawn, fiber: id, at: nanoseconds)
                    } else if name.hasPrefix("wake "), let id = fiberID(name[...]) {
                        tally.add(.wake, fiber: id, at: nanoseconds)
                    }
                default:
                    continue
                }
            }
            if ferror(file) != 0 { throw TraceFileError(path: path, reason: UVError(code: -errno).description) }
            guard closed else {
                throw TraceFileError(path: path, reason: "it ends before the closing ]} of its events (cut short?)")
            }
            eventCount = max(0, events - 1)  // the loop thread's name is not an event
            self.tally = tally
            longSlices = tally.longSlices
            longestSlice = tally.longest.map {
                (Double($0.nanoseconds) / 1_000, labels[$0.fiber] ?? "fiber #\($0.fiber)")
            }
        }

        /// What the events say, tallied in order (see `Doctor.EventTally`).
        let tally: Doctor.EventTally

        /// The park reason a trace names (`Fiber.ParkReason.description`), or nil.
        static func parkReason(named name: String) -> Fiber.ParkReason? {
            Fiber.ParkReason.allCases.first { $0.description == name }
        }

        /// What the doctor finds in this run. `operations` defaults to the fibers that finished;
        /// `waitsPerOperation`, when given, lets the doctor compare switches and yields with the
        /// waits the work really had (as ``Doctor/report(for:since:operations:waitsPerOperation:includingResourceUsage:)``).
        ///
        /// The totals run from the loop's start, with no warm-up to leave out, so every stack the
        /// program ever needed was once fresh. Fresh stacks count as cold only as far as the pool
        /// threw stacks away (`stacksDiscarded`: it was full) and mapped new ones: a program that
        /// maps a thousand stacks once for a thousand fibers has no cold-stack problem; one that
        /// maps one per fiber because its pool holds too few has. The resource usage is the loop
        /// thread's, from its start to the writing of the trace, and its context switches count
        /// as hand-offs only when voluntary and beyond one a loop turn (a loop waiting in
        /// epoll_wait is switched out). A trace written off the loop's thread (at exit, from
        /// another thread) has none. `includingResourceUsage: false` leaves it out (as
        /// ``Doctor/report(for:since:operations:waitsPerOperation:includingResourceUsage:)`` does),
        /// for a thread that shares its process with busy threads it does not wait for.
        ///
        /// `syscalls`, the count of a run under ``Doctor/SyscallCount`` that wrote this trace,
        /// adds the loop thread's system calls by name (the thread the trace names as
        /// `loopKernelThread`) and the other threads'.
        public func report(
            operations: Int? = nil, waitsPerOperation: Double? = nil, includingResourceUsage: Bool = true,
            syscalls: SyscallCount? = nil
        ) -> Report {
            let usageKeys: Set = [
                "threadSwitches", "preemptions", "minorFaults", "userMicroseconds", "systemMicroseconds", "ioSyscalls",
                "otherThreadsVoluntarySwitches",
            ]
            func total(_ key: String) -> Double? {
                includingResourceUsage || !usageKeys.contains(key) ? totals[key] : nil
            }
            var evidence = Evidence(
                operations: operations.map(Double.init) ?? total("finishes") ?? 0, waitsPerOperation: waitsPerOperation)
            evidence.switches = total("switches").map { $0 * 2 }
            evidence.yields = total("yields")
            evidence.parks = total("parks")
            evidence.spawns = total("spawns")
            // Fresh stacks count as cold only where a pooled one was thrown away, or where the
            // size was new (stacks of other sizes sat pooled, or every size was used about once):
            // not the first stacks of one size a program needed at once.
            evidence.stacksCold = total("stacksCold").map {
                let newSizes = max(total("stacksColdBesidePooled") ?? 0, (total("stackSizesMapped") ?? 1) - 1)
                return min($0, (total("stacksDiscarded") ?? $0) + newSizes)
            }
            evidence.stacksUnmapped = total("stacksDiscarded")
            evidence.stacksColdBesidePooled = total("stacksColdBesidePooled")
            evidence.stackSizes = total("stackSizesMapped")
            evidence.zeroSleeps = total("zeroSleeps")
            evidence.channelsMade = total("channelsMade")
            evidence.postedWork = total("postedWorkRun")
            evidence.fiberSeconds = total("fiberNanoseconds").map { $0 / 1e9 }
            var byReason: [Fiber.ParkReason: Double] = [:]
            for (key, value) in totals where key.hasPrefix("parks:") {
                if let reason = Self.parkReason(named: String(key.dropFirst(6))) { byReason[reason] = value }
            }
            evidence.parksByReason = byReason
            tally.fill(&evidence, finishes: total("finishes"), yields: total("yields"), wakes: total("wakes"))
            if operations == nil, let helpers = evidence.oneSliceChildren, helpers > 0 {
                // The operations are the fibers that finished, less the one-slice helpers.
                evidence.operations = max(1, evidence.operations - helpers)
            }
            evidence.loopTurns = total("loopTurns")
            evidence.concurrency = total("runQueueHighWater")
            // Hand-offs are the loop thread's waits for another thread: not the times the OS
            // preempted it, nor a wait in epoll_wait (once a loop turn at most).
            evidence.threadSwitches = total("threadSwitches").map {
                max(0, $0 - (total("preemptions") ?? 0) - (total("loopTurns") ?? 0))
            }
            evidence.minorFaults = total("minorFaults")
            evidence.preemptions = total("preemptions")
            evidence.userSeconds = total("userMicroseconds").map { $0 / 1e6 }
            evidence.systemSeconds = total("systemMicroseconds").map { $0 / 1e6 }
            evidence.ioSyscalls = total("ioSyscalls")
            evidence.otherThreadSwitches = total("otherThreadsVoluntarySwitches")
            if let syscalls, let loopThread = totals["loopKernelThread"] {
                evidence.loopSyscalls = syscalls.split(loopThread: Int(loopThread)).loop.mapValues(Double.init)
            }
            if let longestSlice {
                evidence.longestSliceSeconds = longestSlice.microseconds / 1e6
                evidence.longestSliceFiber = Self.describe(longestSlice.fiber)
            }
            if let used = total("stackUsedBytes"), let size = total("stackBytes"), size > 0 {
                evidence.stackHighWater = Scheduler.StackHighWater(
                    usedBytes: Int(used), stackBytes: Int(size), fiber: deepestStackFiber ?? "a fiber")
            }
            let fibers = UInt64(total("fiberNanoseconds") ?? 0)
            let idle = UInt64(total("idleNanoseconds") ?? 0)
            let running = UInt64(total("runningNanoseconds") ?? 0)
            let callbacks = running > fibers &+ idle ? running &- fibers &- idle : 0
            let time = TimeSplit(
                fibers: .nanoseconds(Int64(fibers)), idle: .nanoseconds(Int64(idle)),
                callbacks: .nanoseconds(Int64(callbacks)))
            return Report(evidence: evidence, findings: diagnose(evidence), time: time)
        }

        /// A slice's name as the writer gives it ("fiber #12 name") in the doctor's words
        /// (`fiber "name" (#12)`).
        static func describe(_ label: String) -> String {
            guard label.hasPrefix("fiber #") else { return label }
            let rest = label.dropFirst("fiber #".count)
            let id = rest.prefix { $0.isNumber }
            let name = rest.dropFirst(id.count).drop { $0 == " " }
            return name.isEmpty ? "fiber #\(id)" : "fiber \"\(name)\" (#\(id))"
        }

        /// The value of `"key":` in one event line: a string (unescaped) or a number, as text.
        static func field(_ key: String, in line: Substring) -> String? {
            guard let start = line.firstRange(of: "\"\(key)\":")?.upperBound else { return nil }
            return value(at: start, in: line)?.text
        }

        /// The flat object (strings and numbers, nothing nested) that follows `marker` in `line`:
        /// its keys and values as text.
        static func object(after marker: String, in line: Substring) -> [(key: String, value: String)]? {
            guard var index = line.firstRange(of: marker)?.upperBound, index < line.endIndex, line[index] == "{" else {
                return nil
            }
            index = line.index(after: index)
            var pairs: [(key: String, value: String)] = []
            while index < line.endIndex, line[index] != "}" {
                if line[index] == "," { index = line.index(after: index) }
                guard let key = value(at: index, in: line), let colon = line[key.end...].first, colon == ":" else {
                    return nil
                }
                guard let item = value(at: line.index(after: key.end), in: line) else { return nil }
                pairs.append((key.text, item.text))
                index = item.end
            }
            return pairs
        }

        /// A JSON string (unescaped) or number starting at `start`, and where it ends.
        static func value(at start: Substring.Index, in line: Substring) -> (text: String, end: Substring.Index)? {
            guard start < line.endIndex else { return nil }
            if line[start] == "\"" {
                var text = ""
                var index = line.index(after: start)
                while index < line.endIndex {
                    let character = line[index]
                    if character == "\"" { return (text, line.index(after: index)) }
                    if character == "\\" {
                        index = line.index(after: index)
                        guard index < line.endIndex else { return nil }
                    }
                    text.append(line[index])
                    index = line.index(after: index)
                }
                return nil
            }
            let end =
                line[start...].firstIndex { !($0.isNumber || $0 == "." || $0 == "-" || $0 == "e" || $0 == "+") }
                ?? line.endIndex
            return end > start ? (String(line[start..<end]), end) : nil
        }
    }

    /// A trace file that could not be read, or is not one a Spindle program wrote.
    public struct TraceFileError: Error, CustomStringConvertible, Sendable {
        /// The file.
        public let path: String
        /// What is wrong with it (cannot be opened, not JSON, no Spindle totals, ...).
        public let reason: String
        public var description: String { "\(path): \(reason)" }
    }
}
