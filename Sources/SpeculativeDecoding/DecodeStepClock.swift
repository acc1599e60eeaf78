import Foundation

/// The wall time of a plain decode step as the engine is seeing it now: a rolling mean over the plain steps that
/// ran alone, fed by every request of one model (plain `none` requests, requests whose speculation is off, steps
/// with nothing to propose). Memory bandwidth on a shared machine drifts by tens of per cent from minute to
/// minute, so a figure measured at start-up can be stale by the time auto-off compares a speculative step with it.
public final class DecodeStepClock: @unchecked Sendable {
    private let lock = NSLock()
    private var mean = RollingMean()

    public init() {}

    public func record(_ seconds: Double) {
        lock.withLock { mean.add(seconds) }
    }

    /// The current mean, once two steps were seen.
    public var seconds: Double? {
        lock.withLock { mean.count >= 2 ? mean.mean : nil }
    }
}

/// An exponentially weighted mean (the newest sample weighs 0.2) and the number of samples.
struct RollingMean {
    private(set) var mean = 0.0
    private(set) var count = 0
    mutating func add(_ x: Double) {
        mean = count == 0 ? x : 0.8 * mean + 0.2 * x
        count += 1
    }
}
