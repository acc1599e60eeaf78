import Foundation

/// The wall time of a plain decode step as the engine is seeing it now: the median of the recent plain steps that
/// ran alone, fed by every request of one model (plain `none` requests, requests whose speculation is off, steps
/// with nothing to propose). Memory bandwidth on a shared machine drifts by tens of per cent from minute to
/// minute, so a figure measured at start-up can be stale by the time auto-off compares a speculative step with it.
public final class DecodeStepClock: @unchecked Sendable {
    private let lock = NSLock()
    private var recent = RecentMedian()

    public init() {}

    public func record(_ seconds: Double) {
        lock.withLock { recent.add(seconds) }
    }

    /// The current median, once two steps were seen.
    public var seconds: Double? {
        lock.withLock { recent.count >= 2 ? recent.median : nil }
    }
}

/// The median of the last `capacity` samples and how many were seen. A median, not a mean: a step now and then
/// takes several times the usual (the first after a prefill, a page fault, a preempted thread), and one such
/// sample must not swing a decision.
struct RecentMedian {
    private var samples: [Double] = []
    private var next = 0
    private(set) var count = 0
    let capacity = 16

    mutating func add(_ x: Double) {
        if samples.count < capacity { samples.append(x) } else { samples[next] = x }
        next = (next + 1) % capacity
        count += 1
    }

    var median: Double {
        guard !samples.isEmpty else { return 0 }
        let sorted = samples.sorted()
        let mid = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
    }
}
