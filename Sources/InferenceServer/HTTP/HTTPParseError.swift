// Every way a request can fail to parse, each with the status the server answers before closing.

public enum HTTPParseError: Error, Sendable, Equatable, CustomStringConvertible {
    case requestLineTooLong                 // 414
    case headerSectionTooLarge              // 431
    case tooManyHeaders                     // 431
    case trailerSectionTooLarge             // 431
    case bodyTooLarge                       // 413
    case malformedRequestLine(String)       // 400
    case malformedHeader(String)            // 400
    case unsupportedVersion(String)         // 505
    case missingHost                        // 400
    case invalidContentLength(String)       // 400: not digits, or differing values
    case contentLengthWithTransferEncoding  // 400: ambiguous framing (request smuggling)
    case malformedTransferEncoding(String)  // 400: chunked not last, repeated, or sent by HTTP/1.0
    case unsupportedTransferEncoding(String) // 501
    case malformedChunk(String)             // 400
    case unsupportedExpectation(String)     // 417

    public var status: HTTPStatus {
        switch self {
        case .requestLineTooLong: return .uriTooLong
        case .headerSectionTooLarge, .tooManyHeaders, .trailerSectionTooLarge: return .requestHeaderFieldsTooLarge
        case .bodyTooLarge: return .contentTooLarge
        case .unsupportedVersion: return .httpVersionNotSupported
        case .unsupportedTransferEncoding: return .notImplemented
        case .unsupportedExpectation: return .expectationFailed
        case .malformedRequestLine, .malformedHeader, .missingHost, .invalidContentLength,
             .contentLengthWithTransferEncoding, .malformedTransferEncoding, .malformedChunk:
            return .badRequest
        }
    }

    /// A message safe to show the client (it never echoes more than a short excerpt of the input).
    public var description: String {
        switch self {
        case .requestLineTooLong: return "request line is too long"
        case .headerSectionTooLarge: return "request header section is too large"
        case .tooManyHeaders: return "request has too many header fields"
        case .trailerSectionTooLarge: return "chunked trailer section is too large"
        case .bodyTooLarge: return "request body is too large"
        case .malformedRequestLine(let why): return "malformed request line: \(why)"
        case .malformedHeader(let why): return "malformed header field: \(why)"
        case .unsupportedVersion(let version): return "unsupported HTTP version \(version)"
        case .missingHost: return "HTTP/1.1 request needs exactly one Host header"
        case .invalidContentLength(let why): return "invalid Content-Length: \(why)"
        case .contentLengthWithTransferEncoding: return "request has both Content-Length and Transfer-Encoding"
        case .malformedTransferEncoding(let why): return "malformed Transfer-Encoding: \(why)"
        case .unsupportedTransferEncoding(let coding): return "unsupported transfer coding \(coding)"
        case .malformedChunk(let why): return "malformed chunked body: \(why)"
        case .unsupportedExpectation(let value): return "unsupported expectation \(value)"
        }
    }

    /// Renders at most `limit` bytes of input as printable ASCII for an error message.
    static func excerpt(_ bytes: some Collection<UInt8>, limit: Int = 40) -> String {
        var out = ""
        for byte in bytes.prefix(limit) {
            out += (byte >= 0x20 && byte < 0x7F) ? String(UnicodeScalar(byte)) : "\\x" + String(byte, radix: 16)
        }
        if bytes.count > limit { out += "..." }
        return out
    }
}
