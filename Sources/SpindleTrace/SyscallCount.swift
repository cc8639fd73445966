import CSpindleSyscalls
import Glibc
import SpindleLoop

extension Doctor {
    /// A program run to its end under a system call counter (ptrace, as `strace -c -f` does):
    /// each thread's system calls by name and its context switches. Tracing makes every
    /// system call several times slower; counts, not times, are what it is for.
    ///
    /// `spindle-doctor run -- PROGRAM` runs the program this way with `SPINDLE_TRACE` set, so
    /// the doctor can name a system call made on every switch, or the blocking call a fiber made,
    /// from the calls the loop's thread really made.
    public struct SyscallCount: Sendable {
        /// One thread of the program.
        public struct Thread: Sendable {
            /// Its kernel thread id (what a Spindle trace's `loopKernelThread` names).
            public let id: Int
            /// Its name when it exited.
            public let name: String
            /// System calls it entered, by name (`"syscall 435"` for one the table cannot name).
            public let calls: [String: Int]
            /// Voluntary context switches (it waited), when /proc could be read as it exited.
            /// Each ptrace stop adds one: compare threads of one counted run, not runs with and
            /// without the counter.
            public let voluntarySwitches: Int?
            /// Involuntary context switches (it was preempted), when /proc could be read.
            public let involuntarySwitches: Int?
        }
        /// The program's threads, in the order they were first seen (the main thread first).
        public let threads: [Thread]
        /// The program's wait status (`WIFEXITED`, `WEXITSTATUS`).
        public let waitStatus: Int32

        /// How the program ended, in words: "exited with status 0", "killed by signal 9 (Killed)".
        public var ending: String {
            let signal = waitStatus & 0x7f
            guard signal != 0 else { return "exited with status \((waitStatus >> 8) & 0xff)" }
            let name = strsignal(signal).map { " (\(String(cString: $0)))" } ?? ""
            return "killed by signal \(signal)\(name)"
        }

        /// Runs `arguments[0]` (searched in `PATH`) with `arguments` and `environment` under the
        /// counter, to its end. Throws a `UVError` naming why it could not (`ENOENT` for a
        /// program not found, `EPERM` when ptrace is not allowed here).
        ///
        /// It waits for the traced threads with `waitpid(-1, __WALL)`, so call it from a process
        /// with no other children of its own (a tool's main thread): their exits would be
        /// collected here and lost to whoever waits for them.
        public static func run(_ arguments: [String], environment: [String]) throws(UVError) -> SyscallCount {
            let capacity = 256
            let records = UnsafeMutablePointer<spindle_thread_syscalls_t>.allocate(capacity: capacity)
            defer { records.deallocate() }
            var count: Int32 = 0
            var status: Int32 = 0
            let result = withCStrings(arguments) { argv in
                withCStrings(environment) { envp in
                    spindle_count_syscalls(argv, envp, records, Int32(capacity), &count, &status)
                }
            }
            if result != 0 {
                throw UVError(code: -result, operation: "running \(arguments.first ?? "?") under ptrace")
            }
            var threads: [Thread] = []
            for index in 0..<Int(count) {
                var record = records[index]
                var calls: [String: Int] = [:]
                withUnsafeBytes(of: &record.counts) { raw in
                    for (number, value) in raw.bindMemory(to: UInt64.self).enumerated() where value > 0 {
                        let name = spindle_syscall_name(number).map { String(cString: $0) } ?? "syscall \(number)"
                        calls[name, default: 0] += Int(value)
                    }
                }
                let name = withUnsafeBytes(of: &record.name) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
                threads.append(
                    Thread(
                        id: record.tid, name: name, calls: calls,
                        voluntarySwitches: record.voluntary_switches >= 0 ? record.voluntary_switches : nil,
                        involuntarySwitches: record.involuntary_switches >= 0 ? record.involuntary_switches : nil))
            }
            return SyscallCount(threads: threads, waitStatus: status)
        }

        /// The system calls of thread `id`, and those of every other thread added up.
        public func split(loopThread id: Int) -> (loop: [String: Int], others: [String: Int]) {
            var loop: [String: Int] = [:]
            var others: [String: Int] = [:]
            for thread in threads {
                if thread.id == id {
                    loop.merge(thread.calls, uniquingKeysWith: +)
                } else {
                    others.merge(thread.calls, uniquingKeysWith: +)
                }
            }
            return (loop, others)
        }

        /// A NULL-terminated array of C strings for `strings`, valid during `body`.
        static func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R)
            -> R
        {
            var pointers = strings.map { strdup($0) }
            pointers.append(nil)
            defer { for pointer in pointers { free(pointer) } }
            return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
        }
    }
}
