import InferenceCore
import SpeculativeDecoding

// The cost of drafting one token with each method, relative to one target decode step, measured on this machine at
// start-up. With the verify costs (CostModel.measure) it decides when speculation pays (auto-off) and what the
// benchmark reports; both the server and `specserve bench` can use it.

public enum DraftCost {
    /// Cost of one draft token of `method` relative to one target decode step at a 128-token context; 0 for
    /// methods that draft for free (none, ngram).
    public static func measure(_ method: SpeculativeMethod, family: ModelFamily, medusaTree: MedusaTree?) -> Double {
        let context = min(128, family.target.config.maxPositionEmbeddings - 2)
        let target = medianStep {
            let cache = family.target.makeCache(capacity: context + 2)
            prefill(family.target, cache, context)
            return { _ = family.target.forward([Row(token: 1, position: context, cache: cache)]) }
        }
        guard target > 0 else { return 0 }
        switch method {
        case .none, .ngram:
            return 0
        case .draft:
            guard let draft = family.draft else { return 0 }
            let draftContext = min(context, draft.config.maxPositionEmbeddings - 2)
            return medianStep {
                let cache = draft.makeCache(capacity: draftContext + 2)
                prefill(draft, cache, draftContext)
                let vocabulary = family.draftVocabulary
                return {
                    let out = draft.forward([Row(token: 1, position: draftContext, cache: cache, wantsLogits: vocabulary == nil)])
                    if let vocabulary { _ = vocabulary.logits(hidden: out.hidden.row(0)) }
                }
            } / target
        case .mtp:
            guard let mtp = family.mtp else { return 0 }
            // One chain step at the same context as the target's step: the module's attention reads its whole cache.
            let hidden = [Float](repeating: 0.1, count: family.target.config.hiddenSize)
            let vocab = family.target.config.vocabSize
            return medianStep {
                let cache = mtp.makeCache(capacity: context + 2)
                if context > 0 {
                    _ = mtp.forward(hidden: Array(repeating: hidden, count: context), tokens: (0..<context).map { $0 % vocab },
                                    positions: Array(0..<context), cache: cache, logitsOfLastRow: false)
                    cache.append(context)
                }
                return {
                    _ = mtp.forward(hidden: [hidden], tokens: [1], positions: [context], cache: cache, logitsOfLastRow: true,
                                    vocabulary: family.mtpVocabulary)
                }
            } / target
        case .medusa:
            guard let heads = family.medusa, let tree = medusaTree else { return 0 }
            let hidden = [Float](repeating: 0.1, count: family.target.config.hiddenSize)
            let depth = max(tree.maxDepth, 1)
            let vocabulary = family.medusaVocabulary
            return medianStep { { _ = heads.logits(hidden: hidden, heads: depth, vocabulary: vocabulary) } } / target / Double(depth)
        }
    }

    private static func prefill(_ model: LlamaModel, _ cache: KVCache, _ count: Int) {
        guard count > 0 else { return }
        _ = model.forward((0..<count).map {
            Row(token: $0 % model.config.vocabSize, position: $0, cache: cache, isPrompt: true, wantsLogits: false)
        })
        cache.append(count)
    }

    /// Median seconds of the step `setUp` returns, over 7 runs after a warm-up.
    private static func medianStep(_ setUp: () -> () -> Void) -> Double {
        let step = setUp()
        step()
        var times: [Double] = []
        for _ in 0..<7 {
            let start = monotonicSeconds()
            step()
            times.append(monotonicSeconds() - start)
        }
        return times.sorted()[3]
    }
}
