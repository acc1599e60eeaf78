// The request parser: a pure state machine over bytes. Feed it any slices of what arrived on a connection;
// `next()` yields complete requests in order (pipelining), `.sendContinue` when a client waiting on
// `Expect: 100-continue` should be told to send its body, nil when it needs more bytes, or throws the
// HTTPParseError whose status the server answers before closing. It never traps on any input: every index is
// checked, every number is parsed with an overflow check, and every size is bounded by HTTPLimits.

public enum HTTPParserEvent: Sendable, Equatable {
    /// The head asked for `Expect: 100-continue`, passed every check, and its body is about to be read.
    case sendContinue
    case request(HTTPRequest)
}

public struct HTTPRequestParser: Sendable {
    public enum Phase: Sendable, Equatable {
        /// No byte of a next request has arrived.
        case idle
        /// Part of a request head has arrived.
        case head
        /// The head is parsed; the body is being read.
        case body
    }

    public let limits: HTTPLimits

    private struct Head: Sendable {
        var method: String
        var target: String
        var version: HTTPVersion
        var headers: HTTPHeaders
        var expectsContinue = false
    }

    private enum Framing { case none, length(Int), chunked }

    private enum State: Sendable {
        case head
        case fixedBody(Head, length: Int)
        case chunkedBody(Head, ChunkedDecoder)
    }

    private var buffer: [UInt8] = []
    /// buffer[..<start] is consumed; every offset below is relative to `start`.
    private var start = 0
    private var state = State.head
    private var scanned = 0
    private var lineStart = 0
    private var requestLineEnd: Int?
    private var headerLines = 0
    private var failure: HTTPParseError?

    public init(limits: HTTPLimits = HTTPLimits()) { self.limits = limits }

    /// Appends bytes that arrived; call `next()` afterwards.
    public mutating func feed<S: Sequence>(_ bytes: S) where S.Element == UInt8 {
        compact()
        buffer.append(contentsOf: bytes)
    }

    public var phase: Phase {
        switch state {
        case .head: return buffer.count > start ? .head : .idle
        case .fixedBody, .chunkedBody: return .body
        }
    }

    /// Bytes fed but not yet consumed by a request.
    public var bufferedByteCount: Int { buffer.count - start }

    /// The next event, or nil when more bytes are needed. After an error, every call throws it again.
    public mutating func next() throws(HTTPParseError) -> HTTPParserEvent? {
        if let failure { throw failure }
        do throws(HTTPParseError) {
            return try step()
        } catch {
            failure = error
            throw error
        }
    }

    private mutating func step() throws(HTTPParseError) -> HTTPParserEvent? {
        switch state {
        case .head:
            guard let (head, framing) = try parseHeadIfComplete() else { return nil }
            switch framing {
            case .none: return finish(head, body: [])
            case .length(let n): state = .fixedBody(head, length: n)
            case .chunked: state = .chunkedBody(head, ChunkedDecoder(limits: limits))
            }
            if head.expectsContinue && buffer.count == start { return .sendContinue }
            return try step()
        case .fixedBody(let head, let length):
            guard buffer.count - start >= length else { return nil }
            let body = Array(buffer[start..<(start + length)])
            start += length
            return finish(head, body: body)
        case .chunkedBody(let head, var decoder):
            state = .head  // drop the state's copy so the decoder's body is uniquely referenced
            let consumed = try decoder.feed(buffer[start...])
            start += consumed
            if decoder.isComplete { return finish(head, body: decoder.body) }
            state = .chunkedBody(head, decoder)
            return nil
        }
    }

    private mutating func finish(_ head: Head, body: [UInt8]) -> HTTPParserEvent {
        state = .head
        scanned = 0
        lineStart = 0
        requestLineEnd = nil
        headerLines = 0
        return .request(HTTPRequest(method: head.method, target: head.target, version: head.version,
                                    headers: head.headers, body: body))
    }

    /// Drops consumed bytes when that is cheap relative to what is kept.
    private mutating func compact() {
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: buffer.capacity <= 1 << 20)
            start = 0
        } else if start >= 64 * 1024 && start * 2 >= buffer.count {
            buffer.removeSubrange(0..<start)
            start = 0
        }
    }

    // MARK: Head

    /// Scans for the end of the head, enforcing the size limits as bytes arrive, and parses it once complete.
    private mutating func parseHeadIfComplete() throws(HTTPParseError) -> (Head, Framing)? {
        if scanned == 0 {  // RFC 9112 §2.2: ignore empty lines before the request line
            while start < buffer.count {
                if buffer[start] == ASCII.lf {
                    start += 1
                } else if buffer[start] == ASCII.cr && start + 1 == buffer.count {
                    return nil  // a CR that may begin an empty line: wait for the next byte
                } else if buffer[start] == ASCII.cr && buffer[start + 1] == ASCII.lf {
                    start += 2
                } else {
                    break
                }
            }
        }
        let available = buffer.count - start
        var index = scanned
        while index < available {
            if buffer[start + index] == ASCII.lf {
                var contentEnd = index
                if contentEnd > lineStart && buffer[start + contentEnd - 1] == ASCII.cr { contentEnd -= 1 }
                if let requestLineEnd {
                    if index + 1 - (requestLineEnd + 1) > limits.maxHeaderBytes { throw .headerSectionTooLarge }
                    if contentEnd == lineStart {
                        let headLength = index + 1
                        let head = try parseHead(buffer[start..<(start + headLength)])
                        start += headLength
                        return head
                    }
                    headerLines += 1
                    if headerLines > limits.maxHeaderCount { throw .tooManyHeaders }
                } else {
                    if contentEnd > limits.maxRequestLineBytes { throw .requestLineTooLong }
                    requestLineEnd = index
                }
                lineStart = index + 1
            }
            index += 1
        }
        scanned = index
        if let requestLineEnd {
            if available - (requestLineEnd + 1) > limits.maxHeaderBytes { throw .headerSectionTooLarge }
        } else if available - 1 > limits.maxRequestLineBytes {  // - 1: room for the CR; no overflow at Int.max
            throw .requestLineTooLong
        }
        return nil
    }

    /// Splits a complete head (ending in its empty line) into lines and validates every one of them.
    private func parseHead(_ bytes: ArraySlice<UInt8>) throws(HTTPParseError) -> (Head, Framing) {
        var lines: [ArraySlice<UInt8>] = []
        var lineBegin = bytes.startIndex
        for index in bytes.indices where bytes[index] == ASCII.lf {
            var end = index
            if end > lineBegin && bytes[end - 1] == ASCII.cr { end -= 1 }
            lines.append(bytes[lineBegin..<end])
            lineBegin = index + 1
        }
        guard let requestLine = lines.first else { throw .malformedRequestLine("empty") }
        let (method, target, version) = try parseRequestLine(requestLine)
        var headers = HTTPHeaders()
        for line in lines.dropFirst() where !line.isEmpty {
            let (name, value) = try parseHeaderField(line)
            headers.add(name, value)
        }
        var head = Head(method: method, target: target, version: version, headers: headers)
        let framing = try determineFraming(of: &head)
        return (head, framing)
    }

    private func parseRequestLine(_ line: ArraySlice<UInt8>) throws(HTTPParseError) -> (String, String, HTTPVersion) {
        let parts = line.split(separator: ASCII.space, maxSplits: 3, omittingEmptySubsequences: false)
        guard parts.count == 3, parts.allSatisfy({ !$0.isEmpty }) else {
            throw .malformedRequestLine("expected `METHOD target HTTP/1.x`: \(HTTPParseError.excerpt(line))")
        }
        guard parts[0].allSatisfy(ASCII.isTokenCharacter) else {
            throw .malformedRequestLine("invalid method \(HTTPParseError.excerpt(parts[0]))")
        }
        guard parts[1].allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw .malformedRequestLine("invalid request target \(HTTPParseError.excerpt(parts[1]))")
        }
        let versionBytes = Array(parts[2])
        let version: HTTPVersion
        switch versionBytes {
        case Array("HTTP/1.1".utf8): version = .http1_1
        case Array("HTTP/1.0".utf8): version = .http1_0
        default:
            let isDigit = { (b: UInt8) in b >= 0x30 && b <= 0x39 }
            if versionBytes.count == 8, versionBytes.starts(with: "HTTP/".utf8), isDigit(versionBytes[5]),
               versionBytes[6] == UInt8(ascii: "."), isDigit(versionBytes[7]) {
                throw .unsupportedVersion(String(decoding: versionBytes, as: UTF8.self))
            }
            throw .malformedRequestLine("invalid HTTP version \(HTTPParseError.excerpt(versionBytes))")
        }
        return (String(decoding: parts[0], as: UTF8.self), String(decoding: parts[1], as: UTF8.self), version)
    }

    /// `field-name ":" OWS field-value OWS`; no whitespace before the colon, no obs-fold, no control
    /// characters, and the value must be UTF-8.
    private func parseHeaderField(_ line: ArraySlice<UInt8>) throws(HTTPParseError) -> (String, String) {
        guard let first = line.first, first != ASCII.space && first != ASCII.tab else {
            throw .malformedHeader("obsolete line folding")
        }
        guard let colon = line.firstIndex(of: ASCII.colon) else {
            throw .malformedHeader("no colon in \(HTTPParseError.excerpt(line))")
        }
        let name = line[line.startIndex..<colon]
        guard !name.isEmpty, name.allSatisfy(ASCII.isTokenCharacter) else {
            throw .malformedHeader("invalid field name \(HTTPParseError.excerpt(name))")
        }
        var value = line[(colon + 1)...]
        while let b = value.first, b == ASCII.space || b == ASCII.tab { value = value.dropFirst() }
        while let b = value.last, b == ASCII.space || b == ASCII.tab { value = value.dropLast() }
        if value.contains(where: { ASCII.isControl($0) && $0 != ASCII.tab }) {
            throw .malformedHeader("control character in the value of \(HTTPParseError.excerpt(name))")
        }
        guard let text = String(validating: value, as: UTF8.self) else {
            throw .malformedHeader("value of \(HTTPParseError.excerpt(name)) is not UTF-8")
        }
        return (String(decoding: name, as: UTF8.self), text)
    }

    // MARK: Framing

    /// Decides how the body is delimited (RFC 9112 §6) and checks Host and Expect. Rejects every ambiguous
    /// framing rather than guessing.
    private func determineFraming(of head: inout Head) throws(HTTPParseError) -> Framing {
        let hosts = head.headers.values(for: "Host")
        if hosts.count > 1 || (head.version == .http1_1 && hosts.isEmpty) { throw .missingHost }

        let framing: Framing
        let lengths = head.headers.values(for: "Content-Length")
        if head.headers.contains("Transfer-Encoding") {
            if !lengths.isEmpty { throw .contentLengthWithTransferEncoding }
            if head.version == .http1_0 { throw .malformedTransferEncoding("sent by an HTTP/1.0 client") }
            let codings = head.headers.tokens(for: "Transfer-Encoding")
            if let unknown = codings.first(where: { $0 != "chunked" }) {
                throw .unsupportedTransferEncoding(String(unknown.prefix(40)))
            }
            guard codings.count == 1 else {
                throw .malformedTransferEncoding(codings.isEmpty ? "empty" : "chunked applied more than once")
            }
            framing = .chunked
        } else if !lengths.isEmpty {
            let length = try HTTPRequestParser.contentLength(lengths)
            if length > limits.maxBodyBytes { throw .bodyTooLarge }
            framing = length == 0 ? .none : .length(length)
        } else {
            framing = .none
        }

        let expectations = head.headers.tokens(for: "Expect")
        if let other = expectations.first(where: { $0 != "100-continue" }) {
            throw .unsupportedExpectation(String(other.prefix(40)))
        }
        // RFC 9110 §10.1.1: a 100-continue expectation in an HTTP/1.0 request is ignored.
        head.expectsContinue = !expectations.isEmpty && head.version == .http1_1
        return framing
    }

    /// One or more Content-Length fields, each possibly a list: all elements must be digits and equal.
    /// Values too large for Int saturate to Int.max (they are over any body limit anyway).
    static func contentLength(_ values: [String]) throws(HTTPParseError) -> Int {
        var result: Int?
        for value in values {
            for element in value.split(separator: ",", omittingEmptySubsequences: false) {
                let digits = HTTPHeaders.trimmingWhitespace(element).utf8
                guard !digits.isEmpty, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
                    throw .invalidContentLength("not a decimal number: \(HTTPParseError.excerpt(Array(element.utf8)))")
                }
                var n = 0
                for digit in digits {
                    let (times10, o1) = n.multipliedReportingOverflow(by: 10)
                    let (sum, o2) = times10.addingReportingOverflow(Int(digit - 0x30))
                    if o1 || o2 { n = Int.max; break }
                    n = sum
                }
                if let result, result != n { throw .invalidContentLength("conflicting values") }
                result = n
            }
        }
        return result ?? 0
    }
}
