import InferenceCore
import SpeculativeDecoding

// POST /v1/completions: the OpenAI fields, decoded and checked before anything is queued. Checks that need the
// model (token ids in its vocabulary, the context) are made by the route.

public struct CompletionRequest: Sendable, Equatable {
    public enum Prompt: Sendable, Equatable {
        case text(String)
        case tokens([Int])
    }

    /// The per-request speculation override (an extension): `"speculative": {"method": "...", "num_tokens": k}`.
    public struct Speculative: Sendable, Equatable {
        public var method: SpeculativeMethod?
        public var numTokens: Int?
    }

    public var model: String
    public var prompt: Prompt
    public var maxTokens = 16
    /// OpenAI's default is 1 (sampling); 0 decodes greedily.
    public var temperature: Float = 1
    public var topP: Float = 1
    public var topK = 0
    public var minP: Float = 0
    public var stop: [String] = []
    public var seed: UInt64?
    public var stream = false
    public var includeUsage = false
    public var echo = false
    public var speculative: Speculative?

    public init(model: String, prompt: Prompt) {
        self.model = model
        self.prompt = prompt
    }

    public var sampling: SamplingParameters {
        SamplingParameters(temperature: temperature, topK: topK, topP: topP, minP: minP, seed: seed)
    }

    static let keys: Set<String> = ["model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "min_p", "stop", "seed",
                                    "stream", "stream_options", "echo", "n", "speculative", "logprobs", "best_of",
                                    "frequency_penalty", "presence_penalty", "logit_bias", "suffix", "user"]

    /// Decodes and checks a request body. Unknown fields are refused (a misspelt `max_token` would otherwise be
    /// silently ignored); OpenAI fields this server does not implement are accepted only at their neutral value.
    public static func decode(_ body: [UInt8]) throws(APIError) -> CompletionRequest {
        let json = try parseBody(body)
        do {
            return try decode(json)
        } catch {
            throw APIError(error)
        }
    }

    static func decode(_ json: JSONValue) throws(JSONFieldError) -> CompletionRequest {
        let r = try JSONObjectReader(json, at: "", keys: keys, nullIsAbsent: true)
        let model = try r.required("model") { (v, p) throws(JSONFieldError) in try v.string(at: p) }
        let prompt = try r.required("prompt") { (v, p) throws(JSONFieldError) in try decodePrompt(v, at: p) }
        var q = CompletionRequest(model: model, prompt: prompt)
        q.maxTokens = try r.int("max_tokens", default: q.maxTokens, in: 1...1_000_000)
        q.temperature = Float(try r.double("temperature", default: Double(q.temperature), in: 0...2))
        q.topP = Float(try r.double("top_p", default: Double(q.topP), in: 0...1))
        guard q.topP > 0 else { throw JSONFieldError(path: "top_p", message: "must be above 0 (1 keeps every token)") }
        q.topK = try r.int("top_k", default: q.topK, in: -1...Int.max)
        if q.topK == -1 { q.topK = 0 }  // vLLM's spelling of "off"
        q.minP = Float(try r.double("min_p", default: Double(q.minP), in: 0...1))
        q.stop = try r.optional("stop") { (v, p) throws(JSONFieldError) in try decodeStop(v, at: p) } ?? []
        q.seed = try r.optional("seed") { (v, p) throws(JSONFieldError) in UInt64(bitPattern: Int64(try v.int(at: p))) }
        q.stream = try r.bool("stream", default: false)
        if let options = r.value("stream_options") {
            guard q.stream else { throw JSONFieldError(path: "stream_options", message: "is only allowed when stream is true") }
            let o = try JSONObjectReader(options, at: "stream_options", keys: ["include_usage"], nullIsAbsent: true)
            q.includeUsage = try o.bool("include_usage", default: false)
        }
        q.echo = try r.bool("echo", default: false)
        _ = try r.int("n", default: 1, in: 1...1)
        _ = try r.int("best_of", default: 1, in: 1...1)
        if r.has("logprobs") { throw JSONFieldError(path: "logprobs", message: "is not supported by this server (send null or leave it out)") }
        if r.has("suffix") { throw JSONFieldError(path: "suffix", message: "is not supported by this server (send null or leave it out)") }
        _ = try r.double("frequency_penalty", default: 0, in: 0...0)
        _ = try r.double("presence_penalty", default: 0, in: 0...0)
        if let bias = r.value("logit_bias") {
            guard case let .object(fields) = bias else { throw bias.mismatch("an object", at: "logit_bias") }
            guard fields.isEmpty else { throw JSONFieldError(path: "logit_bias", message: "is not supported by this server (send {} or leave it out)") }
        }
        _ = try r.optional("user") { (v, p) throws(JSONFieldError) in try v.string(at: p) }
        if let v = r.value("speculative") {
            let s = try JSONObjectReader(v, at: "speculative", keys: ["method", "num_tokens"], nullIsAbsent: true)
            var spec = Speculative()
            if let name = try s.optional("method", { (v, p) throws(JSONFieldError) in try v.string(at: p) }) {
                guard let method = SpeculativeMethod(rawValue: name) else {
                    throw JSONFieldError(path: "speculative.method",
                                         message: "'\(name)' is not one of \(SpeculativeMethod.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                spec.method = method
            }
            if s.has("num_tokens") { spec.numTokens = try s.int("num_tokens", default: 5, in: 1...16) }
            q.speculative = spec
        }
        return q
    }

    /// A string, an array of one string, an array of token ids, or an array of one array of token ids.
    static func decodePrompt(_ v: JSONValue, at p: String) throws(JSONFieldError) -> Prompt {
        switch v {
        case let .string(text):
            return .text(text)
        case let .array(items):
            guard let first = items.first else { throw JSONFieldError(path: p, message: "is an empty array") }
            switch first {
            case .string, .array:
                guard items.count == 1 else {
                    throw JSONFieldError(path: p, message: "holds \(items.count) prompts; this server takes one prompt per request")
                }
                if case let .string(text) = first { return .text(text) }
                return .tokens(try tokenIDs(first.array(at: "\(p)[0]"), at: "\(p)[0]"))
            default:
                return .tokens(try tokenIDs(items, at: p))
            }
        default:
            throw v.mismatch("a string or an array of token ids", at: p)
        }
    }

    static func tokenIDs(_ items: [JSONValue], at p: String) throws(JSONFieldError) -> [Int] {
        guard !items.isEmpty else { throw JSONFieldError(path: p, message: "is an empty array") }
        var ids: [Int] = []
        ids.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            let id = try item.int(at: "\(p)[\(i)]")
            guard id >= 0 else { throw JSONFieldError(path: "\(p)[\(i)]", message: "token id \(id) is negative") }
            ids.append(id)
        }
        return ids
    }

    static func decodeStop(_ v: JSONValue, at p: String) throws(JSONFieldError) -> [String] {
        let stops: [String]
        switch v {
        case let .string(s):
            stops = [s]
        case let .array(items):
            guard items.count <= 4 else { throw JSONFieldError(path: p, message: "has \(items.count) sequences; at most 4 are allowed") }
            stops = try items.enumerated().map { (i, item) throws(JSONFieldError) in try item.string(at: "\(p)[\(i)]") }
        default:
            throw v.mismatch("a string or an array of strings", at: p)
        }
        guard !stops.contains("") else { throw JSONFieldError(path: p, message: "holds an empty string") }
        return stops
    }
}
