import InferenceCore

// DeepSeek-V3-style MTP drafting: the module reads the target's final hidden state at position i and the next
// token's embedding and predicts the token after it; chains longer than the module count reuse the module with its
// own output as the hidden state. Its KV cache stays in step with the target: committed positions hold entries
// computed from the target's true hidden states; drafted positions are rolled back at every commit. With a
// `vocabulary` subset it scores only those tokens instead of reading the target's whole lm_head per drafted token.

public final class MTPDrafter: Drafter {
    public let method = SpeculativeMethod.mtp
    public let module: MTPModule
    private var cache: KVCache?
    /// MTP cache entries 0..<committed were computed from the target's hidden states.
    private var committed = 0
    /// Target hidden states of positions committed..<committed + count, not yet fed to the module.
    private var waiting: [[Float]] = []

    /// The target's lm_head cut to the most frequent tokens; nil scores the whole vocabulary.
    public let vocabulary: VocabularySubset?

    public init(module: MTPModule, vocabulary: VocabularySubset? = nil) {
        precondition(vocabulary.map { $0.vocabSize == module.target.config.vocabSize } ?? true, "the subset is of another vocabulary")
        self.module = module
        self.vocabulary = vocabulary
    }

    /// The module on `hidden`/`tokens` at `positions`, and the logits of its last row (through the subset if any).
    private func step(hidden: [[Float]], tokens: [Int], positions: [Int], cache: KVCache) -> (hidden: Tensor, logits: [Float]) {
        let (h, logits) = module.forward(hidden: hidden, tokens: tokens, positions: positions, cache: cache,
                                         logitsOfLastRow: true, vocabulary: vocabulary)
        return (h, logits!)
    }

    public func start(tokens: [Int], hidden: Tensor) {
        cache = module.makeCache(capacity: module.target.config.maxPositionEmbeddings + 2)
        committed = 0
        waiting = (0..<hidden.rows).map { Array(UnsafeBufferPointer(start: hidden.row($0), count: hidden.columns)) }
    }

    public func propose(tokens: [Int], limit: Int, sampling: SamplingParameters, rng: inout SeededGenerator) -> DraftTree {
        guard let cache, !waiting.isEmpty else { return DraftTree() }
        // Catch up: position i pairs the target's h_i with t_{i+1}; the last one predicts the token after the pending one.
        let positions = Array(committed..<(committed + waiting.count))
        precondition(positions.last! + 1 == tokens.count - 1, "MTP state out of step with the committed tokens")
        var (h, logits) = step(hidden: waiting, tokens: positions.map { tokens[$0 + 1] }, positions: positions, cache: cache)
        cache.append(positions.count)
        committed += positions.count
        waiting = []
        let room = min(limit, module.target.config.maxPositionEmbeddings - tokens.count)
        var tree = DraftTree()
        var position = tokens.count - 1
        while tree.count < room {
            let current = logits
            let token: Int
            var q: [Float]? = nil
            if sampling.isGreedy {
                token = argmax(current)
            } else {
                let dist = distribution(current, sampling)
                token = sample(dist, using: &rng)
                q = dist
            }
            tree.add(token: token, parent: tree.count - 1, distribution: q)
            if tree.count == room { break }
            let previous = Array(UnsafeBufferPointer(start: h.row(h.rows - 1), count: h.columns))
            (h, logits) = step(hidden: [previous], tokens: [token], positions: [position], cache: cache)
            cache.append(1)
            position += 1
        }
        return tree
    }

    public func commit(tokens: [Int], tree: DraftTree, outcome: AcceptanceOutcome, hidden: [[Float]]) {
        // After a plain step (speculation paused, nothing proposed) the states queue up for the next catch-up.
        cache?.truncate(to: committed)
        waiting.append(contentsOf: hidden)
    }
}
