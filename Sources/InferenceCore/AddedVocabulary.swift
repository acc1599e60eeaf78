// Added tokens (special and not): found in the text before pre-tokenization and encoded as themselves.
//
// As in HF `tokenizers`, tokens with `normalized: false` are searched first over the whole text, then
// tokens with `normalized: true` over the stretches left between them (there is no normalizer, so both
// searches see the original text). Each search takes the leftmost match, the longest among those starting
// there, and continues after it; `single_word` drops a match touching a word character (the match still
// consumes its text), `lstrip`/`rstrip` widen the token over the whitespace beside it.

struct AddedToken: Sendable, Equatable {
    var id: Int
    var content: String
    var special: Bool
    var singleWord: Bool
    var lstrip: Bool
    var rstrip: Bool
    var normalized: Bool
}

/// A piece of the text after added tokens are taken out: either text to pre-tokenize or a token id.
enum AddedTokenSegment: Equatable {
    case text(Range<Int>)
    case token(Int)
}

/// One search pass: a byte trie over the contents of some added tokens.
struct AddedTokenMatcher: Sendable {
    private struct Node: Sendable {
        var children: [UInt8: Int32] = [:]
        /// Index into `tokens` of the token that ends here, or -1.
        var token: Int32 = -1
    }

    private let tokens: [AddedToken]
    private var nodes: [Node] = [Node()]
    private var firstBytes = [Bool](repeating: false, count: 256)

    var isEmpty: Bool { tokens.isEmpty }

    init(tokens: [AddedToken]) {
        self.tokens = tokens
        for (index, token) in tokens.enumerated() {
            var node = 0
            for byte in token.content.utf8 {
                if let child = nodes[node].children[byte] {
                    node = Int(child)
                } else {
                    nodes.append(Node())
                    nodes[node].children[byte] = Int32(nodes.count - 1)
                    node = nodes.count - 1
                }
            }
            // The loader rejects duplicate contents, so the first token ending here is the only one.
            if nodes[node].token < 0 { nodes[node].token = Int32(index) }
            if let first = token.content.utf8.first { firstBytes[Int(first)] = true }
        }
    }

    /// The longest token starting at `start` and ending by `end`: its index and end offset.
    @inline(__always)
    private func longestMatch(_ bytes: UnsafeBufferPointer<UInt8>, at start: Int, end: Int) -> (Int, Int)? {
        guard firstBytes[Int(bytes[start])] else { return nil }
        var node = 0
        var best: (Int, Int)?
        var position = start
        while position < end, let child = nodes[node].children[bytes[position]] {
            node = Int(child)
            position += 1
            if nodes[node].token >= 0 { best = (Int(nodes[node].token), position) }
        }
        return best
    }

    /// Splits `bytes[range]` (the whole "sentence" for this pass) into text and tokens, appending to
    /// `segments`. As in the reference, a token found inside the whitespace an `rstrip` token took is
    /// still emitted.
    func split(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, into segments: inout [AddedTokenSegment]) {
        let lower = range.lowerBound, upper = range.upperBound
        var segmentStart = lower
        var position = lower
        while position < upper {
            guard let (index, matchEnd) = longestMatch(bytes, at: position, end: upper) else {
                position += 1
                continue
            }
            let token = tokens[index]
            var start = position
            var stop = matchEnd
            position = matchEnd
            if token.singleWord {
                let wordBefore = start > lower && endsWithWordCharacter(bytes, lower, start)
                let wordAfter = stop < upper && startsWithWordCharacter(bytes, stop, upper)
                if wordBefore || wordAfter { continue }
            }
            if token.lstrip {
                start = max(leadingWhitespaceStart(bytes, lower, start), segmentStart)
            }
            if token.rstrip {
                stop = trailingWhitespaceEnd(bytes, stop, upper)
            }
            if segmentStart < start { segments.append(.text(segmentStart..<start)) }
            segments.append(.token(token.id))
            segmentStart = stop
        }
        if segmentStart != upper { segments.append(.text(segmentStart..<upper)) }
    }

    private func endsWithWordCharacter(_ bytes: UnsafeBufferPointer<UInt8>, _ lower: Int, _ end: Int) -> Bool {
        let start = UTF8Scalars.start(before: end, in: bytes, lowerBound: lower)
        return ScalarClasses.isWordCharacter(UTF8Scalars.decode(bytes, at: start).value)
    }

    private func startsWithWordCharacter(_ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ upper: Int) -> Bool {
        ScalarClasses.isWordCharacter(UTF8Scalars.decode(bytes, at: start).value)
    }

    /// Where the whitespace that ends at `end` starts (`\s*$` over `bytes[lower..<end]`).
    private func leadingWhitespaceStart(_ bytes: UnsafeBufferPointer<UInt8>, _ lower: Int, _ end: Int) -> Int {
        var start = end
        while start > lower {
            let previous = UTF8Scalars.start(before: start, in: bytes, lowerBound: lower)
            guard ScalarClasses.isWhitespace(UTF8Scalars.decode(bytes, at: previous).value) else { break }
            start = previous
        }
        return start
    }

    /// Where the whitespace that starts at `start` ends (`^\s*` over `bytes[start..<upper]`).
    private func trailingWhitespaceEnd(_ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ upper: Int) -> Int {
        var end = start
        while end < upper {
            let (value, length) = UTF8Scalars.decode(bytes, at: end)
            guard ScalarClasses.isWhitespace(value) else { break }
            end += length
        }
        return end
    }
}

/// Both search passes.
struct AddedVocabulary: Sendable {
    let tokens: [AddedToken]
    private let unnormalized: AddedTokenMatcher
    private let normalized: AddedTokenMatcher

    init(tokens: [AddedToken]) {
        self.tokens = tokens
        unnormalized = AddedTokenMatcher(tokens: tokens.filter { !$0.normalized })
        normalized = AddedTokenMatcher(tokens: tokens.filter { $0.normalized })
    }

    /// The text split into non-empty text stretches and added tokens.
    func segments(of bytes: UnsafeBufferPointer<UInt8>) -> [AddedTokenSegment] {
        var first: [AddedTokenSegment] = []
        if unnormalized.isEmpty {
            first = [.text(0..<bytes.count)]
        } else {
            unnormalized.split(bytes, 0..<bytes.count, into: &first)
        }
        var second: [AddedTokenSegment] = []
        for segment in first {
            guard case .text(let range) = segment, !range.isEmpty else {
                second.append(segment)
                continue
            }
            if normalized.isEmpty {
                second.append(segment)
            } else {
                normalized.split(bytes, range, into: &second)
            }
        }
        return second.filter { if case .text(let range) = $0 { return !range.isEmpty } else { return true } }
    }
}
