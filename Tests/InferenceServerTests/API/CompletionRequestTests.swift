import Foundation
import XCTest
import SpeculativeDecoding
@testable import InferenceServer

final class CompletionRequestTests: XCTestCase {
    private func decode(_ body: String) throws -> CompletionRequest { try CompletionRequest.decode(Array(body.utf8)) }

    /// Asserts `body` is refused with 400 and `param`, and that the message contains `fragment`.
    private func assertRefused(_ body: String, param: String?, _ fragment: String = "", file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try decode(body)
            XCTFail("accepted \(body)", file: file, line: line)
        } catch let error as APIError {
            XCTAssertEqual(error.status, .badRequest, file: file, line: line)
            XCTAssertEqual(error.param, param, error.message, file: file, line: line)
            XCTAssertTrue(fragment.isEmpty || error.message.contains(fragment), "\(error.message) lacks \(fragment)", file: file, line: line)
        } catch {
            XCTFail("\(error)", file: file, line: line)
        }
    }

    func testDefaultsFollowOpenAI() throws {
        let q = try decode(#"{"model": "m", "prompt": "hi"}"#)
        XCTAssertEqual(q.prompt, .text("hi"))
        XCTAssertEqual(q.maxTokens, 16)
        XCTAssertEqual(q.temperature, 1)
        XCTAssertEqual(q.topP, 1)
        XCTAssertEqual(q.stop, [])
        XCTAssertFalse(q.stream)
        XCTAssertFalse(q.echo)
        XCTAssertNil(q.seed)
        XCTAssertNil(q.speculative)
    }

    func testEveryFieldDecodes() throws {
        let q = try decode("""
        {"model": "m", "prompt": [[1, 2, 3]], "max_tokens": 5, "temperature": 0.5, "top_p": 0.9, "top_k": 40, "min_p": 0.05,
         "stop": ["\\n", "x"], "seed": -1, "stream": true, "stream_options": {"include_usage": true}, "echo": true, "n": 1,
         "logprobs": null, "user": "u", "frequency_penalty": 0, "logit_bias": {},
         "speculative": {"method": "ngram", "num_tokens": 3}}
        """)
        XCTAssertEqual(q.prompt, .tokens([1, 2, 3]))
        XCTAssertEqual(q.maxTokens, 5)
        XCTAssertEqual(q.sampling.temperature, 0.5)
        XCTAssertEqual(q.sampling.topK, 40)
        XCTAssertEqual(q.sampling.minP, 0.05, accuracy: 1e-7)
        XCTAssertEqual(q.stop, ["\n", "x"])
        XCTAssertEqual(q.seed, UInt64.max)
        XCTAssertTrue(q.stream && q.includeUsage && q.echo)
        XCTAssertEqual(q.speculative, .init(method: .ngram, numTokens: 3))
        XCTAssertEqual(try decode(#"{"model": "m", "prompt": ["one"]}"#).prompt, .text("one"))
        XCTAssertEqual(try decode(#"{"model": "m", "prompt": [7, 8]}"#).prompt, .tokens([7, 8]))
        XCTAssertEqual(try decode(#"{"model": "m", "prompt": "p", "stop": "END", "top_k": -1}"#).stop, ["END"])
    }

    func testMissingOrMistypedFieldsNameTheirParam() {
        assertRefused(#"{"prompt": "x"}"#, param: "model", "missing")
        assertRefused(#"{"model": "m"}"#, param: "prompt", "missing")
        assertRefused(#"{"model": 3, "prompt": "x"}"#, param: "model", "expected a string, found number")
        assertRefused(#"{"model": "m", "prompt": {"text": "x"}}"#, param: "prompt", "expected a string or an array of token ids, found object")
        assertRefused(#"{"model": "m", "prompt": "x", "max_tokens": "16"}"#, param: "max_tokens", "expected an integer, found string")
        assertRefused(#"{"model": "m", "prompt": "x", "max_tokens": 1.5}"#, param: "max_tokens", "fraction")
        assertRefused(#"{"model": "m", "prompt": "x", "stream": "yes"}"#, param: "stream", "expected a boolean")
        assertRefused(#"{"model": "m", "prompt": "x", "stream": true, "stream_options": {"include_usage": 1}}"#,
                      param: "stream_options.include_usage", "expected a boolean")
        assertRefused(#"{"model": "m", "prompt": [1, "a"]}"#, param: "prompt[1]", "expected an integer, found string")
        assertRefused(#"{"model": "m", "prompt": "x", "stop": [1]}"#, param: "stop[0]", "expected a string, found number")
    }

    func testValuesOutOfRangeAreRefused() {
        assertRefused(#"{"model": "m", "prompt": "x", "max_tokens": 0}"#, param: "max_tokens", "out of range")
        assertRefused(#"{"model": "m", "prompt": "x", "temperature": 2.5}"#, param: "temperature", "out of range")
        assertRefused(#"{"model": "m", "prompt": "x", "top_p": 0}"#, param: "top_p", "above 0")
        assertRefused(#"{"model": "m", "prompt": "x", "top_k": -2}"#, param: "top_k", "out of range")
        assertRefused(#"{"model": "m", "prompt": "x", "min_p": 1.5}"#, param: "min_p", "out of range")
        assertRefused(#"{"model": "m", "prompt": "x", "n": 2}"#, param: "n", "out of range")
        assertRefused(#"{"model": "m", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]}"#, param: "stop", "at most 4")
        assertRefused(#"{"model": "m", "prompt": "x", "stop": ""}"#, param: "stop", "empty string")
        assertRefused(#"{"model": "m", "prompt": [-1]}"#, param: "prompt[0]", "negative")
        assertRefused(#"{"model": "m", "prompt": ["a", "b"]}"#, param: "prompt", "one prompt per request")
        assertRefused(#"{"model": "m", "prompt": []}"#, param: "prompt", "empty array")
        assertRefused(#"{"model": "m", "prompt": "x", "speculative": {"method": "eagle"}}"#, param: "speculative.method", "not one of")
        assertRefused(#"{"model": "m", "prompt": "x", "speculative": {"num_tokens": 40}}"#, param: "speculative.num_tokens", "1...16")
    }

    func testUnknownAndUnsupportedFieldsAreRefusedRatherThanIgnored() {
        assertRefused(#"{"model": "m", "prompt": "x", "max_token": 5}"#, param: "max_token", "unknown key")
        assertRefused(#"{"model": "m", "prompt": "x", "speculative": {"k": 5}}"#, param: "speculative.k", "unknown key")
        assertRefused(#"{"model": "m", "prompt": "x", "logprobs": 2}"#, param: "logprobs", "not supported")
        assertRefused(#"{"model": "m", "prompt": "x", "presence_penalty": 0.5}"#, param: "presence_penalty", "out of range")
        assertRefused(#"{"model": "m", "prompt": "x", "stream_options": {"include_usage": true}}"#, param: "stream_options", "only allowed when stream is true")
    }

    func testABodyThatIsNotAJSONObjectIsRefusedWithoutParam() {
        assertRefused("", param: nil, "empty")
        assertRefused("{\"model\": ", param: nil, "not valid JSON at line 1")
        assertRefused("[1]", param: nil, "must be a JSON object, found array")
    }
}
