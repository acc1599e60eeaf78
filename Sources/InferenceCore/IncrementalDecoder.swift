// Streaming detokenization. Tokens of a byte-level vocabulary can end in the middle of a UTF-8 character
// (an emoji is often two or three tokens), so the decoder holds bytes back until the character they start
// is complete, and never emits a broken sequence. The concatenation of everything it returns equals
// `decode` of all the ids at once, invalid bytes included (each becomes U+FFFD as soon as it is certain
// that no later byte can complete it).

/// Turns token ids into text as they are produced.
public struct IncrementalDecoder: Sendable {
    private let tokenizer: BPETokenizer
    private let skipSpecialTokens: Bool
    private var repair = UTF8Repair()

    public init(tokenizer: BPETokenizer, skipSpecialTokens: Bool = false) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// Adds one token; returns the text it completes (possibly empty while a character is unfinished).
    public mutating func append(_ id: Int) -> String {
        guard tokenizer.hasToken(id), !(skipSpecialTokens && tokenizer.isSpecial(id)) else { return "" }
        return repair.take(tokenizer.tokenBytes(id), final: false)
    }

    /// Ends the stream: whatever is held back (an unfinished character) comes out as U+FFFD, as `decode`
    /// would write it. The decoder can be used again afterwards for a new stream.
    public mutating func finish() -> String {
        repair.take([], final: true)
    }

    /// Whether bytes of an unfinished character are being held back.
    public var hasPendingBytes: Bool { repair.hasPendingBytes }
}

/// Lossy UTF-8 decoding that can be fed in pieces, with the Unicode "maximal subpart" substitution that
/// Rust's `String::from_utf8_lossy` (and so the reference decoder) uses: each maximal prefix of a
/// well-formed sequence that cannot be completed becomes one U+FFFD, as does each byte that cannot start
/// one.
struct UTF8Repair: Sendable {
    private var pending: [UInt8] = []

    var hasPendingBytes: Bool { !pending.isEmpty }

    /// Appends `bytes` and returns the text that is now certain. With `final`, nothing is held back.
    mutating func take(_ bytes: [UInt8], final: Bool) -> String {
        let input: [UInt8]
        if pending.isEmpty {
            input = bytes
        } else {
            input = pending + bytes
            pending.removeAll()
        }
        var output: [UInt8] = []
        output.reserveCapacity(input.count)
        var index = 0
        let count = input.count
        while index < count {
            let lead = input[index]
            if lead < 0x80 {
                output.append(lead)
                index += 1
                continue
            }
            let (length, secondLow, secondHigh) = Self.sequenceShape(lead)
            guard length > 0 else {
                output.append(contentsOf: Self.replacement)
                index += 1
                continue
            }
            // How many bytes from `index` on form a valid prefix of a sequence of `length` bytes.
            var valid = 1
            while valid < length && index + valid < count {
                let byte = input[index + valid]
                let (low, high): (UInt8, UInt8) = valid == 1 ? (secondLow, secondHigh) : (0x80, 0xBF)
                guard byte >= low && byte <= high else { break }
                valid += 1
            }
            if valid == length {
                output.append(contentsOf: input[index..<(index + length)])
                index += length
            } else if index + valid == count && !final {
                pending = Array(input[index...])  // may still be completed by the next bytes
                break
            } else {
                output.append(contentsOf: Self.replacement)
                index += valid
            }
        }
        return String(decoding: output, as: UTF8.self)
    }

    private static let replacement: [UInt8] = [0xEF, 0xBF, 0xBD]

    /// The length of the sequence a lead byte starts and the range allowed for its second byte
    /// (Unicode Table 3-7); length 0 for a byte that cannot start a sequence.
    @inline(__always)
    private static func sequenceShape(_ lead: UInt8) -> (Int, UInt8, UInt8) {
        switch lead {
        case 0xC2...0xDF: return (2, 0x80, 0xBF)
        case 0xE0: return (3, 0xA0, 0xBF)
        case 0xE1...0xEC, 0xEE...0xEF: return (3, 0x80, 0xBF)
        case 0xED: return (3, 0x80, 0x9F)
        case 0xF0: return (4, 0x90, 0xBF)
        case 0xF1...0xF3: return (4, 0x80, 0xBF)
        case 0xF4: return (4, 0x80, 0x8F)
        default: return (0, 0, 0)
        }
    }
}
