import InferenceCore

// Plain decoding: the `none` method, and the baseline every speculative method is measured and checked against.
// Prompt rows go through one forward (sgemm for long prompts), then one row per step through the streaming kernel.

public struct GenerationResult: Sendable {
    public var tokens: [Int] = []
    public var promptTokens = 0
    public var promptSeconds = 0.0
    public var generationSeconds = 0.0
    public var finishReason: FinishReason = .length

    public enum FinishReason: String, Sendable { case length, stop }

    public var generationTokensPerSecond: Double { generationSeconds > 0 ? Double(tokens.count) / generationSeconds : 0 }
    public var promptTokensPerSecond: Double { promptSeconds > 0 ? Double(promptTokens) / promptSeconds : 0 }
}

public struct PlainDecoder {
    public let model: LlamaModel

    public init(model: LlamaModel) { self.model = model }

    /// Generates up to `maxTokens` tokens after `prompt`. `onToken` sees each token as it is produced and
    /// returns false to stop early; a token in `stopTokens` ends generation (and is not emitted).
    public func generate(
        prompt: [Int], maxTokens: Int, sampling: SamplingParameters = .greedy, stopTokens: Set<Int> = [],
        onToken: (Int) -> Bool = { _ in true }
    ) -> GenerationResult {
        precondition(!prompt.isEmpty, "an empty prompt has nothing to continue")
        var result = GenerationResult(promptTokens: prompt.count)
        let budget = min(maxTokens, model.config.maxPositionEmbeddings - prompt.count)
        guard budget > 0 else { return result }
        let cache = model.makeCache(capacity: prompt.count + budget)
        var sampler = Sampler(sampling)

        var start = monotonicSeconds()
        let rows = prompt.enumerated().map {
            Row(token: $1, position: $0, cache: cache, isPrompt: true, wantsLogits: $0 == prompt.count - 1)
        }
        var logits = model.forward(rows).logits(row: prompt.count - 1)
        cache.append(prompt.count)
        result.promptSeconds = monotonicSeconds() - start

        start = monotonicSeconds()
        while result.tokens.count < budget {
            let token = logits.withUnsafeBufferPointer { sampler.next($0) }
            if stopTokens.contains(token) { result.finishReason = .stop; break }
            result.tokens.append(token)
            if !onToken(token) { result.finishReason = .stop; break }
            if result.tokens.count == budget { break }
            logits = model.forward([Row(token: token, position: cache.count, cache: cache)]).logits(row: 0)
            cache.append(1)
        }
        result.generationSeconds = monotonicSeconds() - start
        return result
    }
}
