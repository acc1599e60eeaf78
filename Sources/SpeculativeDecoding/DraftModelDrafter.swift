import Foundation
import InferenceCore

// A small draft model with the target's tokenizer proposes a chain: it catches up on the committed tokens it
// has not seen (the pending token at least) in one forward, then drafts token by token until `limit` tokens or
// until its top probability falls below `pMin`. Greedy requests take its argmax; sampled requests draw from its
// full distribution q, which rejection sampling needs. Its KV cache rolls back to the accepted prefix. With a
// `vocabulary` subset it scores only those tokens (its own forward then skips the full lm_head).

public final class DraftModelDrafter: SteppedDrafter {
    public let method = SpeculativeMethod.draft
    public let model: LlamaModel
    public let pMin: Float
    /// The draft model's lm_head cut to the most frequent tokens; nil scores the whole vocabulary.
    public let vocabulary: VocabularySubset?
    private var cache: KVCache?

    public init(model: LlamaModel, pMin: Float = 0, vocabulary: VocabularySubset? = nil) {
        precondition(vocabulary.map { $0.vocabSize == model.config.vocabSize } ?? true, "the subset is of another vocabulary")
        self.model = model
        self.pMin = pMin
        self.vocabulary = vocabulary
    }

    public func start(tokens: [Int], hidden: Tensor) {
        let cache = model.makeCache(capacity: model.config.maxPositionEmbeddings + 2)
        self.cache = cache
        // The prompt (everything but the pending token) in one forward.
        let prompt = tokens.count - 1
        if prompt > 0 {
            _ = model.forward((0..<prompt).map { Row(token: tokens[$0], position: $0, cache: cache, isPrompt: true, wantsLogits: false) })
            cache.append(prompt)
        }
    }

    // MARK: the proposal, one draft-model forward at a time (see SteppedDrafter)

    public var draftModel: LlamaModel { model }
    private var tree = DraftTree()
    private var room = 0
    private var rows: [Row] = []

    public func beginProposal(tokens: [Int], limit: Int) {
        tree = DraftTree()
        rows = []
        guard let cache, limit > 0 else { return }
        // Positions beyond the draft model's context cannot be drafted.
        room = min(limit, model.config.maxPositionEmbeddings - tokens.count)
        guard room > 0 else { return }
        // Catch up: every committed token the draft has not seen, the pending one included.
        rows = (cache.count..<tokens.count).map {
            Row(token: tokens[$0], position: $0, cache: cache, wantsLogits: vocabulary == nil && $0 == tokens.count - 1)
        }
    }

    public func proposalRows() -> [Row] { rows }

    public func takeProposalOutput(_ output: ForwardOutput, offset: Int, sampling: SamplingParameters, rng: inout SeededGenerator) {
        guard let cache, !rows.isEmpty else { return }
        cache.append(rows.count)
        let last = offset + rows.count - 1
        let logits = vocabulary?.logits(hidden: output.hidden.row(last)) ?? output.logits(row: last)
        rows = []
        let token: Int
        var q: [Float]? = nil
        if sampling.isGreedy {
            token = argmax(logits)
            if pMin > 0 && softmaxProbability(of: token, in: logits, among: vocabulary?.ids) < pMin { return }
        } else {
            let dist = distribution(logits, sampling)
            if pMin > 0 && (dist.max() ?? 0) < pMin { return }
            token = sample(dist, using: &rng)
            q = dist
        }
        tree.add(token: token, parent: tree.count - 1, distribution: q)
        // The last drafted token is never fed back: the target verifies it.
        if tree.count < room { rows = [Row(token: token, position: cache.count, cache: cache, wantsLogits: vocabulary == nil)] }
    }

    public func finishProposal() -> DraftTree {
        rows = []
        return tree
    }

    public func commit(tokens: [Int], tree: DraftTree, outcome: AcceptanceOutcome, hidden: [[Float]]) {
        guard let cache else { return }
        // The cache holds the old context and the draft tokens fed back (all but the last); keep what was accepted.
        let old = tokens.count - outcome.path.count - 1
        cache.truncate(to: min(cache.count, old + outcome.path.count))
    }
}

/// softmax(logits)[token] at temperature 1; with `ids`, only those entries are finite (a vocabulary subset's
/// logits) and only they are summed.
func softmaxProbability(of token: Int, in logits: [Float], among ids: [Int]? = nil) -> Float {
    var m = -Float.infinity, sum: Float = 0
    if let ids {
        for i in ids { m = max(m, logits[i]) }
        for i in ids { sum += expf(logits[i] - m) }
    } else {
        for l in logits { m = max(m, l) }
        for l in logits { sum += expf(l - m) }
    }
    return expf(logits[token] - m) / sum
}
