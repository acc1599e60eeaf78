import XCTest
import TestSupport
@testable import InferenceServer

final class HTTPChunkedDecoderTests: XCTestCase {
    private func decode(_ text: String, maxBody: Int = 100) throws(HTTPParseError) -> (body: String, consumed: Int, complete: Bool) {
        var decoder = ChunkedDecoder(maxBodyBytes: maxBody, maxLineBytes: 32, maxTrailerBytes: 64)
        let consumed = try decoder.feed(Array(text.utf8))
        return (String(decoding: decoder.body, as: UTF8.self), consumed, decoder.isComplete)
    }

    private func assertFails(_ text: String, status: Int, file: StaticString = #filePath, line: UInt = #line) {
        do {
            let result = try decode(text)
            XCTFail("expected \(status), decoded \(result)", file: file, line: line)
        } catch {
            XCTAssertEqual(error.status.code, status, "\(error)", file: file, line: line)
        }
    }

    func testDecodesChunksAndStopsAtTheEndOfTheBody() throws {
        let body = "4\r\nWiki\r\n5;ext=\"q\"\r\npedia\r\nD \t;x\r\n in\r\n\r\nchunks\r\n0\r\nExpires: never\r\n\r\n"
        let result = try decode(body + "GET / HTTP/1.1")
        XCTAssertEqual(result.body, "Wikipedia in\r\n\r\nchunks")
        XCTAssertTrue(result.complete)
        XCTAssertEqual(result.consumed, body.utf8.count)  // the next request's bytes are left alone
    }

    func testUppercaseAndLeadingZeroSizes() throws {
        XCTAssertEqual(try decode("0000A\r\n0123456789\r\n0\r\n\r\n").body, "0123456789")
    }

    func testAnySplitGivesTheSameBody() throws {
        let bytes = Array("3;a=b\r\nabc\r\n1\r\nd\r\n0\r\nT: 1\r\n\r\n".utf8)
        for split in 0...bytes.count {
            var decoder = ChunkedDecoder(maxBodyBytes: 100)
            let first = try decoder.feed(bytes[..<split])
            let second = try decoder.feed(bytes[split...])
            XCTAssertEqual(first + second, bytes.count)
            XCTAssertTrue(decoder.isComplete)
            XCTAssertEqual(decoder.body, Array("abcd".utf8))
        }
    }

    func testIncompleteBodyIsNotComplete() throws {
        let result = try decode("5\r\nhel")
        XCTAssertFalse(result.complete)
        XCTAssertEqual(result.body, "hel")
    }

    func testBadChunkSizesAre400() {
        for size in ["", "g", "-1", " 5", "5 ", "5x", "0x5", "5 x", "+5"] {
            assertFails(size + "\r\nhello\r\n0\r\n\r\n", status: 400)
        }
    }

    func testFramingWithoutCRLFIs400() {
        assertFails("5\nhello\r\n0\r\n\r\n", status: 400)        // bare LF after the size
        assertFails("5\r\nhelloX\r\n0\r\n\r\n", status: 400)     // data longer than its size
        assertFails("5\r\nhello\rX", status: 400)                // CR not followed by LF
        assertFails("5\r\nhello\r\n0\r\nT: 1\n\r\n", status: 400) // bare LF in the trailers
        assertFails("5;\u{1}\r\nhello\r\n0\r\n\r\n", status: 400) // control character in an extension
        assertFails("5\r\nhello\r\n0\r\nno colon\r\n\r\n", status: 400)
    }

    func testOverlongSizeLineIs400() {
        assertFails("5;" + String(repeating: "e", count: 40) + "\r\nhello\r\n0\r\n\r\n", status: 400)
    }

    func testBodyOverTheLimitIs413WithoutOverflowing() {
        assertFails("65\r\n", status: 413)  // 101 > 100
        assertFails("32\r\n" + String(repeating: "a", count: 50) + "\r\n33\r\n", status: 413)  // 50 + 51
        assertFails("ffffffffffffffffffffffffffff\r\n", status: 413)
        assertFails("7fffffffffffffff\r\n", status: 413)
    }

    func testTrailersOverTheLimitAre431() {
        assertFails("0\r\n" + (1...10).map { "T\($0): 1234567890\r\n" }.joined() + "\r\n", status: 431)
    }

    func testArbitraryBytesNeverTrap() {
        var rng = SplitMix64(seed: 7)
        let seed = Array("3;a=b\r\nabc\r\n1\r\nd\r\n0\r\nT: 1\r\n\r\n".utf8)
        for _ in 0..<3000 {
            var bytes = seed
            for _ in 0..<Int(1 + rng.next() % 4) {
                bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next())
            }
            var decoder = ChunkedDecoder(maxBodyBytes: 16, maxLineBytes: 8, maxTrailerBytes: 8)
            var offset = 0
            while offset < bytes.count && !decoder.isComplete {
                let end = min(bytes.count, offset + 1 + Int(rng.next() % 5))
                let sliceLength = end - offset
                guard let n = try? decoder.feed(bytes[offset..<end]) else { break }
                XCTAssertTrue(n == sliceLength || (n < sliceLength && decoder.isComplete))
                offset += n
            }
            XCTAssertLessThanOrEqual(decoder.body.count, 16)
        }
    }
}
