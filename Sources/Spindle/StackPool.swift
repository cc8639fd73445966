import CSpindleSupport
import Glibc

/// Where fiber stacks come from: mmap'd regions with a `PROT_NONE` guard page below the stack,
/// `MAP_NORESERVE`, kept per loop for reuse.
///
/// Each mapping also holds its fiber's control block at its very top, so a fiber spawned on a
/// pooled stack needs no allocation for its bookkeeping. First touches of a fresh stack's pages
/// are page faults (a few microseconds each); ``prefault(count:stackSize:touching:)`` pays them
/// ahead of time.
///
/// Not thread-safe: one pool per loop, used on the loop's thread.
public final class StackPool {
    /// The stack size fibers get when they do not ask for one: 64 KiB.
    public static let defaultStackSize = 64 * 1024
    /// The smallest stack a fiber may ask for.
    public static let minimumStackSize = 16 * 1024
    /// The largest stack a fiber may ask for: 2 GiB. Asking for more stops the process, saying so.
    public static let maximumStackSize = 1 << 31

    /// Bytes per page on this machine.
    public let pageSize: Int
    /// Stacks kept for reuse per size; beyond this, finished fibers' stacks are unmapped.
    @exclusivity(unchecked) public var maximumPooledPerSize: Int = 1 << 20
    /// Whether stacks mapped from now on get a `PROT_NONE` guard page (a stack overflow then
    /// faults and is reported). A guarded stack is two mappings, so a process of the default
    /// `vm.max_map_count` (65,530) holds about 32,000 of them; unguarded stacks are carved
    /// from shared slabs (``slabStacks`` a mapping) and a million fibers fit. Without the guard
    /// page, an overflowing fiber writes into its neighbour's stack: use it for many small,
    /// shallow fibers whose depth is known.
    @exclusivity(unchecked) public var guardPages: Bool
    /// Painting mode (for finding how deep fibers go): every stack is filled with a pattern
    /// when a fiber starts on it, and when the fiber finishes the untouched part is measured.
    /// Costs a write of the whole stack per spawn and a scan per finish: a debugging aid, off
    /// by default. The deepest fiber so far, relative to its stack size, is
    /// ``Scheduler/stackHighWater``.
    @exclusivity(unchecked) public var paintsStacks = false
    static let paint: UInt64 = 0xA5A5_A5A5_A5A5_A5A5

    /// Fills `fiber`'s usable stack with the paint.
    func paint(_ fiber: UnsafeMutablePointer<spindle_fiber_t>) {
        let lo = UnsafeMutableRawPointer(fiber.pointee.stack_lo!)
        let words = Int(fiber.pointee.stack_usable) / 8
        lo.bindMemory(to: UInt64.self, capacity: words).initialize(repeating: Self.paint, count: words)
        fiber.pointee.painted = 1
    }

    /// Bytes of a painted stack its fiber used: from the top down to the lowest word that no
    /// longer holds the paint.
    func usedBytes(of fiber: UnsafeMutablePointer<spindle_fiber_t>) -> Int {
        let lo = UnsafeRawPointer(fiber.pointee.stack_lo!)
        let size = Int(fiber.pointee.stack_usable)
        spindle_valgrind_make_defined(lo, size)
        let words = lo.bindMemory(to: UInt64.self, capacity: size / 8)
        var index = 0
        while index < size / 8, words[index] == Self.paint { index += 1 }
        return size - index * 8
    }

    /// Unguarded stacks mapped together in one slab.
    public static let slabStacks = 64

    @exclusivity(unchecked) private var freeLists: [Int: UnsafeMutablePointer<spindle_fiber_t>] = [:]
    @exclusivity(unchecked) private var freeCounts: [Int: Int] = [:]
    /// Pooled stacks of the default size: an array used as a stack (last in, first out) rather
    /// than a list through the control blocks. Taking one then reads no control block to find
    /// the next (on a prefaulted pool each was a miss to memory, one after the other), and the
    /// blocks of the next few takes are fetched ahead. Its capacity follows ``mappedCount`` (every
    /// stack mapped, of any size, has a slot), so giving one back never allocates.
    @exclusivity(unchecked) private var defaultFree: UnsafeMutablePointer<UnsafeMutablePointer<spindle_fiber_t>>?
    @exclusivity(unchecked) private var defaultFreeCount = 0
    @exclusivity(unchecked) private var defaultCapacity = 0
    /// How many takes ahead the control blocks are fetched.
    static let prefetchDistance = 4
    /// Stacks mapped in total (pooled or in use).
    @exclusivity(unchecked) public private(set) var mappedCount = 0
    /// Stacks mapped fresh because the pool had none of the right size.
    @exclusivity(unchecked) public private(set) var coldTakes: UInt64 = 0
    /// Stacks served from the pool.
    @exclusivity(unchecked) public private(set) var pooledTakes: UInt64 = 0
    /// Stacks unmapped when their fiber finished, because the pool already held
    /// ``maximumPooledPerSize`` of their size: as many later fibers start on fresh stacks.
    @exclusivity(unchecked) public private(set) var discardedCount: UInt64 = 0
    /// Fresh stacks mapped while the pool held stacks of other sizes, unused: spawns that ask for
    /// varied stack sizes, each size mapping its own.
    @exclusivity(unchecked) public private(set) var coldTakesBesidePooled: UInt64 = 0
    /// The distinct stack sizes (rounded to pages) mapped so far.
    @exclusivity(unchecked) public private(set) var sizesMapped: Set<Int> = []
    /// Pooled stacks of sizes other than the default (kept so the cold path needs no sum).
    @exclusivity(unchecked) private var otherSizesPooled = 0

    /// Creates an empty pool.
    public init(guardPages: Bool = true) {
        pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        self.guardPages = guardPages
    }

    /// The mapping size a stack of `stackSize` bytes gets: rounded up to whole pages.
    public func roundedSize(_ stackSize: Int) -> Int {
        if stackSize > Self.maximumStackSize {
            fatalError(
                "spindle: a fiber stack of \(stackSize) bytes was asked for; the largest is "
                    + "\(Self.maximumStackSize >> 30) GiB (StackPool.maximumStackSize)")
        }
        let size = max(stackSize, Self.minimumStackSize)
        return (size + pageSize - 1) / pageSize * pageSize
    }

    /// Stacks waiting in the pool.
    public var pooledCount: Int { defaultFreeCount + freeCounts.values.reduce(0, +) }

    /// Takes a stack of `stackSize` bytes (rounded to pages) with its control block, from the pool
    /// when one is there, else freshly mapped. Stops the process with the system's reason when
    /// the system refuses the mapping (out of memory, or `vm.max_map_count` reached).
    @inline(__always)
    func take(stackSize: Int) -> UnsafeMutablePointer<spindle_fiber_t> {
        if stackSize == Self.defaultStackSize, defaultFreeCount > 0 {
            pooledTakes &+= 1
            return popDefault()
        }
        return takeSlow(stackSize: stackSize)
    }

    /// The most recently pooled default-size stack, taken off the array; starts loading the
    /// control block (and the stack top below it) of the one `prefetchDistance` takes later.
    @inline(__always)
    private func popDefault() -> UnsafeMutablePointer<spindle_fiber_t> {
        defaultFreeCount -= 1
        let stacks = defaultFree.unsafelyUnwrapped
        let fiber = stacks[defaultFreeCount]
        if defaultFreeCount >= Self.prefetchDistance {
            let ahead = UnsafeRawPointer(stacks[defaultFreeCount - Self.prefetchDistance])
            // A spawn touches the control block's first two lines only.
            spindle_prefetch(ahead)  // context, links, id, state, body
            spindle_prefetch(ahead + 64)  // the list of live fibers, the stack's size
            spindle_prefetch(ahead - 64)  // the first frame, written by make_fcontext
            // The frames of its first slice (a short body's whole stack): without these, a
            // stack fresh from the prefault has them in memory the kernel cleared long before,
            // and the first resume of every fiber waits for them.
            spindle_prefetch(ahead - 128)
            spindle_prefetch(ahead - 192)
        }
        return fiber  // its `next` is set when it is queued
    }

    private func takeSlow(stackSize: Int) -> UnsafeMutablePointer<spindle_fiber_t> {
        let size = roundedSize(stackSize)
        if let fiber = popPooled(size: size) {
            pooledTakes &+= 1
            return fiber
        }
        coldTakes &+= 1
        if defaultFreeCount + otherSizesPooled > 0 { coldTakesBesidePooled &+= 1 }
        return map(size: size)
    }

    /// A pooled stack of `size` (rounded) bytes, taken off the pool, or nil.
    private func popPooled(size: Int) -> UnsafeMutablePointer<spindle_fiber_t>? {
        let fiber: UnsafeMutablePointer<spindle_fiber_t>
        if size == Self.defaultStackSize {
            guard defaultFreeCount > 0 else { return nil }
            return popDefault()
        } else {
            guard let pooled = freeLists[size] else { return nil }
            freeLists[size] = pooled.pointee.next
            freeCounts[size, default: 1] -= 1
            otherSizesPooled -= 1
            fiber = pooled
        }
        return fiber  // its `next` is set when it is queued
    }

    /// Returns a finished fiber's stack to the pool (or unmaps it when the pool is full).
    @inline(__always)
    func give(_ fiber: UnsafeMutablePointer<spindle_fiber_t>) {
        if fiber.pointee.default_size != 0, defaultFreeCount < maximumPooledPerSize {
            // In capacity: every stack mapped has its slot.
            defaultFree.unsafelyUnwrapped[defaultFreeCount] = fiber
            defaultFreeCount &+= 1
            return
        }
        giveSlow(fiber)
    }

    /// ``give(_:)`` for a stack of another size, or one the pool has no room for.
    @inline(never)
    private func giveSlow(_ fiber: UnsafeMutablePointer<spindle_fiber_t>) {
        let size = fiber.pointee.stack_size
        if size != Self.defaultStackSize, freeCounts[size, default: 0] < maximumPooledPerSize {
            fiber.pointee.next = freeLists[size]
            freeLists[size] = fiber
            freeCounts[size, default: 0] += 1
            otherSizesPooled += 1
            return
        }
        discardedCount &+= 1
        unmap(fiber)
    }

    /// Makes sure the pool holds at least `count` stacks of `stackSize`, mapping what is missing,
    /// and touches the top `touching` bytes of each (default: the whole stack), so fibers
    /// spawned on them take no page faults there. Unguarded stacks are mapped a slab at a time,
    /// like any others; stacks already pooled are touched too (a page already there costs
    /// nothing). Not counted as cold or pooled takes.
    public func prefault(count: Int, stackSize: Int = StackPool.defaultStackSize, touching: Int? = nil) {
        let size = roundedSize(stackSize)
        var taken: [UnsafeMutablePointer<spindle_fiber_t>] = []
        taken.reserveCapacity(count)
        for _ in 0..<count {
            let fiber = popPooled(size: size) ?? map(size: size)
            let usable = Int(fiber.pointee.stack_usable)
            let depth = min(touching ?? usable, usable)
            let top = UnsafeMutableRawPointer(fiber.pointee.stack_hi!)
            // The control block's own page first, then each page below it.
            top.storeBytes(of: 0, as: UInt8.self)
            var offset = pageSize
            while offset <= depth {
                // One write per page is enough to fault it in.
                (top - offset).storeBytes(of: 0, as: UInt8.self)
                offset += pageSize
            }
            taken.append(fiber)
        }
        for fiber in taken { give(fiber) }
    }

    /// Unmaps every pooled stack.
    public func trim() {
        while defaultFreeCount > 0 {
            defaultFreeCount -= 1
            unmap(defaultFree.unsafelyUnwrapped[defaultFreeCount])
        }
        for (size, head) in freeLists {
            var next: UnsafeMutablePointer<spindle_fiber_t>? = head
            while let fiber = next {
                next = fiber.pointee.next
                unmap(fiber)
            }
            freeLists[size] = nil
        }
        freeCounts.removeAll()
        otherSizesPooled = 0
    }

    private func map(size: Int) -> UnsafeMutablePointer<spindle_fiber_t> {
        sizesMapped.insert(size)
        let guardSize = guardPages ? pageSize : 0
        let total = size + guardSize
        let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK
        // Unguarded stacks come a slab at a time: one mmap for `slabStacks` of them, the rest
        // going straight to the pool (each can still be unmapped on its own later).
        let count = guardSize == 0 ? Self.slabStacks : 1
        reserveDefault(mappedCount + count)
        let base = mmap(nil, total * count, PROT_READ | PROT_WRITE, flags, -1, 0)
        if base == MAP_FAILED {
            Self.mappingFailed(
                "mmap of \(count == 1 ? "a" : "\(count)") \(size / 1024) KiB fiber stack\(count == 1 ? "" : "s")",
                errno: errno)
        }
        for index in 1..<count {
            give(carve(UnsafeMutableRawPointer(base!) + index * total, total: total, size: size, guardSize: 0))
        }
        return carve(base!, total: total, size: size, guardSize: guardSize)
    }

    /// Sets up one stack of `total` bytes at `base`: guard page (if any), control block on top.
    private func carve(_ base: UnsafeMutableRawPointer, total: Int, size: Int, guardSize: Int) -> UnsafeMutablePointer<
        spindle_fiber_t
    > {
        let mapping = base.assumingMemoryBound(to: CChar.self)
        if guardSize > 0, mprotect(base, guardSize, PROT_NONE) != 0 {
            let err = errno
            munmap(base, total)
            Self.mappingFailed("mprotect of a fiber stack's guard page", errno: err)
        }
        // The control block sits at the very top; the stack grows down from just below it.
        let blockSize = (MemoryLayout<spindle_fiber_t>.size + 63) & ~63
        // Cache colouring: successive stacks put their control block (and so their hottest
        // frames) at one of 16 offsets within the top page. At one fixed offset, thousands of
        // runnable fibers all map to the same few cache sets, and how badly they collide in
        // the physically indexed caches changed from one process to the next (fanout timer
        // took twice as long in some processes as in others, for the same binary).
        let colour = (mappedCount % 16) * 128
        let block = UnsafeMutableRawPointer(mapping + total - blockSize - colour)
        let fiber = block.bindMemory(to: spindle_fiber_t.self, capacity: 1)
        fiber.initialize(to: spindle_fiber_t())
        fiber.pointee.mapping = mapping
        fiber.pointee.mapping_size = total
        fiber.pointee.guard_size = guardSize
        fiber.pointee.stack_lo = mapping + guardSize
        fiber.pointee.stack_hi = block.assumingMemoryBound(to: CChar.self)
        fiber.pointee.stack_size = size
        fiber.pointee.stack_usable = UInt32(Int(bitPattern: block) - Int(bitPattern: fiber.pointee.stack_lo))
        fiber.pointee.default_size = size == Self.defaultStackSize ? 1 : 0
        fiber.pointee.valgrind_stack_id = spindle_valgrind_stack_register(
            fiber.pointee.stack_lo, fiber.pointee.stack_hi)
        mappedCount += 1
        return fiber
    }

    /// Grows the pool's array to hold `count` stacks (when stacks are mapped: the slow path).
    private func reserveDefault(_ count: Int) {
        guard count > defaultCapacity else { return }
        let capacity = max(count, defaultCapacity * 2, 64)
        let grown = UnsafeMutablePointer<UnsafeMutablePointer<spindle_fiber_t>>.allocate(capacity: capacity)
        if let old = defaultFree {
            grown.moveInitialize(from: old, count: defaultFreeCount)
            old.deallocate()
        }
        defaultFree = grown
        defaultCapacity = capacity
    }

    private func unmap(_ fiber: UnsafeMutablePointer<spindle_fiber_t>) {
        spindle_valgrind_stack_deregister(fiber.pointee.valgrind_stack_id)
        let mapping = fiber.pointee.mapping
        let total = fiber.pointee.mapping_size
        munmap(mapping, total)
        mappedCount -= 1
    }

    private static func mappingFailed(_ what: String, errno err: Int32) -> Never {
        var hint = ""
        if err == ENOMEM {
            hint =
                " (out of memory, or the process reached vm.max_map_count: each guarded stack is "
                + "two mappings; raise it with `sysctl vm.max_map_count=...` or use smaller/fewer fibers)"
        }
        fatalError("spindle: \(what) failed: \(String(cString: strerror(err)))\(hint)")
    }

    deinit {
        trim()
        defaultFree?.deallocate()
    }
}
