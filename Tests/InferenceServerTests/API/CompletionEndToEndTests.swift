import Foundation
import XCTest
import InferenceCore
import SpeculativeDecoding
@testable import InferenceServer

/// POST /v1/completions over loopback against a toy model.
final class CompletionEndToEndTests: APIServerTestCase {
    func testACompletionIsTheGreedyOutputWithUsageTimingsAndSpeculationMetrics() throws {
        let s = try start()
        let o = try s.complete(#"{"model": "toy", "prompt": "def add(a, b):", "max_tokens": 12, "temperature": 0, "speculative": {"method": "draft", "num_tokens": 3}}"#)
        XCTAssertEqual(JSONTesting.text(o), soloText(s.model.family, "def add(a, b):", maxTokens: 12))
        XCTAssertEqual(o["object"], .string("text_completion"))
        XCTAssertEqual(o["model"], .string("toy"))
        guard case let .string(id)? = o["id"] else { return XCTFail("no id") }
        XCTAssertTrue(id.hasPrefix("cmpl-"))
        XCTAssertEqual(JSONTesting.finishReason(o), .string("length"))
        XCTAssertEqual(JSONTesting.choice(o)?["logprobs"], .null)
        let promptTokens = s.model.tokenizer.encode("def add(a, b):").count
        XCTAssertEqual(JSONTesting.int(JSONTesting.path(o, "usage", "prompt_tokens")), promptTokens)
        XCTAssertEqual(JSONTesting.int(JSONTesting.path(o, "usage", "completion_tokens")), 12)
        XCTAssertEqual(JSONTesting.int(JSONTesting.path(o, "usage", "total_tokens")), promptTokens + 12)
        XCTAssertEqual(JSONTesting.int(JSONTesting.path(o, "timings", "prompt_n")), promptTokens)
        XCTAssertEqual(JSONTesting.int(JSONTesting.path(o, "timings", "predicted_n")), 12)
        XCTAssertEqual(JSONTesting.path(o, "metrics", "speculative_decoding", "method"), .string("draft"))
        XCTAssertEqual(JSONTesting.path(o, "metrics", "speculative_decoding", "lossless"), .bool(true))
        // The draft is the target itself: every drafted token is accepted.
        let drafted = JSONTesting.int(JSONTesting.path(o, "timings", "draft_n")) ?? 0
        XCTAssertGreaterThan(drafted, 0)
        XCTAssertEqual(JSONTesting.int(JSONTesting.path(o, "timings", "draft_n_accepted")), drafted)
        XCTAssertTrue(eventually { s.logs.lines.contains { $0.contains("POST /v1/completions 200") && $0.contains("completion=12") && $0.contains("spec=draft") } },
                      "\(s.logs.lines)")
    }

    func testAStreamCarriesTheSameTextAsTheWholeResponse() throws {
        let s = try start()
        let cases: [(String, String)] = [("import os\n", "none"), ("for i in range(10):", "ngram"), ("class A:\n    def", "draft"),
                                         ("x = [1, 2, 3]\n" + String(repeating: "y = x\n", count: 30), "ngram")]
        for (prompt, method) in cases {
            let body = #"{"model": "toy", "prompt": \#(JSONText.quoted(prompt)), "max_tokens": 30, "temperature": 0, "speculative": {"method": "\#(method)"}"#
            let whole = try s.complete(body + "}")
            let stream = try s.stream(body + #", "stream": true}"#)
            XCTAssertTrue(stream.done, "no [DONE] for \(method)")
            XCTAssertEqual(SSE.text(stream.events), JSONTesting.text(whole), method)
            XCTAssertGreaterThan(stream.events.count, 1)
            for event in stream.events.dropLast() {
                XCTAssertEqual(JSONTesting.finishReason(event), .null)
                XCTAssertNil(event["timings"])
                XCTAssertNil(event["usage"])
            }
            let last = stream.events.last!
            XCTAssertEqual(JSONTesting.finishReason(last), .string("length"))
            XCTAssertEqual(JSONTesting.path(last, "metrics", "speculative_decoding", "method"), .string(method))
            XCTAssertEqual(JSONTesting.int(JSONTesting.path(last, "timings", "predicted_n")), 30)
            XCTAssertEqual(last["id"], stream.events.first!["id"])
        }
    }

    func testIncludeUsageAddsAUsageChunkAndEchoPrependsThePrompt() throws {
        let s = try start()
        let body = #"{"model": "toy", "prompt": "abc", "max_tokens": 5, "temperature": 0, "echo": true"#
        let whole = try s.complete(body + "}")
        XCTAssertEqual(JSONTesting.text(whole), "abc" + soloText(s.model.family, "abc", maxTokens: 5))
        let stream = try s.stream(body + #", "stream": true, "stream_options": {"include_usage": true}}"#)
        XCTAssertEqual(SSE.text(stream.events), JSONTesting.text(whole))
        let usage = stream.events.last!
        XCTAssertEqual(usage["choices"], .array([]))
        XCTAssertEqual(JSONTesting.int(JSONTesting.path(usage, "usage", "completion_tokens")), 5)
        XCTAssertNotNil(usage["timings"])
        XCTAssertNotNil(usage["metrics"])
        for event in stream.events.dropLast() { XCTAssertEqual(event["usage"], .null) }
        XCTAssertEqual(JSONTesting.finishReason(stream.events[stream.events.count - 2]), .string("length"))

        let tokens = s.model.tokenizer.encode("abc")
        let echoed = try s.complete(#"{"model": "toy", "prompt": \#(tokens), "max_tokens": 5, "temperature": 0, "echo": true}"#)
        XCTAssertEqual(JSONTesting.text(echoed), JSONTesting.text(whole))
    }

    func testAStopSequenceCutsTheTextEndsTheJobAndNeverLeaksIntoAStream() throws {
        let s = try start()
        let prompt = "def main():\n"
        let full = soloText(s.model.family, prompt, maxTokens: 60)
        let scalars = Array(full.unicodeScalars)
        XCTAssertGreaterThan(scalars.count, 20)
        let stop = String(String.UnicodeScalarView(scalars[12..<15]))
        // The text before the first occurrence of the stop, found scalar by scalar.
        let stopScalars = Array(stop.unicodeScalars)
        let first = (0...(scalars.count - 3)).first { Array(scalars[$0..<($0 + 3)]) == stopScalars }!
        let expected = String(String.UnicodeScalarView(scalars[..<first]))

        let body = #"{"model": "toy", "prompt": \#(JSONText.quoted(prompt)), "max_tokens": 60, "temperature": 0, "stop": [\#(JSONText.quoted(stop)), "never-there"]"#
        let whole = try s.complete(body + "}")
        XCTAssertEqual(JSONTesting.text(whole), expected)
        XCTAssertEqual(JSONTesting.finishReason(whole), .string("stop"))
        let used = JSONTesting.int(JSONTesting.path(whole, "usage", "completion_tokens")) ?? 0
        XCTAssertLessThan(used, 60)
        XCTAssertEqual(JSONTesting.int(JSONTesting.path(whole, "timings", "predicted_n")), used)

        let stream = try s.stream(body + #", "stream": true}"#)
        var shown = ""
        for event in stream.events {
            shown += JSONTesting.text(event) ?? ""
            XCTAssertTrue(expected.hasPrefix(shown), "the stream showed \(shown.debugDescription), beyond \(expected.debugDescription)")
        }
        XCTAssertEqual(shown, expected)
        XCTAssertEqual(JSONTesting.finishReason(stream.events.last!), .string("stop"))
        // The job was cancelled once the stop matched, and the engine let go of it.
        XCTAssertTrue(eventually { s.model.gate.inFlight == 0 })
    }

    func testSeededSamplingIsReproducibleStreamingOrNot() throws {
        let s = try start()
        let body = #"{"model": "toy", "prompt": "print(", "max_tokens": 20, "temperature": 0.9, "top_p": 0.95, "seed": 1234"#
        let a = JSONTesting.text(try s.complete(body + "}"))
        let b = JSONTesting.text(try s.complete(body + "}"))
        XCTAssertNotNil(a)
        XCTAssertEqual(a, b)
        XCTAssertEqual(SSE.text(try s.stream(body + #", "stream": true}"#).events), a)
        let speculated = try s.complete(body + #", "speculative": {"method": "draft"}}"#)
        XCTAssertEqual(JSONTesting.text(speculated), JSONTesting.text(try s.complete(body + #", "speculative": {"method": "draft"}}"#)))
    }

    func testConcurrentClientsEachGetTheirSoloOutput() throws {
        let s = try start()
        let prompts = (0..<8).map { "def f\($0)(x):\n    return x * \($0)" + String(repeating: " + 1", count: $0 * 3) }
        let methods = ["none", "ngram", "draft", "none"]
        let solo = prompts.map { soloText(s.model.family, $0, maxTokens: 24) }
        let results = ResultBox(count: prompts.count)
        DispatchQueue.concurrentPerform(iterations: prompts.count) { i in
            let stream = i % 2 == 0
            let body = #"{"model": "toy", "prompt": \#(JSONText.quoted(prompts[i])), "max_tokens": 24, "temperature": 0, "stream": \#(stream), "speculative": {"method": "\#(methods[i % 4])"}}"#
            do {
                let response = try s.post("/v1/completions", body)
                let text = stream ? SSE.text(try SSE.parse(response.text).events) : JSONTesting.text(try JSONTesting.object(response.body))
                results.set(i, "\(response.status) " + (text ?? "<none>"))
            } catch {
                results.set(i, "error \(error)")
            }
        }
        for i in prompts.indices { XCTAssertEqual(results.get(i), "200 " + solo[i], "client \(i)") }
    }

    func testAClientThatLeavesMidStreamIsCancelledAndTheNextRequestSucceeds() throws {
        // A model slow enough (about a millisecond a token) that 3,000 tokens cannot finish before the client leaves.
        let s = try start { try APITestServer(family: APIToyModel.family(hidden: 256, layers: 4, context: 4096)) }
        let client = try s.connect()
        client.send(APITestServer.requestText("POST", "/v1/completions",
                                              body: #"{"model": "toy", "prompt": "while True:", "max_tokens": 3000, "temperature": 0, "stream": true}"#))
        XCTAssertEqual(try client.readHead(timeout: 10).status, 200)
        XCTAssertNotNil(try client.readChunk(timeout: 10))
        client.close()
        let metrics = s.model.engine.metrics
        XCTAssertTrue(eventually { metrics.prometheusText().contains("finished_reason=\"cancelled\"} 1") }, metrics.prometheusText())
        XCTAssertTrue(eventually { s.model.gate.inFlight == 0 })
        let generated = metrics.prometheusText().split(separator: "\n").first { $0.hasPrefix("specserve:generation_tokens_total ") }
        XCTAssertLessThan(Int(generated?.split(separator: " ").last ?? "") ?? 3000, 3000)
        XCTAssertTrue(eventually { s.logs.lines.contains { $0.contains("client gone") } }, "\(s.logs.lines)")

        let o = try s.complete(#"{"model": "toy", "prompt": "x = 1", "max_tokens": 4, "temperature": 0}"#)
        XCTAssertEqual(JSONTesting.text(o), soloText(s.model.family, "x = 1", maxTokens: 4))
    }

    func testAClientThatLeavesWhileQueuedIsCancelledBeforeItRuns() throws {
        let s = try start { try APITestServer(startEngine: false) }
        let client = try s.connect()
        client.send(APITestServer.requestText("POST", "/v1/completions", body: #"{"model": "toy", "prompt": "a", "max_tokens": 50, "temperature": 0}"#))
        XCTAssertTrue(eventually { s.model.engine.waitingCount == 1 })
        client.close()
        XCTAssertTrue(eventually { s.logs.lines.contains { $0.contains("POST /v1/completions 499") && $0.contains("client gone") } }, "\(s.logs.lines)")
        s.model.engine.start()
        let metrics = s.model.engine.metrics
        XCTAssertTrue(eventually { metrics.prometheusText().contains("finished_reason=\"cancelled\"} 1") }, metrics.prometheusText())
        XCTAssertTrue(metrics.prometheusText().contains("specserve:generation_tokens_total 0"), metrics.prometheusText())
        XCTAssertTrue(eventually { s.model.gate.inFlight == 0 })
    }

    func testAFullQueueIsAnswered429AndTheQueuedRequestCompletesLater() throws {
        let s = try start { try APITestServer(engine: EngineSettings(maxQueue: 1, maxActive: 1), startEngine: false) }
        let body = #"{"model": "toy", "prompt": "a", "max_tokens": 3, "temperature": 0}"#
        let first = ResultBox(count: 1)
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            let response = try? s.post("/v1/completions", body)
            first.set(0, "\(response?.status ?? 0)")
            done.signal()
        }
        XCTAssertTrue(eventually { s.model.engine.waitingCount == 1 })
        let refused = try s.post("/v1/completions", body)
        XCTAssertEqual(refused.status, 429)
        XCTAssertEqual(refused.header("Retry-After"), "1")
        XCTAssertEqual(try JSONTesting.error(refused).type, "rate_limit_error")
        XCTAssertEqual(try JSONTesting.error(refused).code, 429)
        s.model.engine.start()
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(first.get(0), "200")
    }

    func testAQueuedStreamGetsHeartbeats() throws {
        let s = try start { try APITestServer(heartbeat: 0.1, startEngine: false) }
        let client = try s.connect()
        client.send(APITestServer.requestText("POST", "/v1/completions",
                                              body: #"{"model": "toy", "prompt": "a", "max_tokens": 3, "temperature": 0, "stream": true}"#))
        XCTAssertEqual(try client.readHead(timeout: 5).status, 200)
        XCTAssertEqual(try client.readChunk(timeout: 5).map { String(decoding: $0, as: UTF8.self) }, ": ping\n\n")
        XCTAssertEqual(try client.readChunk(timeout: 5).map { String(decoding: $0, as: UTF8.self) }, ": ping\n\n")
        s.model.engine.start()
        var body = ""
        while let chunk = try client.readChunk(timeout: 10) { body += String(decoding: chunk, as: UTF8.self) }
        let parsed = try SSE.parse(body)
        XCTAssertTrue(parsed.done)
        XCTAssertEqual(SSE.text(parsed.events), soloText(s.model.family, "a", maxTokens: 3))
    }
}

/// Results written by concurrent clients.
final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [String?]
    init(count: Int) { values = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ v: String) { lock.withLock { values[i] = v } }
    func get(_ i: Int) -> String? { lock.withLock { values[i] } }
}
