// Stop sequences on decoded text, fed piece by piece as tokens are decoded. Text is released only once it cannot
// be the start of a stop sequence, so a stream never shows part of a stop string: the longest tail that is a
// proper prefix of some stop sequence is held back until the next piece decides it. When a stop sequence appears,
// the text before it is released and everything from it on is dropped. Works on Unicode scalars, so a split
// never falls inside a character's encoding.

public struct StopSequenceMatcher: Sendable, Equatable {
    public let stops: [[Unicode.Scalar]]
    private var held: [Unicode.Scalar] = []
    /// True once a stop sequence has matched; later input is ignored.
    public private(set) var matched = false

    public init(_ stops: [String]) {
        self.stops = stops.filter { !$0.isEmpty }.map { Array($0.unicodeScalars) }
    }

    /// Adds decoded text; returns the text that is now safe to release (possibly empty).
    public mutating func push(_ text: String) -> String {
        guard !matched else { return "" }
        if stops.isEmpty { return text }
        held += text.unicodeScalars
        if let start = firstMatch() {
            matched = true
            let out = String(String.UnicodeScalarView(held[..<start]))
            held = []
            return out
        }
        let keep = longestPrefixTail()
        let out = String(String.UnicodeScalarView(held[..<(held.count - keep)]))
        held.removeFirst(held.count - keep)
        return out
    }

    /// The end of the text: whatever is held back was not a stop sequence after all.
    public mutating func flush() -> String {
        defer { held = [] }
        return matched ? "" : String(String.UnicodeScalarView(held))
    }

    /// Where the earliest stop sequence starts in the held text.
    private func firstMatch() -> Int? {
        var best: Int?
        for stop in stops where stop.count <= held.count {
            var i = 0
            while i + stop.count <= held.count, i < (best ?? Int.max) {
                if held[i] == stop[0] && held[i..<(i + stop.count)].elementsEqual(stop) {
                    best = i
                    break
                }
                i += 1
            }
        }
        return best
    }

    /// The length of the longest tail of the held text that is a proper prefix of some stop sequence.
    private func longestPrefixTail() -> Int {
        var longest = 0
        for stop in stops {
            var n = min(stop.count - 1, held.count)
            while n > longest {
                if held[(held.count - n)...].elementsEqual(stop[..<n]) {
                    longest = n
                    break
                }
                n -= 1
            }
        }
        return longest
    }
}
