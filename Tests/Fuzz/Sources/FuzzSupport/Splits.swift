// How one fuzz input is cut into the slices an incremental parser is fed, so that every split point of a
// request is reached: the first byte of the input picks the pattern and is not part of the payload.

public enum SplitPattern: Sendable, Equatable {
    /// Everything in one slice.
    case whole
    /// One byte per slice.
    case bytes
    /// Slices of a fixed size (1...64).
    case fixed(Int)
    /// Slices of pseudo-random sizes (1...32) drawn from a generator seeded with the selector byte.
    case varying(seed: UInt8)

    public init(selector: UInt8) {
        switch selector & 3 {
        case 0: self = .whole
        case 1: self = .bytes
        case 2: self = .fixed(Int(selector >> 2) + 1)
        default: self = .varying(seed: selector)
        }
    }

    /// The slice lengths for a payload of `count` bytes; they sum to `count` and none is empty.
    public func lengths(for count: Int) -> [Int] {
        guard count > 0 else { return [] }
        switch self {
        case .whole:
            return [count]
        case .bytes:
            return Array(repeating: 1, count: count)
        case .fixed(let size):
            return stride(from: 0, to: count, by: size).map { min(size, count - $0) }
        case .varying(let seed):
            var state = UInt32(seed) &* 2_654_435_761 | 1
            var lengths: [Int] = []
            var left = count
            while left > 0 {
                state = state &* 1_664_525 &+ 1_013_904_223
                let length = min(left, Int(state >> 27) + 1)
                lengths.append(length)
                left -= length
            }
            return lengths
        }
    }

    /// `payload` cut into slices by `lengths(for:)`.
    public func slices(of payload: [UInt8]) -> [ArraySlice<UInt8>] {
        var start = 0
        return lengths(for: payload.count).map { length in
            defer { start += length }
            return payload[start..<(start + length)]
        }
    }
}

/// Stops the fuzzer with a message when an invariant of the code under test does not hold (libFuzzer
/// reports the trap as a crash and saves the input).
public func require(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
                    file: StaticString = #fileID, line: UInt = #line) {
    if !condition() { fatalError("invariant violated: \(message())", file: file, line: line) }
}
