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
    }

    /// Runs `body(i)` for every `i` in `0..<threadCount`, one call per thread, and returns when all are done.
    /// Callers on different threads take turns (the pool has one job slot): the engine thread is the only
    /// regular caller, but a test or a calibration running beside it must not corrupt its jobs.
    public func run(_ body: (Int) -> Void) {
        if threadCount == 1 { body(0); return }
        callerLock.lock()
        defer { callerLock.unlock() }
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
            while remaining.load(ordering: .acquiring) > 0 {}
            job = nil
        }
    }

    /// Splits `0..<count` into `threadCount` contiguous chunks whose starts are multiples of `alignment`
    /// and runs `body(range)` for each non-empty chunk in parallel.
    public func parallelFor(_ count: Int, alignment: Int = 1, _ body: (Range<Int>) -> Void) {
        let parts = min(threadCount, max(1, count / max(alignment, 1)))
        if parts <= 1 { if count > 0 { body(0..<count) }; return }
        let units = (count + alignment - 1) / alignment
        run { index in
            guard index < parts else { return }
            let lo = min(count, (units * index / parts) * alignment)
            let hi = min(count, (units * (index + 1) / parts) * alignment)
            if lo < hi { body(lo..<hi) }
        }
    }

    private func workerLoop(index: Int) {
        var seen = 0
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
            remaining.subtract(1, ordering: .releasing)
        }
    }
}
