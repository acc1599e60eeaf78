import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A fork-join pool of persistent threads for the kernels.
///
/// A decode step runs ~60 matmuls of 1–3 ms each; waking threads through the OS for every one of them would
/// cost more than the split gains. Workers therefore spin for a short while after each job (the next matmul
/// usually follows within microseconds) and only then sleep on a condition variable.
///
/// Work is always split by *output* (rows of a weight, heads of attention), never along a reduction, so the
/// number of threads never changes a result: every output is computed by exactly one thread, in the same order.
public final class WorkerPool: @unchecked Sendable {
    /// Threads taking part in a job, the calling thread included.
    public let threadCount: Int

    private let generation = Atomic<Int>(0)
    private let remaining = Atomic<Int>(0)
    private let sleepers = Atomic<Int>(0)
    private let callerLock = NSLock()
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    /// The current job; only read by workers between `generation` increment and `remaining` reaching 0.
    nonisolated(unsafe) private var job: ((Int) -> Void)?
    /// Per thread, the memory it reads into the cache while it waits (`run(_:thenPrefetch:)`): start and end.
    private let idleRegions: UnsafeMutablePointer<IdleRegion>
    nonisolated(unsafe) private var planCount = 0
    /// Per thread, how many pieces of its share's tail have been claimed (`parallelForSharingTails`).
    private let claims: UnsafeMutablePointer<Atomic<Int>>
    private var threads: [Thread] = []
    /// How long a worker spins for the next job before it sleeps. Long enough to cover the gaps between the
    /// kernels of one forward; short enough not to steal the core from OpenBLAS or other work for long.
    private let spinSeconds = 50e-6

    /// The shared pool used by the model. Its size comes from `SPECSERVE_THREADS` or the core count.
    public static let shared: WorkerPool = {
        let env = ProcessInfo.processInfo.environment["SPECSERVE_THREADS"].flatMap(Int.init)
        return WorkerPool(threadCount: max(1, env ?? ProcessInfo.processInfo.activeProcessorCount))
    }()

    public init(threadCount: Int) {
        self.threadCount = max(1, threadCount)
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        idleRegions = .allocate(capacity: self.threadCount)
        idleRegions.initialize(repeating: IdleRegion(), count: self.threadCount)
        claims = .allocate(capacity: self.threadCount)
        for i in 0..<self.threadCount { (claims + i).initialize(to: Atomic(0)) }
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
        for index in 1..<self.threadCount {
            // Pools live for the whole process (the model's shared pool, a few in tests): the thread keeps
            // its pool alive.
            let thread = Thread { self.workerLoop(index: index) }
            thread.name = "specserve-worker-\(index)"
            thread.stackSize = 1 << 20
            threads.append(thread)
            thread.start()
        }
    }

    /// Only reached by a pool without worker threads (a worker keeps its pool alive).
    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
        idleRegions.deallocate()
        claims.deinitialize(count: threadCount)
        claims.deallocate()
    }

    /// Runs `body(i)` for every `i` in `0..<threadCount`, one call per thread, and returns when all are done.
    /// Callers on different threads take turns (the pool has one job slot): the engine thread is the only
    /// regular caller, but a test or a calibration running beside it must not corrupt its jobs.
    ///
    /// `thenPrefetch(i)`, when given, names memory thread `i` will read next (its share of the next weight): a
    /// thread that finishes its part early, and a worker until its next job, reads it into the cache a few lines
    /// at a time, so the memory keeps streaming through the joins, the row-by-row work and attention instead of
    /// idling. It is only a hint: prefetches never fault and change no result. A job without one leaves the
    /// workers on their previous region.
    public func run(_ body: (Int) -> Void, thenPrefetch: ((Int) -> IdleRegion)? = nil) {
        run(body, thenPrefetch: thenPrefetch, prepare: nil)
    }

    /// `run`, with `prepare` called under the job slot's lock before any thread starts (to reset shared state).
    private func run(_ body: (Int) -> Void, thenPrefetch: ((Int) -> IdleRegion)?, prepare: (() -> Void)?) {
        if threadCount == 1 { body(0); return }
        callerLock.lock()
        defer { callerLock.unlock() }
        prepare?()
        if let thenPrefetch {
            planCount &+= 1
            for i in 0..<threadCount {
                idleRegions[i] = thenPrefetch(i)
                idleRegions[i].plan = planCount
            }
        }
        withoutActuallyEscaping(body) { escapable in
            job = escapable
            remaining.store(threadCount - 1, ordering: .relaxed)
            // Sequentially consistent against the sleeper's check below, so a worker either sees the new
            // generation or is counted as sleeping and woken.
            generation.add(1, ordering: .sequentiallyConsistent)
            if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
                pthread_mutex_lock(mutex)
                pthread_cond_broadcast(condition)
                pthread_mutex_unlock(mutex)
            }
            escapable(0)
            var region = idleRegions[0]
            while remaining.load(ordering: .acquiring) > 0 {
                if !region.prefetchSome() { while remaining.load(ordering: .acquiring) > 0 {} }
            }
            idleRegions[0] = region
            job = nil
        }
    }

    /// Splits `0..<count` into `threadCount` contiguous chunks whose starts are multiples of `alignment`
    /// and runs `body(range)` for each non-empty chunk in parallel.
    public func parallelFor(
        _ count: Int, alignment: Int = 1, thenPrefetch: ((Int) -> IdleRegion)? = nil, _ body: (Range<Int>) -> Void
    ) {
        let parts = min(threadCount, max(1, count / max(alignment, 1)))
        if parts <= 1 { if count > 0 { body(0..<count) }; return }
        run({ index in
            guard index < parts, let range = chunk(index, of: count, alignment: alignment, parts: parts) else { return }
            body(range)
        }, thenPrefetch: thenPrefetch)
    }

    /// Like `parallelFor`, but the last `tailPercent` % of each thread's share is cut into pieces of `alignment`
    /// that any thread may take once it has finished its own: the owner works through its share front to back, and a
    /// thread that is done early takes pieces of the others' tails instead of waiting at the join. Every index is
    /// still given to exactly one `body` call, so results do not depend on who computed them.
    public func parallelForSharingTails(
        _ count: Int, alignment: Int, tailPercent: Int, thenPrefetch: ((Int) -> IdleRegion)? = nil,
        _ body: (Range<Int>) -> Void
    ) {
        let parts = min(threadCount, max(1, count / max(alignment, 1)))
        if parts <= 1 || tailPercent <= 0 {
            parallelFor(count, alignment: alignment, thenPrefetch: thenPrefetch, body)
            return
        }
        // Share i: its owner runs it from the start up to `start` in one call, then the tail in pieces of one unit each.
        func tail(_ i: Int) -> (start: Int, pieces: Int, end: Int) {
            let share = chunk(i, of: count, alignment: alignment, parts: parts)!
            let units = (share.count + alignment - 1) / alignment
            let tailUnits = units * tailPercent / 100
            return (share.upperBound - min(share.count, tailUnits * alignment), tailUnits, share.upperBound)
        }
        run({ index in
            guard index < parts else { return }
            let own = chunk(index, of: count, alignment: alignment, parts: parts)!
            let first = tail(index)
            if own.lowerBound < first.start { body(own.lowerBound..<first.start) }
            for step in 0..<parts {
                let j = (index + step) % parts
                let t = step == 0 ? first : tail(j)
                while true {
                    let piece = claims[j].add(1, ordering: .relaxed).oldValue
                    if piece >= t.pieces { break }
                    let lo = t.start + piece * alignment
                    body(lo..<min(t.end, lo + alignment))
                }
            }
        }, thenPrefetch: thenPrefetch, prepare: {
            // Under the job lock (another caller's job may still be claiming), published by the generation bump.
            for i in 0..<parts { self.claims[i].store(0, ordering: .relaxed) }
        })
    }

    /// Thread `index`'s share of `0..<count` in `parallelFor` (nil when it gets none).
    public func chunk(_ index: Int, of count: Int, alignment: Int = 1) -> Range<Int>? {
        let parts = min(threadCount, max(1, count / max(alignment, 1)))
        if parts <= 1 { return index == 0 && count > 0 ? 0..<count : nil }
        return index < parts ? chunk(index, of: count, alignment: alignment, parts: parts) : nil
    }

    private func chunk(_ index: Int, of count: Int, alignment: Int, parts: Int) -> Range<Int>? {
        let units = (count + alignment - 1) / alignment
        let lo = min(count, (units * index / parts) * alignment)
        let hi = min(count, (units * (index + 1) / parts) * alignment)
        return lo < hi ? lo..<hi : nil
    }

    private func workerLoop(index: Int) {
        var seen = 0
        var region = IdleRegion(), callerRegion = IdleRegion()
        while true {
            var spins = 0
            var spinStart = 0.0
            while generation.load(ordering: .acquiring) == seen {
                spins += 1
                if spins & 255 != 0 { continue }
                let now = monotonicSeconds()
                if spinStart == 0 { spinStart = now }
                if now - spinStart < spinSeconds { continue }
                pthread_mutex_lock(mutex)
                sleepers.add(1, ordering: .sequentiallyConsistent)
                while generation.load(ordering: .sequentiallyConsistent) == seen {
                    pthread_cond_wait(condition, mutex)
                }
                sleepers.subtract(1, ordering: .sequentiallyConsistent)
                pthread_mutex_unlock(mutex)
                spins = 0
                spinStart = 0
            }
            seen = generation.load(ordering: .acquiring)
            job?(index)
            // Read before the job is released: the caller may set the next job's regions right after. A job without
            // regions (attention) leaves the worker where it was in the last one.
            if idleRegions[index].plan != region.plan {
                region = idleRegions[index]
                if index == 1 { callerRegion = idleRegions[0] }
            }
            remaining.subtract(1, ordering: .releasing)
            while generation.load(ordering: .relaxed) == seen {
                let mine = region.prefetchSome(), caller = index == 1 && callerRegion.prefetchSome()
                if !mine && !caller { break }
            }
        }
    }
}

/// Memory a pool thread reads into the cache while it has no work: `next..<end`, `next` advancing as it goes.
public struct IdleRegion: Sendable {
    nonisolated(unsafe) var next: UnsafeRawPointer?
    nonisolated(unsafe) var end: UnsafeRawPointer?
    /// Which `run` set it.
    var plan = 0

    public init() {}

    public init(_ start: UnsafeRawPointer, byteCount: Int) {
        next = start
        end = start + byteCount
    }

    /// Prefetches the next 8 cache lines; false when the region is done.
    @inline(__always)
    mutating func prefetchSome() -> Bool {
        guard let p = next, let end, p < end else { return false }
        for line in 0..<8 { prefetchLine(p + 64 * line) }
        next = p + 512
        return true
    }
}
