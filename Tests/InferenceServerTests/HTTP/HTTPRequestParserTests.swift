import XCTest
import TestSupport
@testable import InferenceServer

final class HTTPRequestParserTests: XCTestCase {
    private let limits = HTTPLimits(maxRequestLineBytes: 64, maxHeaderBytes: 256, maxHeaderCount: 5, maxBodyBytes: 100,
                                    maxChunkLineBytes: 32, maxTrailerBytes: 64)

    /// Feeds everything at once and collects events until the parser needs more.
    private func events(_ text: String, limits: HTTPLimits? = nil) throws(HTTPParseError) -> [HTTPParserEvent] {
        var parser = HTTPRequestParser(limits: limits ?? self.limits)
        parser.feed(Array(text.utf8))
        var out: [HTTPParserEvent] = []
        while let event = try parser.next() { out.append(event) }
        return out
    }

    private func request(_ text: String) throws -> HTTPRequest {
        let all = try events(text)
        guard all.count == 1, case .request(let request) = all[0] else {
            XCTFail("expected one request, got \(all)")
            throw HTTPParseError.malformedRequestLine("test")
        }
        return request
    }

    private func assertRejects(_ text: String, _ expected: HTTPParseError, status: Int,
                               file: StaticString = #filePath, line: UInt = #line) {
        do {
            let got = try events(text)
            XCTFail("expected \(expected), parsed \(got)", file: file, line: line)
        } catch {
            XCTAssertEqual(error, expected, file: file, line: line)
            XCTAssertEqual(error.status.code, status, file: file, line: line)
        }
    }

    private func assertRejects(_ text: String, status: Int, file: StaticString = #filePath, line: UInt = #line) {
        do {
            let got = try events(text)
            XCTFail("expected status \(status), parsed \(got)", file: file, line: line)
        } catch {
            XCTAssertEqual(error.status.code, status, "\(error)", file: file, line: line)
        }
    }

    // MARK: Well-formed requests

    func testParsesRequestLineHeadersAndContentLengthBody() throws {
        let r = try request("POST /v1/completions?stream=1 HTTP/1.1\r\nHost: x\r\ncontent-length: 5\r\nX-A: 1\r\nX-A:  2 \r\n\r\nhello")
        XCTAssertEqual(r.method, "POST")
        XCTAssertEqual(r.target, "/v1/completions?stream=1")
        XCTAssertEqual(r.path, "/v1/completions")
        XCTAssertEqual(r.query, "stream=1")
        XCTAssertEqual(r.version, .http1_1)
        XCTAssertEqual(r.headers["Content-Length"], "5")
        XCTAssertEqual(r.headers.values(for: "x-a"), ["1", "2"])
        XCTAssertEqual(r.body, Array("hello".utf8))
        XCTAssertTrue(r.keepAlive)
    }

    func testToleratesLeadingEmptyLinesAndBareLineFeeds() throws {
        let r = try request("\r\n\nGET / HTTP/1.1\nHost: x\n\n")
        XCTAssertEqual(r.method, "GET")
        XCTAssertEqual(r.headers["host"], "x")
    }

    func testHTTP10NeedsNoHostAndClosesUnlessKeepAlive() throws {
        XCTAssertFalse(try request("GET / HTTP/1.0\r\n\r\n").keepAlive)
        XCTAssertTrue(try request("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keepAlive)
        XCTAssertFalse(try request("GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, close\r\n\r\n").keepAlive)
    }

    func testRepeatedEqualContentLengthsAreAccepted() throws {
        XCTAssertEqual(try request("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 003\r\n\r\nabc").body,
                       Array("abc".utf8))
        XCTAssertEqual(try request("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc").body, Array("abc".utf8))
    }

    func testChunkedBodyWithExtensionsAndTrailers() throws {
        let r = try request("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                            + "5;name=value\r\nhello\r\n1 ; x\r\n!\r\n0\r\nX-Trailer: t\r\n\r\n")
        XCTAssertEqual(r.body, Array("hello!".utf8))
    }

    // MARK: One malformed class each, with its status

    func testRequestLineOverLimitIs414() {
        let long = "GET /" + String(repeating: "a", count: 80) + " HTTP/1.1\r\nHost: x\r\n\r\n"
        assertRejects(long, .requestLineTooLong, status: 414)
        // Also before the line ends: an unterminated line longer than the limit.
        var parser = HTTPRequestParser(limits: limits)
        parser.feed(Array(("GET /" + String(repeating: "a", count: 80)).utf8))
        XCTAssertThrowsError(try parser.next()) { XCTAssertEqual(($0 as? HTTPParseError)?.status.code, 414) }
    }

    func testHeaderSectionOverLimitIs431() {
        let big = "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + String(repeating: "b", count: 300) + "\r\n\r\n"
        assertRejects(big, .headerSectionTooLarge, status: 431)
        var parser = HTTPRequestParser(limits: limits)
        parser.feed(Array(("GET / HTTP/1.1\r\nX-Big: " + String(repeating: "b", count: 300)).utf8))
        XCTAssertThrowsError(try parser.next()) { XCTAssertEqual(($0 as? HTTPParseError)?.status.code, 431) }
    }

    func testTooManyHeadersIs431() {
        let many = "GET / HTTP/1.1\r\nHost: x\r\n" + (1...5).map { "X-\($0): v\r\n" }.joined() + "\r\n"
        assertRejects(many, .tooManyHeaders, status: 431)
    }

    func testContentLengthOverLimitIs413BeforeTheBodyArrives() {
        assertRejects("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n", .bodyTooLarge, status: 413)
        assertRejects("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999999\r\n\r\n",
                      .bodyTooLarge, status: 413)
    }

    func testMalformedRequestLinesAre400() {
        for line in ["GET /", "GET  / HTTP/1.1", "GET / HTTP/1.1 extra", "G(T / HTTP/1.1", "GET /\u{7F} HTTP/1.1",
                     "GET /caf\u{E9} HTTP/1.1", "GET / http/1.1", "GET / HTTP/1.1x", "GET / HTTP/11", "\rGET / HTTP/1.1"] {
            assertRejects(line + "\r\nHost: x\r\n\r\n", status: 400)
        }
    }

    func testOtherHTTPVersionsAre505() {
        assertRejects("GET / HTTP/2.0\r\nHost: x\r\n\r\n", .unsupportedVersion("HTTP/2.0"), status: 505)
        assertRejects("GET / HTTP/0.9\r\n\r\n", .unsupportedVersion("HTTP/0.9"), status: 505)
    }

    func testMalformedHeaderFieldsAre400() {
        for field in ["Host : x", "Host x", ": x", "X\u{1}: y", "X-A: a\u{1}b", "X-A: a\rb", " X-A: folded", "Bad Name: v"] {
            assertRejects("GET / HTTP/1.1\r\nHost: x\r\n" + field + "\r\n\r\n", status: 400)
        }
        assertRejects("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n continued\r\n\r\n", status: 400)  // obs-fold
    }

    func testNonUTF8HeaderValueIs400() {
        var parser = HTTPRequestParser(limits: limits)
        parser.feed(Array("GET / HTTP/1.1\r\nHost: x\r\nX-A: ".utf8) + [0xFF, 0xFE] + Array("\r\n\r\n".utf8))
        XCTAssertThrowsError(try parser.next()) { XCTAssertEqual(($0 as? HTTPParseError)?.status.code, 400) }
    }

    func testHTTP11WithoutExactlyOneHostIs400() {
        assertRejects("GET / HTTP/1.1\r\n\r\n", .missingHost, status: 400)
        assertRejects("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", .missingHost, status: 400)
    }

    func testContentLengthWithTransferEncodingIs400() {
        assertRejects("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                      .contentLengthWithTransferEncoding, status: 400)
    }

    func testConflictingOrNonNumericContentLengthIs400() {
        for value in ["3\r\nContent-Length: 4", "3, 4", "abc", "-1", "+5", "0x10", "", "1 2"] {
            assertRejects("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \(value)\r\n\r\n", status: 400)
        }
    }

    func testUnsupportedTransferEncodingIs501() {
        assertRejects("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
                      .unsupportedTransferEncoding("gzip"), status: 501)
        assertRejects("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", status: 501)
    }

    func testAmbiguousTransferEncodingIs400() {
        assertRejects("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", status: 400)
        assertRejects("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                      status: 400)
        assertRejects("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status: 400)
    }

    func testUnknownExpectationIs417() {
        assertRejects("POST / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\n",
                      .unsupportedExpectation("200-ok"), status: 417)
    }

    func testBadChunkSizeIs400AndChunkedTotalOverLimitIs413() {
        let head = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        assertRejects(head + "zz\r\n", status: 400)
        assertRejects(head + "5\r\nhelloXX", status: 400)
        assertRejects(head + "40\r\n" + String(repeating: "a", count: 64) + "\r\n40\r\n", .bodyTooLarge, status: 413)
        assertRejects(head + "ffffffffffffffffffffffff\r\n", .bodyTooLarge, status: 413)
    }

    func testErrorsAreSticky() {
        var parser = HTTPRequestParser(limits: limits)
        parser.feed(Array("BAD\r\n\r\n".utf8))
        XCTAssertThrowsError(try parser.next())
        parser.feed(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        XCTAssertThrowsError(try parser.next())
    }

    func testUnboundedLimitsDoNotOverflow() throws {
        let huge = HTTPLimits(maxRequestLineBytes: .max, maxHeaderBytes: .max, maxHeaderCount: .max, maxBodyBytes: .max,
                              maxChunkLineBytes: .max, maxTrailerBytes: .max)
        let all = try events("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nT: 1\r\n\r\n"
                             + "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\nabc",
                             limits: huge)
        XCTAssertEqual(targetsAndBodies(all), ["/=a"])
    }

    // MARK: Expect: 100-continue

    func testExpectContinueIsSignalledBeforeTheBodyIsRead() throws {
        var parser = HTTPRequestParser(limits: limits)
        parser.feed(Array("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n".utf8))
        XCTAssertEqual(try parser.next(), .sendContinue)
        XCTAssertEqual(parser.phase, .body)
        XCTAssertNil(try parser.next())
        parser.feed(Array("ok".utf8))
        guard case .request(let r)? = try parser.next() else { return XCTFail("no request") }
        XCTAssertEqual(r.body, Array("ok".utf8))
        XCTAssertEqual(parser.phase, .idle)
    }

    func testExpectContinueIsNotSignalledWhenNoBodyWillBeRead() throws {
        // The body already arrived, the request has no body, HTTP/1.0 ignores the expectation, or it is too large.
        XCTAssertEqual(try events("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok").count, 1)
        XCTAssertEqual(try events("GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n").count, 1)
        XCTAssertEqual(try events("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"), [])
        assertRejects("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n",
                      .bodyTooLarge, status: 413)
    }

    // MARK: Pipelining and arbitrary splits

    private let pipelined = "\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n"
        + "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        + "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2;e=1\r\nde\r\n1\r\nf\r\n0\r\nT: v\r\n\r\n"
        + "GET /d HTTP/1.0\r\n\r\n"

    private func targetsAndBodies(_ events: [HTTPParserEvent]) -> [String] {
        events.map {
            guard case .request(let r) = $0 else { return "continue" }
            return r.target + "=" + String(decoding: r.body, as: UTF8.self)
        }
    }

    func testPipelinedRequestsComeOutInOrderWhenSplitAtEveryByteBoundary() throws {
        let bytes = Array(pipelined.utf8)
        let expected = ["/a=", "/b=abc", "/c=def", "/d="]
        XCTAssertEqual(targetsAndBodies(try events(pipelined)), expected)
        for split in 0...bytes.count {
            var parser = HTTPRequestParser(limits: limits)
            var out: [HTTPParserEvent] = []
            parser.feed(bytes[..<split])
            while let e = try parser.next() { out.append(e) }
            parser.feed(bytes[split...])
            while let e = try parser.next() { out.append(e) }
            XCTAssertEqual(targetsAndBodies(out), expected, "split at \(split)")
            XCTAssertEqual(parser.bufferedByteCount, 0)
        }
    }

    func testPipelinedRequestsFedOneByteAtATime() throws {
        var parser = HTTPRequestParser(limits: limits)
        var out: [HTTPParserEvent] = []
        for byte in pipelined.utf8 {
            parser.feed([byte])
            while let e = try parser.next() { out.append(e) }
        }
        XCTAssertEqual(targetsAndBodies(out), ["/a=", "/b=abc", "/c=def", "/d="])
    }

    func testPhaseFollowsTheRequest() throws {
        var parser = HTTPRequestParser(limits: limits)
        XCTAssertEqual(parser.phase, .idle)
        parser.feed(Array("POST / HTTP/1.1\r\nHo".utf8))
        XCTAssertNil(try parser.next())
        XCTAssertEqual(parser.phase, .head)
        parser.feed(Array("st: x\r\nContent-Length: 4\r\n\r\nab".utf8))
        XCTAssertNil(try parser.next())
        XCTAssertEqual(parser.phase, .body)
        parser.feed(Array("cd".utf8))
        XCTAssertNotNil(try parser.next())
        XCTAssertEqual(parser.phase, .idle)
    }

    /// Mutated and truncated requests fed in random slices must give requests or errors, never a trap.
    func testArbitraryBytesNeverTrap() {
        var rng = SplitMix64(seed: 42)
        let seeds = Array(pipelined.utf8)
        for _ in 0..<3000 {
            var bytes = seeds
            for _ in 0..<Int(rng.next() % 6) {
                let i = Int(rng.next() % UInt64(bytes.count))
                switch rng.next() % 3 {
                case 0: bytes[i] = UInt8(truncatingIfNeeded: rng.next())
                case 1: bytes.insert(UInt8(truncatingIfNeeded: rng.next()), at: i)
                default: bytes.remove(at: i)
                }
            }
            var parser = HTTPRequestParser(limits: limits)
            var offset = 0
            feeding: while offset < bytes.count {
                let n = 1 + Int(rng.next() % 17)
                parser.feed(bytes[offset..<min(bytes.count, offset + n)])
                offset += n
                do {
                    while try parser.next() != nil {}
                } catch {
                    XCTAssertTrue([400, 413, 414, 417, 431, 501, 505].contains(error.status.code))
                    break feeding
                }
            }
        }
    }
}
