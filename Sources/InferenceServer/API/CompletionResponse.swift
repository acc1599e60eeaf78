import Foundation
import SpeculativeDecoding

// The OpenAI completion object, and each chunk of a stream, with this server's extensions: `timings` (llama.cpp's
// names) and `metrics.speculative_decoding`.

public struct CompletionResponse: Encodable, Sendable {
    public struct Choice: Encodable, Sendable {
        public var text: String
        public var index = 0
        /// "stop" or "length"; nil in a stream chunk before the last.
        public var finishReason: String?

        enum CodingKeys: String, CodingKey { case text, index, logprobs, finishReason = "finish_reason" }
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(text, forKey: .text)
            try c.encode(index, forKey: .index)
            try c.encodeNil(forKey: .logprobs)
            try c.encode(finishReason, forKey: .finishReason)  // null while streaming
        }
    }

    public struct Usage: Encodable, Sendable, Equatable {
        public var promptTokens: Int
        public var completionTokens: Int
        public var totalTokens: Int { promptTokens + completionTokens }

        enum CodingKeys: String, CodingKey { case promptTokens = "prompt_tokens", completionTokens = "completion_tokens", totalTokens = "total_tokens" }
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(promptTokens, forKey: .promptTokens)
            try c.encode(completionTokens, forKey: .completionTokens)
            try c.encode(totalTokens, forKey: .totalTokens)
        }
    }

    public struct Timings: Encodable, Sendable, Equatable {
        public var promptN: Int
        public var promptMs: Double
        public var predictedN: Int
        public var predictedMs: Double
        public var predictedPerSecond: Double
        public var draftN: Int
        public var draftNAccepted: Int
        public var draftNVerifSteps: Int

        enum CodingKeys: String, CodingKey {
            case promptN = "prompt_n", promptMs = "prompt_ms", predictedN = "predicted_n", predictedMs = "predicted_ms"
            case predictedPerSecond = "predicted_per_second", draftN = "draft_n", draftNAccepted = "draft_n_accepted"
            case draftNVerifSteps = "draft_n_verif_steps"
        }

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
        }
    }

    public struct SpeculativeDecoding: Encodable, Sendable, Equatable {
        public var method: String
        public var lossless: Bool
        public var autoDisabled: Bool
        public var numSpecSteps: Int
        public var numDraftTokens: Int
        public var numAcceptedDraftTokens: Int
        public var draftAcceptanceRate: Double
        public var meanAcceptanceLength: Double
        public var acceptancePerPosition: [Double]

        enum CodingKeys: String, CodingKey {
            case method, lossless, autoDisabled = "auto_disabled", numSpecSteps = "num_spec_steps"
            case numDraftTokens = "num_draft_tokens", numAcceptedDraftTokens = "num_accepted_draft_tokens"
            case draftAcceptanceRate = "draft_acceptance_rate", meanAcceptanceLength = "mean_acceptance_length"
            case acceptancePerPosition = "acceptance_per_position"
        }

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
    }

    public struct Metrics: Encodable, Sendable {
        public var speculativeDecoding: SpeculativeDecoding
        enum CodingKeys: String, CodingKey { case speculativeDecoding = "speculative_decoding" }
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

    enum CodingKeys: String, CodingKey { case id, object, created, model, choices, usage, timings, metrics }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(object, forKey: .object)
        try c.encode(created, forKey: .created)
        try c.encode(model, forKey: .model)
        try c.encode(choices, forKey: .choices)
        if let usage { try c.encode(usage, forKey: .usage) } else if usageIsNull { try c.encodeNil(forKey: .usage) }
        try c.encodeIfPresent(timings, forKey: .timings)
        try c.encodeIfPresent(metrics, forKey: .metrics)
    }

    public var json: [UInt8] { encodeJSON(self) }
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

/// Encodes a response body. Every value is finite (see `finite`), so encoding cannot fail; should it, the body
/// says so rather than the server trapping.
func encodeJSON<T: Encodable>(_ value: T) -> [UInt8] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.withoutEscapingSlashes]
    do {
        return [UInt8](try encoder.encode(value))
    } catch {
        return OpenAIErrorBody.json(status: .internalServerError, message: "the response could not be encoded: \(error)")
    }
}
