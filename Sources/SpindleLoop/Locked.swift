import Glibc

/// A value behind a pthread mutex, for the few places where threads share state off the hot
/// paths (a group's start and stop, a service's counts, the warning handler).
///
/// A pthread mutex rather than `Synchronization.Mutex`: ThreadSanitizer follows pthread calls,
/// while `Mutex` on Linux locks with raw futex system calls it cannot see, so `make tsan` reported
/// every access under it as a race.
package final class Locked<Value>: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var value: Value

    package init(_ value: Value) {
        self.value = value
        pthread_mutex_init(mutex, nil)
    }

    /// Runs `body` with the value, holding the lock.
    package func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }
}
