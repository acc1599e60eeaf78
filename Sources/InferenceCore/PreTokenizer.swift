// The ByteLevel pre-tokenizer of GPT-2-style tokenizers: the split regex
//
//     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// written out as a matcher over the Unicode scalars of UTF-8 text, and the reversible table that maps each
// byte to a printable character (the alphabet the vocabulary is written in).
//
// The reference regex engine (Oniguruma inside HF `tokenizers`) classifies scalars with Unicode 16.0 data.
// Swift's tables are newer; scalars first assigned in Unicode 17.0 or later are "other" to the reference,
// so they are "other" here too (pinned by a test over every scalar).

/// GPT-2's byte ↔ character table: printable Latin-1 bytes stand for themselves, the other 68 bytes take
/// the characters from U+0100 on, in byte order (so the space 0x20 is written "Ġ", U+0120).
enum ByteLevelAlphabet {
    /// The scalar value that stands for each byte.
    static let scalarForByte: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for byte in 0..<256 {
            let printable = (0x21...0x7E).contains(byte) || (0xA1...0xAC).contains(byte) || (0xAE...0xFF).contains(byte)
            if printable {
                table[byte] = UInt32(byte)
            } else {
                table[byte] = next
                next += 1
            }
        }
        return table
    }()

    /// The byte a scalar stands for, indexed by scalar value (all are below 0x144); -1 where none.
    private static let byteForScalar: [Int16] = {
        var table = [Int16](repeating: -1, count: 0x144)
        for (byte, scalar) in scalarForByte.enumerated() { table[Int(scalar)] = Int16(byte) }
        return table
    }()

    @inline(__always)
    static func byte(forScalar value: UInt32) -> UInt8? {
        guard value < 0x144 else { return nil }
        let byte = byteForScalar[Int(value)]
        return byte < 0 ? nil : UInt8(byte)
    }

    /// The token string for raw bytes, as the vocabulary writes it.
    static func encode<S: Sequence<UInt8>>(_ bytes: S) -> String {
        var scalars = String.UnicodeScalarView()
        for byte in bytes { scalars.append(Unicode.Scalar(scalarForByte[Int(byte)])!) }
        return String(scalars)
    }

    /// The raw bytes of a token string when every character of it is in the table, nil otherwise.
    static func decode(_ token: String) -> [UInt8]? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(token.unicodeScalars.count)
        for scalar in token.unicodeScalars {
            guard let byte = byte(forScalar: scalar.value) else { return nil }
            bytes.append(byte)
        }
        return bytes
    }
}

/// How the split regex sees a scalar.
enum SplitClass: UInt8 {
    case letter, number, whitespace, other
}

/// Unicode classification, as the reference tokenizer's regex engines see it.
enum ScalarClasses {
    private static let ascii: [SplitClass] = (0..<128).map { value -> SplitClass in
        switch UInt8(value) {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"): return .letter
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return .number
        case 0x09...0x0D, 0x20: return .whitespace
        default: return .other
        }
    }

    /// Scalars assigned after the Unicode version the reference engines know (16.0) are unassigned there.
    @inline(__always)
    private static func knownToReference(_ properties: Unicode.Scalar.Properties) -> Bool {
        guard let age = properties.age else { return false }
        return age.major <= 16
    }

    /// `\p{L}`, `\p{N}`, `\s` (White_Space) or none of them.
    @inline(__always)
    static func splitClass(_ value: UInt32) -> SplitClass {
        if value < 128 { return ascii[Int(value)] }
        guard let scalar = Unicode.Scalar(value) else { return .other }
        let properties = scalar.properties
        if properties.isWhitespace { return .whitespace }
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return knownToReference(properties) ? .letter : .other
        case .decimalNumber, .letterNumber, .otherNumber:
            return knownToReference(properties) ? .number : .other
        default:
            return .other
        }
    }

    /// `\s`: the White_Space property.
    @inline(__always)
    static func isWhitespace(_ value: UInt32) -> Bool {
        splitClass(value) == .whitespace
    }

    /// `\w` of Rust's regex crate (used by added tokens' `single_word`): Alphabetic, marks, decimal
    /// numbers, connector punctuation and joiners.
    static func isWordCharacter(_ value: UInt32) -> Bool {
        if value < 128 {
            return ascii[Int(value)] == .letter || ascii[Int(value)] == .number || value == UInt32(UInt8(ascii: "_"))
        }
        guard let scalar = Unicode.Scalar(value) else { return false }
        let properties = scalar.properties
        guard knownToReference(properties) else { return false }
        if properties.isAlphabetic || properties.isJoinControl { return true }
        switch properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }
}

/// UTF-8 stepping over text that is known to be valid (it comes from a Swift `String`).
enum UTF8Scalars {
    /// The scalar starting at `index` and its length in bytes.
    @inline(__always)
    static func decode(_ bytes: UnsafeBufferPointer<UInt8>, at index: Int) -> (value: UInt32, length: Int) {
        let lead = UInt32(bytes[index])
        if lead < 0x80 { return (lead, 1) }
        let count = bytes.count
        @inline(__always) func continuation(_ offset: Int) -> UInt32 {
            index + offset < count ? UInt32(bytes[index + offset] & 0x3F) : 0
        }
        if lead < 0xE0 { return (((lead & 0x1F) << 6) | continuation(1), 2) }
        if lead < 0xF0 { return (((lead & 0x0F) << 12) | (continuation(1) << 6) | continuation(2), 3) }
        return (((lead & 0x07) << 18) | (continuation(1) << 12) | (continuation(2) << 6) | continuation(3), 4)
    }

    /// The start of the scalar that ends at `end` (exclusive), not before `lowerBound`.
    @inline(__always)
    static func start(before end: Int, in bytes: UnsafeBufferPointer<UInt8>, lowerBound: Int) -> Int {
        var start = end - 1
        while start > lowerBound && bytes[start] & 0xC0 == 0x80 { start -= 1 }
        return start
    }
}

/// The GPT-2 split regex (`Isolated`: every match is its own piece; the alternatives cover every scalar,
/// so nothing lies between matches).
enum GPT2Split {
    /// Calls `body` with the byte range of each piece of `bytes`, in order.
    static func split(_ bytes: UnsafeBufferPointer<UInt8>, _ body: (Range<Int>) -> Void) {
        let count = bytes.count
        var index = 0
        while index < count {
            let (value, length) = UTF8Scalars.decode(bytes, at: index)
            if value == 0x27, let end = contractionEnd(bytes, at: index) {
                body(index..<end)
                index = end
                continue
            }
            // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional space, then a run of one class.
            var runStart = index
            var runClass = ScalarClasses.splitClass(value)
            var runLength = length
            if value == 0x20 && index + 1 < count {
                let (next, nextLength) = UTF8Scalars.decode(bytes, at: index + 1)
                let nextClass = ScalarClasses.splitClass(next)
                if nextClass != .whitespace {
                    runStart = index + 1
                    runClass = nextClass
                    runLength = nextLength
                }
            }
            if runClass != .whitespace {
                var end = runStart + runLength
                while end < count {
                    let (next, nextLength) = UTF8Scalars.decode(bytes, at: end)
                    guard ScalarClasses.splitClass(next) == runClass else { break }
                    end += nextLength
                }
                body(index..<end)
                index = end
                continue
            }
            // `\s+(?!\S)` takes a whitespace run but leaves its last scalar to the next piece when a
            // non-space follows; `\s+` takes a lone whitespace scalar before a non-space.
            var end = index + length
            var lastStart = index
            while end < count {
                let (next, nextLength) = UTF8Scalars.decode(bytes, at: end)
                guard ScalarClasses.splitClass(next) == .whitespace else { break }
                lastStart = end
                end += nextLength
            }
            if end == count || lastStart == index {
                body(index..<end)
                index = end
            } else {
                body(index..<lastStart)
                index = lastStart
            }
        }
    }

    /// `'s|'t|'re|'ve|'m|'ll|'d` at an apostrophe (case-sensitive, ASCII only).
    @inline(__always)
    private static func contractionEnd(_ bytes: UnsafeBufferPointer<UInt8>, at index: Int) -> Int? {
        guard index + 1 < bytes.count else { return nil }
        switch bytes[index + 1] {
        case UInt8(ascii: "s"), UInt8(ascii: "t"), UInt8(ascii: "m"), UInt8(ascii: "d"):
            return index + 2
        case UInt8(ascii: "r"), UInt8(ascii: "v"):
            return index + 2 < bytes.count && bytes[index + 2] == UInt8(ascii: "e") ? index + 3 : nil
        case UInt8(ascii: "l"):
            return index + 2 < bytes.count && bytes[index + 2] == UInt8(ascii: "l") ? index + 3 : nil
        default:
            return nil
        }
    }
}

/// The pre-tokenizers this tokenizer supports: `ByteLevel`, optionally preceded by one `Split` that uses
/// the same GPT-2 pattern (the form a `Sequence` pre-tokenizer takes). Each step runs on every piece the
/// step before produced, as in the reference.
struct ByteLevelPreTokenizer: Sendable, Equatable {
    /// A `Split` with the GPT-2 pattern runs before the ByteLevel step.
    var splitFirst: Bool
    /// ByteLevel's `add_prefix_space`: each piece that does not start with a space gets one.
    var addPrefixSpace: Bool
    /// ByteLevel's `use_regex`: split with the GPT-2 pattern (after adding the prefix space).
    var useRegex: Bool

    /// Calls `body` with each word of `piece` (a stretch of text between added tokens), as raw bytes.
    func forEachWord(in piece: UnsafeBufferPointer<UInt8>, _ body: (UnsafeBufferPointer<UInt8>) -> Void) {
        guard !piece.isEmpty else { return }
        if splitFirst {
            GPT2Split.split(piece) { range in
                byteLevelStep(UnsafeBufferPointer(rebasing: piece[range]), body)
            }
        } else {
            byteLevelStep(piece, body)
        }
    }

    private func byteLevelStep(_ piece: UnsafeBufferPointer<UInt8>, _ body: (UnsafeBufferPointer<UInt8>) -> Void) {
        guard !piece.isEmpty else { return }
        if addPrefixSpace && piece[0] != 0x20 {
            var prefixed: [UInt8] = [0x20]
            prefixed.append(contentsOf: piece)
            prefixed.withUnsafeBufferPointer { regexStep($0, body) }
        } else {
            regexStep(piece, body)
        }
    }

    private func regexStep(_ piece: UnsafeBufferPointer<UInt8>, _ body: (UnsafeBufferPointer<UInt8>) -> Void) {
        if useRegex {
            GPT2Split.split(piece) { range in body(UnsafeBufferPointer(rebasing: piece[range])) }
        } else {
            body(piece)
        }
    }
}
