import Foundation
import XCTest
import SpeculativeDecoding
@testable import InferenceServer

final class CompletionResponseTests: XCTestCase {
    private func object(_ bytes: [UInt8]) throws -> [String: JSONValue] {
        guard case let .object(o) = try JSONValue.parse(bytes) else { throw JSONFieldError(path: "", message: "not an object") }
        return o
    }

    /// A JSON number as a Double (an encoder may write 650.0 as 650).
    private func number(_ v: JSONValue?) -> Double? {
        switch v {
        case let .integer(n)?: return Double(n)
        case let .number(d)?: return d
        default: return nil
        }
    }

    private var stats: SpeculationStats {
        var s = SpeculationStats(method: .draft)
        s.steps = 4
        s.drafted = 12
        s.accepted = 9
        s.acceptedPerPosition = [4, 3, 2]
        s.draftedPerPosition = [4, 4, 4]
        return s
    }

    private var timings: JobTimings {
        var t = JobTimings()
        t.promptTokens = 7
        t.promptMs = 3.5
        t.generatedTokens = 14
        t.generationMs = 20
        return t
    }

    func testACompletionCarriesEveryOpenAIFieldAndTheExtensions() throws {
        var r = CompletionResponse(id: "cmpl-1", created: 5, model: "m", choices: [.init(text: "hi", finishReason: "length")],
                                   usage: .init(promptTokens: 7, completionTokens: 13))
        r.timings = .init(timings, stats, completionTokens: 13)
        r.metrics = .init(speculativeDecoding: .init(stats))
        let o = try object(r.json)
        XCTAssertEqual(Set(o.keys), ["id", "object", "created", "model", "choices", "usage", "timings", "metrics"])
        XCTAssertEqual(o["object"], .string("text_completion"))
        XCTAssertEqual(o["choices"], .array([.object(["text": .string("hi"), "index": .integer(0), "logprobs": .null,
                                                      "finish_reason": .string("length")])]))
        XCTAssertEqual(o["usage"], .object(["prompt_tokens": .integer(7), "completion_tokens": .integer(13), "total_tokens": .integer(20)]))
        guard case let .object(t)? = o["timings"], case let .object(m)? = o["metrics"], case let .object(sd)? = m["speculative_decoding"] else {
            return XCTFail("timings or metrics missing")
        }
        XCTAssertEqual(Set(t.keys), ["prompt_n", "prompt_ms", "predicted_n", "predicted_ms", "predicted_per_second", "draft_n",
                                     "draft_n_accepted", "draft_n_verif_steps", "queue_ms"])
        XCTAssertEqual(t["predicted_n"], .integer(13))
        XCTAssertEqual(number(t["predicted_per_second"]), 650)
        XCTAssertEqual(t["draft_n"], .integer(12))
        XCTAssertEqual(t["draft_n_accepted"], .integer(9))
        XCTAssertEqual(t["draft_n_verif_steps"], .integer(4))
        XCTAssertEqual(Set(sd.keys), ["method", "lossless", "auto_disabled", "num_spec_steps", "num_draft_tokens", "num_accepted_draft_tokens",
                                      "draft_acceptance_rate", "mean_acceptance_length", "acceptance_per_position"])
        XCTAssertEqual(sd["method"], .string("draft"))
        XCTAssertEqual(number(sd["draft_acceptance_rate"]), 0.75)
        XCTAssertEqual(number(sd["mean_acceptance_length"]), 3.25)
        guard case let .array(perPosition)? = sd["acceptance_per_position"] else { return XCTFail("acceptance_per_position") }
        XCTAssertEqual(perPosition.map { number($0) }, [1, 0.75, 0.5])
    }

    func testKeysComeInOpenAIsOrderAndNumbersAsJSONAllows() {
        let r = CompletionResponse(id: "cmpl-1", created: 5, model: "m", choices: [.init(text: "a\"b\n", finishReason: "stop")],
                                   usage: .init(promptTokens: 1, completionTokens: 2))
        XCTAssertEqual(String(decoding: r.json, as: UTF8.self), #"{"id":"cmpl-1","object":"text_completion","created":5,"model":"m","#
                       + #""choices":[{"text":"a\"b\n","index":0,"logprobs":null,"finish_reason":"stop"}],"#
                       + #""usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#)
        XCTAssertEqual(JSONOutput.array([.double(650), .double(0.75), .double(1e-5), .double(.nan), .double(-.infinity)]).text,
                       "[650,0.75,1e-05,null,null]")
    }

    func testStreamChunksCarryANullFinishReasonAndUsageOnlyWhenAskedFor() throws {
        let plain = try object(CompletionResponse(id: "c", created: 1, model: "m", choices: [.init(text: "a")]).json)
        XCTAssertNil(plain["usage"])
        XCTAssertNil(plain["timings"])
        guard case let .array(choices)? = plain["choices"], case let .object(choice)? = choices.first else { return XCTFail() }
        XCTAssertEqual(choice["finish_reason"], .null)
        let withUsage = try object(CompletionResponse(id: "c", created: 1, model: "m", choices: [.init(text: "a")], usageIsNull: true).json)
        XCTAssertEqual(withUsage["usage"], .null)
    }

    func testNothingUnmeasuredBecomesNaN() throws {
        let t = CompletionResponse.Timings(JobTimings(), SpeculationStats(), completionTokens: 0)
        XCTAssertEqual(t.predictedPerSecond, 0)
        let s = CompletionResponse.SpeculativeDecoding(SpeculationStats())
        XCTAssertEqual(s.draftAcceptanceRate, 0)
        XCTAssertEqual(s.meanAcceptanceLength, 1)
    }

    func testCompletionIDsAreUnique() {
        let ids = Set((0..<100).map { _ in completionID() })
        XCTAssertEqual(ids.count, 100)
        XCTAssertTrue(ids.allSatisfy { $0.hasPrefix("cmpl-") && $0.count == 29 })
    }

    func testMetricsOfSeveralModelsMergeIntoOneFamilyEachWithModelLabels() {
        let a = "# HELP x_total X.\n# TYPE x_total counter\nx_total 1\n# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_sum 3\n"
        let b = "# HELP x_total X.\n# TYPE x_total counter\nx_total 4\n# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 5\nh_sum 6\n"
        let merged = mergeMetrics([("model_name=\"a\"", a), ("model_name=\"b\"", b)])
        XCTAssertEqual(merged, """
        # HELP x_total X.
        # TYPE x_total counter
        x_total{model_name="a"} 1
        x_total{model_name="b"} 4
        # HELP h H.
        # TYPE h histogram
        h_bucket{model_name="a",le="1"} 2
        h_sum{model_name="a"} 3
        h_bucket{model_name="b",le="1"} 5
        h_sum{model_name="b"} 6

        """)
    }
}
