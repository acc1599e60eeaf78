import Foundation
import XCTest
@testable import InferenceServer

final class HTTPResponseEncodingTests: XCTestCase {
    private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    func testHeadCarriesServerFramingAndDropsHandlerCopiesOfIt() {
        let headers: HTTPHeaders = ["Content-Type": "application/json", "content-length": "999",
                                    "Connection": "keep-alive", "X-Id": "7"]
        let head = text(ResponseEncoding.head(status: .ok, headers: headers, framing: .length(12), connection: "close",
                                              date: "Sun, 06 Nov 1994 08:49:37 GMT"))
        XCTAssertEqual(head, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Id: 7\r\nContent-Length: 12\r\n"
                       + "Connection: close\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n")
    }

    func testChunkedHeadAndNoBodyStatuses() {
        let chunked = text(ResponseEncoding.head(status: .ok, headers: [:], framing: .chunked, connection: nil, date: "D"))
        XCTAssertEqual(chunked, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nDate: D\r\n\r\n")
        let none = text(ResponseEncoding.head(status: .noContent, headers: [:], framing: .none, connection: nil, date: "D"))
        XCTAssertEqual(none, "HTTP/1.1 204 No Content\r\nDate: D\r\n\r\n")
        XCTAssertFalse(HTTPStatus.noContent.allowsBody)
        XCTAssertFalse(HTTPStatus.continue.allowsBody)
        XCTAssertTrue(HTTPStatus.notFound.allowsBody)
    }

    func testHeaderValuesCannotInjectFields() {
        let headers: HTTPHeaders = ["X-A": "one\r\nSet-Cookie: evil", "Bad Name": "v"]
        let head = text(ResponseEncoding.head(status: .ok, headers: headers, framing: .length(0), connection: nil, date: "D"))
        XCTAssertEqual(head, "HTTP/1.1 200 OK\r\nX-A: one  Set-Cookie: evil\r\nContent-Length: 0\r\nDate: D\r\n\r\n")
    }

    func testChunkFraming() {
        XCTAssertEqual(text(ResponseEncoding.chunk(Array(String(repeating: "x", count: 26).utf8))),
                       "1a\r\n" + String(repeating: "x", count: 26) + "\r\n")
        XCTAssertEqual(ResponseEncoding.chunk([]), [])
        XCTAssertEqual(text(ResponseEncoding.lastChunk), "0\r\n\r\n")
    }

    func testServerSentEventFormatting() {
        XCTAssertEqual(text(ServerSentEvent(data: "{\"a\":1}").encoded), "data: {\"a\":1}\n\n")
        XCTAssertEqual(text(ServerSentEvent(data: "l1\nl2\r\nl3", event: "tok\nen", id: "9").encoded),
                       "event: tok en\nid: 9\ndata: l1\ndata: l2\ndata: l3\n\n")
        XCTAssertEqual(text(ServerSentEvent(data: "[DONE]").encoded), "data: [DONE]\n\n")
        XCTAssertEqual(text(ServerSentEvent.comment("ping")), ": ping\n\n")
    }

    func testOpenAIErrorBodyIsValidJSONWithStatusAsCode() throws {
        let body = OpenAIErrorBody.json(status: .badRequest, message: "bad \"prompt\"\n\u{1}é", param: "prompt")
        let object = try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any]
        let error = try XCTUnwrap(object?["error"] as? [String: Any])
        XCTAssertEqual(error["message"] as? String, "bad \"prompt\"\n\u{1}é")
        XCTAssertEqual(error["type"] as? String, "invalid_request_error")
        XCTAssertEqual(error["param"] as? String, "prompt")
        XCTAssertEqual(error["code"] as? Int, 400)
        XCTAssertEqual(text(OpenAIErrorBody.json(status: .serviceUnavailable, message: "m")),
                       #"{"error":{"message":"m","type":"service_unavailable_error","param":null,"code":503}}"#)
        let response = HTTPResponse.error(.tooManyRequests, message: "queue full")
        XCTAssertEqual(response.status, .tooManyRequests)
        XCTAssertEqual(response.headers["content-type"], "application/json")
        XCTAssertTrue(text(response.body).contains(#""type":"rate_limit_error""#))
    }

    func testHTTPDateIsIMFFixdate() {
        XCTAssertEqual(ResponseEncoding.httpDate(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT")
        XCTAssertEqual(ResponseEncoding.httpDate(0), "Thu, 01 Jan 1970 00:00:00 GMT")
    }

    func testHeadersAreCaseInsensitiveAndKeepDuplicates() {
        var headers: HTTPHeaders = ["Connection": "keep-alive, Upgrade"]
        headers.add("connection", "CLOSE")
        XCTAssertEqual(headers.tokens(for: "CONNECTION"), ["keep-alive", "upgrade", "close"])
        headers["Connection"] = "x"
        XCTAssertEqual(headers.values(for: "connection"), ["x"])
        headers["connection"] = nil
        XCTAssertFalse(headers.contains("Connection"))
        XCTAssertEqual(HTTPStatus(code: 200, reasonPhrase: "Fine"), .ok)
    }
}
