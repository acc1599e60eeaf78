import Foundation
import SpeculativeDecoding

// The OpenAI completion object, and each chunk of a stream, with this server's extensions: `timings` (llama.cpp's
// names) and `metrics.speculative_decoding`.

public struct CompletionResponse: Sendable {
    public struct Choice: Sendable {
        public var text: String
        public var index = 0
        /// "stop" or "length"; nil (null) in a stream chunk before the last.
        public var finishReason: String?

        var output: JSONOutput {
            .object(["text": .string(text), "index": .int(index), "logprobs": .null, "finish_reason": .optional(finishReason)])
        }
    }

    public struct Usage: Sendable, Equatable {
        public var promptTokens: Int
        public var completionTokens: Int
        public var totalTokens: Int { promptTokens + completionTokens }

        var output: JSONOutput {
            .object(["prompt_tokens": .int(promptTokens), "completion_tokens": .int(completionTokens), "total_tokens": .int(totalTokens)])
        }
    }

    /// llama.cpp's names.
    public struct Timings: Sendable, Equatable {
        public var promptN: Int
        public var promptMs: Double
        public var predictedN: Int
        public var predictedMs: Double
        public var predictedPerSecond: Double
        public var draftN: Int
        public var draftNAccepted: Int
        public var draftNVerifSteps: Int
        /// Time spent queued before prefill started (not part of prompt_ms or predicted_ms).
        public var queueMs: Double

        /// `completionTokens` is what the response carries (a stop sequence may end it before the engine stopped).
        init(_ t: JobTimings, _ s: SpeculationStats, completionTokens: Int) {
            promptN = t.promptTokens
            promptMs = finite(t.promptMs)
            predictedN = completionTokens
            predictedMs = finite(t.generationMs)
            predictedPerSecond = t.generationMs > 0 ? finite(Double(completionTokens) * 1e3 / t.generationMs) : 0
            draftN = s.drafted
            draftNAccepted = s.accepted
            draftNVerifSteps = s.steps
            queueMs = finite(t.queuedMs)
        }

        var output: JSONOutput {
            .object(["prompt_n": .int(promptN), "prompt_ms": .double(promptMs), "predicted_n": .int(predictedN),
                     "predicted_ms": .double(predictedMs), "predicted_per_second": .double(predictedPerSecond), "draft_n": .int(draftN),
                     "draft_n_accepted": .int(draftNAccepted), "draft_n_verif_steps": .int(draftNVerifSteps),
                     "queue_ms": .double(queueMs)])
        }
    }

    public struct SpeculativeDecoding: Sendable, Equatable {
        public var method: String
        public var lossless: Bool
        public var autoDisabled: Bool
        public var numSpecSteps: Int
        public var numDraftTokens: Int
        public var numAcceptedDraftTokens: Int
        public var draftAcceptanceRate: Double
        public var meanAcceptanceLength: Double
        public var acceptancePerPosition: [Double]

        init(_ s: SpeculationStats) {
            method = s.method.rawValue
            lossless = s.lossless
            autoDisabled = s.autoDisabled
            numSpecSteps = s.steps
            numDraftTokens = s.drafted
            numAcceptedDraftTokens = s.accepted
            draftAcceptanceRate = finite(s.acceptanceRate)
            meanAcceptanceLength = finite(s.meanAcceptanceLength)
            acceptancePerPosition = s.acceptancePerPosition.map(finite)
        }

        var output: JSONOutput {
            .object(["method": .string(method), "lossless": .bool(lossless), "auto_disabled": .bool(autoDisabled),
                     "num_spec_steps": .int(numSpecSteps), "num_draft_tokens": .int(numDraftTokens),
                     "num_accepted_draft_tokens": .int(numAcceptedDraftTokens), "draft_acceptance_rate": .double(draftAcceptanceRate),
                     "mean_acceptance_length": .double(meanAcceptanceLength),
                     "acceptance_per_position": .array(acceptancePerPosition.map { .double($0) })])
        }
    }

    public struct Metrics: Sendable {
        public var speculativeDecoding: SpeculativeDecoding
    }

    public var id: String
    public var object = "text_completion"
    public var created: Int
    public var model: String
    public var choices: [Choice]
    /// Absent from stream chunks unless include_usage was asked for (then null but in the usage chunk).
    public var usage: Usage?
    var usageIsNull = false
    public var timings: Timings?
    public var metrics: Metrics?

    var output: JSONOutput {
        var fields: [(String, JSONOutput)] = [("id", .string(id)), ("object", .string(object)), ("created", .int(created)),
                                              ("model", .string(model)), ("choices", .array(choices.map(\.output)))]
        if let usage { fields.append(("usage", usage.output)) } else if usageIsNull { fields.append(("usage", .null)) }
        if let timings { fields.append(("timings", timings.output)) }
        if let metrics { fields.append(("metrics", .object(["speculative_decoding": metrics.speculativeDecoding.output]))) }
        return .fields(fields)
    }

    public var json: [UInt8] { output.bytes }
}

/// A completion's id: `cmpl-` and 24 random hex digits.
func completionID() -> String {
    var rng = SystemRandomNumberGenerator()
    return "cmpl-" + (0..<3).map { _ in
        let hex = String(rng.next() as UInt32, radix: 16)
        return String(repeating: "0", count: 8 - hex.count) + hex
    }.joined()
}

func unixTime() -> Int { Int(Date().timeIntervalSince1970) }

private func finite(_ v: Double) -> Double { v.isFinite ? v : 0 }

/// Encodes a Codable value from another layer (the benchmark report) with sorted keys; should encoding fail, the
/// body says so rather than the server trapping.
func encodeJSON<T: Encodable>(_ value: T) -> [UInt8] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
    do {
        return [UInt8](try encoder.encode(value))
    } catch {
        return OpenAIErrorBody.json(status: .internalServerError, message: "the response could not be encoded: \(error)")
    }
}
