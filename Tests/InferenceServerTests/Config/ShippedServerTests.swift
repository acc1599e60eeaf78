import Foundation
import XCTest
import SpeculativeDecoding
@testable import InferenceServer

/// `make serve`'s configuration with the trained family in models/, end to end over loopback: every method
/// answers, streams what it answers, and greedy speculation returns plain decoding's text.
final class ShippedServerTests: XCTestCase {
    func testTheShippedConfigServesTheTrainedFamilyWithEveryMethodLosslessly() throws {
        var config = try ServerConfig.load(file: Fixtures.repositoryRoot.appendingPathComponent("config/default.json").path)
        config.server.port = 0
        let logs = LogSink()
        let server = try Server(config: config, log: logs.log)
        try server.start()
        defer { server.shutdown() }
        XCTAssertTrue(logs.lines.contains { $0.hasPrefix("ready: serving specserve-code") }, "\(logs.lines)")
        XCTAssertTrue(logs.lines.contains { $0.contains("methods none/ngram/draft/medusa/mtp") }, "\(logs.lines)")
        XCTAssertTrue(logs.lines.contains { $0.contains("draft drafts from the 2048 most frequent tokens")
            && $0.contains("mtp drafts from the 2048 most frequent tokens") }, "\(logs.lines)")

        func post(_ body: String) throws -> HTTPTestClient.Response {
            let client = try HTTPTestClient(port: server.port)
            client.send(APITestServer.requestText("POST", "/v1/completions", body: body))
            return try client.readResponse(timeout: 30)
        }
        let prompt = JSONText.quoted("def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"")
        var plain: String?
        for method in ["none", "ngram", "draft", "medusa", "mtp"] {
            let body = #"{"model": "specserve-code", "prompt": \#(prompt), "max_tokens": 40, "temperature": 0, "speculative": {"method": "\#(method)"}"#
            let whole = try post(body + "}")
            XCTAssertEqual(whole.status, 200, whole.text)
            let o = try JSONTesting.object(whole.body)
            let text = try XCTUnwrap(JSONTesting.text(o), method)
            XCTAssertEqual(JSONTesting.int(JSONTesting.path(o, "usage", "completion_tokens")), 40, method)
            XCTAssertEqual(JSONTesting.path(o, "metrics", "speculative_decoding", "method"), .string(method))
            XCTAssertEqual(JSONTesting.path(o, "metrics", "speculative_decoding", "lossless"), .bool(true), method)
            if let plain { XCTAssertEqual(text, plain, "\(method) greedy equals plain decoding") } else { plain = text }
            if method != "none" {
                XCTAssertGreaterThan(JSONTesting.int(JSONTesting.path(o, "timings", "draft_n")) ?? 0, 0, "\(method) drafted")
            }

            let streamed = try post(body + #", "stream": true}"#)
            XCTAssertEqual(streamed.status, 200, streamed.text)
            let stream = try SSE.parse(streamed.text)
            XCTAssertTrue(stream.done, "\(method): the stream ends with [DONE]")
            XCTAssertEqual(SSE.text(stream.events), text, "\(method): the stream carries the same text")
        }
        XCTAssertTrue(plain.map { $0.contains("\n") } ?? false, "a code model writes lines: \(plain ?? "")")
    }
}
