import Foundation
import XCTest
import InferenceCore
import SpeculativeDecoding
@testable import InferenceServer

/// Every route but completions, and the errors of all of them, over loopback.
final class APIRoutesEndToEndTests: APIServerTestCase {
    private func assertError(_ r: HTTPTestClient.Response, _ status: Int, param: String?, type: String? = nil, _ fragment: String = "",
                             file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(r.status, status, r.text, file: file, line: line)
        let e = try JSONTesting.error(r)
        XCTAssertEqual(e.code, status, file: file, line: line)
        XCTAssertEqual(e.param, param.map { .string($0) } ?? .null, file: file, line: line)
        if let type { XCTAssertEqual(e.type, type, file: file, line: line) }
        XCTAssertTrue(fragment.isEmpty || e.message.contains(fragment), "\(e.message) lacks \(fragment)", file: file, line: line)
    }

    func testHealthIsOKWhenReadyAnd503WhileLoadingOrStopping() throws {
        let s = try start()
        let ok = try s.request("GET", "/health")
        XCTAssertEqual(ok.status, 200)
        XCTAssertEqual(ok.text, #"{"status":"ok"}"#)
        let loading = try start { try APITestServer(ready: false) }
        let r = try loading.request("GET", "/health")
        XCTAssertEqual(r.status, 503)
        XCTAssertEqual(r.text, #"{"status":"loading"}"#)
        try assertError(try loading.post("/v1/completions", #"{"model": "toy", "prompt": "a"}"#), 503, param: nil, "loading")
        loading.router.setStopping()
        XCTAssertEqual(try loading.request("GET", "/health").text, #"{"status":"shutting_down"}"#)
    }

    func testAnAPIKeyGuardsEveryRouteButHealth() throws {
        let s = try start { try APITestServer(apiKey: "sk-test") }
        let body = #"{"model": "toy", "prompt": "a", "max_tokens": 2, "temperature": 0}"#
        let missing = try s.post("/v1/completions", body)
        try assertError(missing, 401, param: nil, type: "authentication_error", "missing API key")
        XCTAssertEqual(missing.header("WWW-Authenticate"), "Bearer")
        try assertError(try s.post("/v1/completions", body, headers: ["Authorization": "Bearer sk-wrong"]), 401, param: nil,
                        type: "authentication_error", "invalid API key")
        try assertError(try s.request("GET", "/v1/models", headers: ["Authorization": "Basic sk-test"]), 401, param: nil)
        try assertError(try s.request("GET", "/nowhere"), 401, param: nil)
        XCTAssertEqual(try s.post("/v1/completions", body, headers: ["Authorization": "Bearer sk-test"]).status, 200)
        XCTAssertEqual(try s.request("GET", "/health").status, 200)
    }

    func testUnknownRoutesWrongMethodsAndUnknownModels() throws {
        let s = try start()
        try assertError(try s.request("GET", "/v2/whatever"), 404, param: nil, "no route")
        let wrong = try s.request("GET", "/v1/completions")
        try assertError(wrong, 405, param: nil)
        XCTAssertEqual(wrong.header("Allow"), "POST")
        XCTAssertEqual(try s.post("/health", "{}").header("Allow"), "GET, HEAD")
        try assertError(try s.post("/v1/completions", #"{"model": "gpt-4", "prompt": "a"}"#), 404, param: "model", "'gpt-4' does not exist")
        try assertError(try s.request("GET", "/v1/models/gpt-4"), 404, param: "model")
    }

    func testMalformedRequestsAre400WithTheParam() throws {
        let s = try start()
        try assertError(try s.post("/v1/completions", #"{"model": "toy", "prompt": "a""#), 400, param: nil, "not valid JSON")
        try assertError(try s.post("/v1/completions", #"{"model": "toy", "prompt": "a", "max_tokens": "many"}"#), 400, param: "max_tokens",
                        type: "invalid_request_error", "expected an integer, found string")
        try assertError(try s.post("/v1/completions", #"{"model": "toy", "prompt": [5, 99999]}"#), 400, param: "prompt", "outside the vocabulary")
        try assertError(try s.post("/v1/completions", #"{"model": "toy", "prompt": ""}"#), 400, param: "prompt", "empty")
        try assertError(try s.post("/v1/completions", #"{"model": "toy", "prompt": "a", "speculative": {"method": "medusa"}}"#), 400,
                        param: "speculative.method", "'medusa' is not available")
    }

    func testAPromptAndMaxTokensOverTheContextIs400WithBothNumbers() throws {
        let s = try start()
        let prompt = Array(repeating: 7, count: 600)
        try assertError(try s.post("/v1/completions", #"{"model": "toy", "prompt": \#(prompt), "max_tokens": 50}"#), 400, param: "max_tokens",
                        "the prompt has 600 tokens and max_tokens is 50: 650 tokens in total, over the context of 640 tokens")
        XCTAssertEqual(try s.post("/v1/completions", #"{"model": "toy", "prompt": \#(prompt), "max_tokens": 40, "temperature": 0}"#).status, 200)
    }

    func testModelsListsTheServedModel() throws {
        let s = try start()
        let list = try JSONTesting.object(try s.request("GET", "/v1/models").body)
        XCTAssertEqual(list["object"], .string("list"))
        guard case let .array(data)? = list["data"], case let .object(model)? = data.first else { return XCTFail("no data") }
        XCTAssertEqual(model["id"], .string("toy"))
        XCTAssertEqual(model["object"], .string("model"))
        XCTAssertEqual(model["owned_by"], .string("specserve"))
        XCTAssertEqual(JSONTesting.int(model["max_model_len"]), 640)
        XCTAssertEqual(model["speculative_methods"], .array([.string("none"), .string("ngram"), .string("draft")]))
        let one = try JSONTesting.object(try s.request("GET", "/v1/models/toy").body)
        XCTAssertEqual(one["id"], .string("toy"))
    }

    func testTokenizeAndDetokenizeRoundTrip() throws {
        let s = try start()
        let text = "def héllo():\n    return '🙂'"
        let t = try JSONTesting.object(try s.post("/tokenize", #"{"model": "toy", "prompt": \#(JSONText.quoted(text))}"#).body)
        guard case let .array(ids)? = t["tokens"] else { return XCTFail("no tokens") }
        XCTAssertEqual(ids.compactMap { JSONTesting.int($0) }, s.model.tokenizer.encode(text))
        XCTAssertEqual(JSONTesting.int(t["count"]), ids.count)
        let d = try JSONTesting.object(try s.post("/detokenize", #"{"model": "toy", "tokens": \#(s.model.tokenizer.encode(text))}"#).body)
        XCTAssertEqual(d["prompt"], .string(text))
        try assertError(try s.post("/detokenize", #"{"model": "toy", "tokens": [1, "x"]}"#), 400, param: "tokens[1]")
        try assertError(try s.post("/detokenize", #"{"model": "toy", "tokens": [100000]}"#), 400, param: "tokens")
        try assertError(try s.post("/tokenize", #"{"model": "toy"}"#), 400, param: "prompt", "missing")
    }

    func testMetricsCarryTheSpeculationCountersPerModelAndTheHTTPCounter() throws {
        let s = try start()
        _ = try s.complete(#"{"model": "toy", "prompt": "a", "max_tokens": 8, "temperature": 0, "speculative": {"method": "draft", "num_tokens": 2}}"#)
        let r = try s.request("GET", "/metrics")
        XCTAssertEqual(r.status, 200)
        XCTAssertTrue(r.header("Content-Type")?.hasPrefix("text/plain; version=0.0.4") ?? false)
        let text = r.text
        for name in ["spec_decode_num_drafts_total", "spec_decode_num_draft_tokens_total", "spec_decode_num_accepted_tokens_total"] {
            XCTAssertTrue(text.contains("specserve:\(name){model_name=\"toy\"} "), "\(name) missing:\n\(text)")
        }
        XCTAssertTrue(text.contains("specserve:spec_decode_num_accepted_tokens_per_pos_total{model_name=\"toy\",position=\"0\"} "), text)
        XCTAssertTrue(text.contains("specserve:generation_tokens_total{model_name=\"toy\"} 8"), text)
        XCTAssertTrue(text.contains("specserve:http_requests_total{route=\"/v1/completions\",method=\"POST\",status=\"200\"} 1"), text)
        XCTAssertEqual(text.components(separatedBy: "# TYPE specserve:spec_decode_num_drafts_total ").count, 2)
    }

    /// The toy's draft model is the target itself, so every drafted token is accepted and the deepest position
    /// drafted is the chain length the method ran at.
    func testTheBenchmarkRacesEachMethodAtItsConfiguredLengthUnlessTheRequestSetsOne() throws {
        let s = try start { try APITestServer { $0.draft.numTokens = 2; $0.numTokens = 6 } }
        func depths(_ body: String) throws -> [Int] {
            let r = try s.post("/v1/benchmark", body)
            XCTAssertEqual(r.status, 200, r.text)
            guard case let .array(methods)? = try JSONTesting.object(r.body)["methods"] else { XCTFail("no methods: \(r.text)"); return [] }
            return methods.compactMap { entry -> Int? in
                guard case let .object(m) = entry, case let .array(positions)? = m["acceptancePerPosition"] else { return nil }
                return positions.count
            }
        }
        let race = #"{"model": "toy", "methods": ["draft"], "max_tokens": 24, "repeats": 1, "prompts": ["def f(x):"]"#
        XCTAssertEqual(try depths(race + "}"), [0, 2], "none, then draft at its own num_tokens (not the model's 6)")
        XCTAssertEqual(try depths(race + #", "num_tokens": 3}"#), [0, 3])
    }

    func testTheBenchmarkRacesTheMethodsOnTheServedModel() throws {
        let s = try start()
        let r = try s.post("/v1/benchmark", #"{"model": "toy", "methods": ["ngram", "draft"], "max_tokens": 8, "repeats": 1, "prompts": ["def f(x):", "import os"]}"#)
        XCTAssertEqual(r.status, 200, r.text)
        let report = try JSONTesting.object(r.body)
        guard case let .array(methods)? = report["methods"] else { return XCTFail("no methods: \(r.text)") }
        let names: [JSONValue?] = methods.map { entry -> JSONValue? in
            guard case let .object(m) = entry else { return nil }
            return m["method"]
        }
        XCTAssertEqual(names, [.string("none"), .string("ngram"), .string("draft")])
        for case let .object(m) in methods { XCTAssertEqual(m["identicalToNone"], .bool(true)) }
        XCTAssertEqual(JSONTesting.int(report["prompts"]), 2)
        try assertError(try s.post("/v1/benchmark", #"{"model": "toy", "methods": ["mtp"]}"#), 400, param: "methods[0]", "not available")
        try assertError(try s.post("/v1/benchmark", #"{"model": "toy", "repeats": 0}"#), 400, param: "repeats")
        try assertError(try s.post("/v1/benchmark", #"{"model": "toy"}"#), 400, param: "prompts", "no prompts")
    }

    func testWhileABenchmarkRunsCompletionsWaitAndABusyModelRefusesTheBenchmark() throws {
        let s = try start()
        XCTAssertTrue(s.model.gate.enterExclusive())  // as a running benchmark holds it
        let refused = try s.post("/v1/completions", #"{"model": "toy", "prompt": "a", "max_tokens": 2}"#)
        try assertError(refused, 503, param: nil, "a benchmark is running")
        XCTAssertEqual(refused.header("Retry-After"), "5")
        s.model.gate.leaveExclusive()
        XCTAssertTrue(s.model.gate.enterShared())  // as a request in flight holds it
        try assertError(try s.post("/v1/benchmark", #"{"model": "toy", "prompts": ["a"], "max_tokens": 2}"#), 409, param: nil, "busy")
        s.model.gate.leaveShared()
        XCTAssertEqual(try s.post("/v1/benchmark", #"{"model": "toy", "prompts": ["a"], "max_tokens": 2, "repeats": 1, "methods": []}"#).status, 200)
    }

    func testTheBenchmarkNeedsTheModelToItself() {
        let gate = WorkGate()
        XCTAssertTrue(gate.enterShared())
        XCTAssertFalse(gate.enterExclusive())
        gate.leaveShared()
        XCTAssertTrue(gate.enterExclusive())
        XCTAssertFalse(gate.enterShared())
        XCTAssertFalse(gate.enterExclusive())
        gate.leaveExclusive()
        XCTAssertTrue(gate.enterShared())
    }
}
