// Decodes a chunked request body (RFC 9112 §7.1) incrementally: feed it any slices of bytes; it consumes
// exactly up to the end of the body (the rest belongs to the next pipelined request). Chunk extensions and
// trailer fields are validated for framing and discarded. CRLF is required everywhere: a lenient line ending
// here is what request smuggling between disagreeing parsers is made of.

public struct ChunkedDecoder: Sendable {
    public let maxBodyBytes: Int
    public let maxLineBytes: Int
    public let maxTrailerBytes: Int

    /// The decoded body so far; complete once `isComplete`.
    public private(set) var body: [UInt8] = []
    public var isComplete: Bool { state == .done }

    private enum State: Sendable, Equatable {
        case sizeLine
        case data(remaining: Int)
        case dataCR
        case dataLF
        case trailerLine
        case done
    }

    private var state = State.sizeLine
    private var line: [UInt8] = []
    private var trailerBytes = 0

    public init(maxBodyBytes: Int, maxLineBytes: Int = 1024, maxTrailerBytes: Int = 8 * 1024) {
        self.maxBodyBytes = max(0, maxBodyBytes)
        self.maxLineBytes = max(1, maxLineBytes)
        self.maxTrailerBytes = max(0, maxTrailerBytes)
    }

    public init(limits: HTTPLimits) {
        self.init(maxBodyBytes: limits.maxBodyBytes, maxLineBytes: limits.maxChunkLineBytes,
                  maxTrailerBytes: limits.maxTrailerBytes)
    }

    /// Consumes bytes of the chunked body from the front of `bytes` and returns how many it took (all of them
    /// unless the body ended inside the slice). Throws on a framing error or when the body exceeds its limit.
    public mutating func feed<C: Collection>(_ bytes: C) throws(HTTPParseError) -> Int where C.Element == UInt8 {
        var index = bytes.startIndex
        var consumed = 0
        while index != bytes.endIndex && state != .done {
            if case .data(let remaining) = state {
                let take = min(remaining, bytes.distance(from: index, to: bytes.endIndex))
                let end = bytes.index(index, offsetBy: take)
                body.append(contentsOf: bytes[index..<end])
                index = end
                consumed += take
                state = remaining == take ? .dataCR : .data(remaining: remaining - take)
                continue
            }
            let byte = bytes[index]
            index = bytes.index(after: index)
            consumed += 1
            switch state {
            case .dataCR:
                guard byte == ASCII.cr else { throw .malformedChunk("chunk data not followed by CRLF") }
                state = .dataLF
            case .dataLF:
                guard byte == ASCII.lf else { throw .malformedChunk("chunk data not followed by CRLF") }
                state = .sizeLine
            case .sizeLine, .trailerLine:
                try take(byte)
            case .data, .done:
                break  // handled above / loop condition
            }
        }
        return consumed
    }

    private mutating func take(_ byte: UInt8) throws(HTTPParseError) {
        if byte == ASCII.lf {
            guard line.last == ASCII.cr else { throw .malformedChunk("line not ended by CRLF") }
            line.removeLast()
            if state == .sizeLine {
                try beginChunk(sizeLine: line)
            } else if line.isEmpty {
                state = .done
            } else {
                try checkTrailer(line)
                trailerBytes += line.count + 2
            }
            line.removeAll(keepingCapacity: true)
            return
        }
        if line.last == ASCII.cr { throw .malformedChunk("bare CR in chunk framing") }
        line.append(byte)
        if state == .sizeLine {
            if line.count - 1 > maxLineBytes { throw .malformedChunk("chunk size line too long") }
        } else if trailerBytes + line.count - 1 > maxTrailerBytes {
            throw .trailerSectionTooLarge
        }
    }

    /// `chunk-size [ BWS ";" chunk-ext ]`: hex digits, then optionally extensions, which are ignored.
    private mutating func beginChunk(sizeLine: [UInt8]) throws(HTTPParseError) {
        var index = 0
        var size = 0
        var overflowed = false
        while index < sizeLine.count, let digit = ASCII.hexValue(sizeLine[index]) {
            if size > (Int.max - 15) / 16 { overflowed = true } else { size = size * 16 + digit }
            index += 1
        }
        guard index > 0 else {
            throw .malformedChunk("chunk size is not hexadecimal: \(HTTPParseError.excerpt(sizeLine))")
        }
        let digitsEnd = index
        while index < sizeLine.count, sizeLine[index] == ASCII.space || sizeLine[index] == ASCII.tab { index += 1 }
        if index == sizeLine.count && index != digitsEnd {
            throw .malformedChunk("whitespace after chunk size without an extension")
        }
        if index < sizeLine.count {
            guard sizeLine[index] == ASCII.semicolon else {
                throw .malformedChunk("junk after chunk size: \(HTTPParseError.excerpt(sizeLine))")
            }
            for byte in sizeLine[index...] where ASCII.isControl(byte) && byte != ASCII.tab {
                throw .malformedChunk("control character in chunk extension")
            }
        }
        if overflowed || size > maxBodyBytes - body.count { throw .bodyTooLarge }
        state = size == 0 ? .trailerLine : .data(remaining: size)
    }

    private func checkTrailer(_ field: [UInt8]) throws(HTTPParseError) {
        guard let colon = field.firstIndex(of: ASCII.colon), colon > 0,
              field[..<colon].allSatisfy(ASCII.isTokenCharacter) else {
            throw .malformedChunk("malformed trailer field: \(HTTPParseError.excerpt(field))")
        }
        for byte in field[(colon + 1)...] where ASCII.isControl(byte) && byte != ASCII.tab {
            throw .malformedChunk("control character in trailer field")
        }
    }
}

/// Byte constants and classes of the HTTP grammar (RFC 9110 §5.6).
enum ASCII {
    static let tab: UInt8 = 0x09
    static let lf: UInt8 = 0x0A
    static let cr: UInt8 = 0x0D
    static let space: UInt8 = 0x20
    static let colon: UInt8 = 0x3A
    static let semicolon: UInt8 = 0x3B

    static func isControl(_ byte: UInt8) -> Bool { byte < 0x20 || byte == 0x7F }

    /// `tchar`: the characters of a token (method, header name, transfer coding).
    static func isTokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
             UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
             UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default: return false
        }
    }

    static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case 0x30...0x39: return Int(byte - 0x30)
        case 0x41...0x46: return Int(byte - 0x41 + 10)
        case 0x61...0x66: return Int(byte - 0x61 + 10)
        default: return nil
        }
    }
}
