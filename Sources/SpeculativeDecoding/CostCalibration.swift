import InferenceCore

// Measures the cost model speculation decisions use (auto-off break-even, Medusa tree size) on this machine:
// verification forwards of 1…maxRows rows at a realistic context, relative to one decode step, and the cost of one
// draft step relative to the same decode step.

extension CostModel {
    /// `draftStep` runs one draft step (one draft token); nil when drafting is free (n-gram). The context defaults
    /// to 128 positions, or half the model's context when that is shorter.
    public static func measure(target: LlamaModel, maxRows: Int = 17, context: Int? = nil, repeats: Int = 5,
                               draftStep: (() -> Void)? = nil) -> CostModel {
        let context = context ?? min(128, target.config.maxPositionEmbeddings / 2)
        let cache = target.makeCache(capacity: context + maxRows + 1)
        let prompt = min(context, target.config.maxPositionEmbeddings - maxRows - 1)
        _ = target.forward((0..<prompt).map { Row(token: $0 % target.config.vocabSize, position: $0, cache: cache, isPrompt: true, wantsLogits: false) })
        cache.append(prompt)
        func time(_ rows: Int) -> Double {
            medianSeconds(repeats: repeats) {
                _ = target.forward((0..<rows).map { Row(token: ($0 * 7) % target.config.vocabSize, position: prompt + $0, cache: cache) })
            }
        }
        let one = time(1)
        var verify = [0.0, 1.0]
        for r in 2...max(2, maxRows) { verify.append(time(r) / one) }
        let draft = draftStep.map { medianSeconds(repeats: repeats, $0) / one } ?? 0
        return CostModel(draftPerToken: draft, verify: verify, decodeSeconds: one, clock: DecodeStepClock())
    }
}
