import InferenceCore

// Medusa drafting: the heads read the target's final hidden state at the row that produced the pending token;
// the compiled tree takes each head's top-k tokens. Greedy requests use exact-match acceptance (lossless);
// sampled requests use typical acceptance (lossy, labelled in the stats) or, if configured, lossless multi-branch
// rejection sampling with the tree's tokens as deterministic guesses.

public final class MedusaDrafter: Drafter {
    public let method = SpeculativeMethod.medusa
    public let heads: MedusaHeads
    public let tree: MedusaTree
    /// Typical acceptance (threshold, alpha) for T > 0; nil means lossless rejection sampling.
    public let typical: (threshold: Float, alpha: Float)?
    /// The tokens the heads score (v2 heads; nil: every token); the tree takes its top-k among them.
    public let vocabulary: VocabularySubset?
    private var lastHidden: [Float] = []

    public init(heads: MedusaHeads, tree: MedusaTree, typical: (threshold: Float, alpha: Float)? = (0.09, 0.3),
                vocabulary: VocabularySubset? = nil) {
        precondition(tree.maxDepth <= heads.count, "the tree is deeper than the heads")
        precondition(vocabulary == nil || heads.layout == .v2SharedHead, "a vocabulary subset of the lm_head serves v2 heads only")
        self.heads = heads
        self.tree = tree
        self.typical = typical
        self.vocabulary = vocabulary
    }

    public func acceptanceRule(for sampling: SamplingParameters) -> AcceptanceRule {
        if sampling.isGreedy { return .greedy }
        if let typical { return .typical(threshold: typical.threshold, alpha: typical.alpha) }
        return .rejectionSampling
    }

    public func start(tokens: [Int], hidden: Tensor) {
        lastHidden = Array(UnsafeBufferPointer(start: hidden.row(hidden.rows - 1), count: hidden.columns))
    }

    public func commit(tokens: [Int], tree: DraftTree, outcome: AcceptanceOutcome, hidden: [[Float]]) {
        lastHidden = hidden[hidden.count - 1]
    }

    public func propose(tokens: [Int], limit: Int, sampling: SamplingParameters, rng: inout SeededGenerator) -> DraftTree {
        let depth = min(tree.maxDepth, limit, heads.target.config.maxPositionEmbeddings - tokens.count)
        guard depth > 0, !lastHidden.isEmpty else { return DraftTree() }
        let logits = heads.logits(hidden: lastHidden, heads: depth, vocabulary: vocabulary)
        // A subset smaller than a head's widest rank leaves the ranks beyond it (and the nodes under them) out.
        let scored = vocabulary?.ids.count ?? logits.columns
        let top = (0..<depth).map { h in
            topK(UnsafeBufferPointer(start: logits.row(h), count: logits.columns), min(tree.ranksPerHead[h], scored))
        }
        var draft = DraftTree()
        var mapped = [Int](repeating: -1, count: tree.nodes.count)
        for (i, node) in tree.nodes.enumerated() where node.depth < depth && node.rank < top[node.depth].count {
            if node.parent >= 0 && mapped[node.parent] < 0 { continue }
            mapped[i] = draft.add(token: top[node.depth][node.rank], parent: node.parent < 0 ? -1 : mapped[node.parent])
        }
        return draft
    }
}

/// Indices of the k largest values, largest first (ties: lower index first).
func topK(_ values: UnsafeBufferPointer<Float>, _ k: Int) -> [Int] {
    var best: [Int] = []
    best.reserveCapacity(k + 1)
    for i in 0..<values.count {
        let v = values[i]
        if best.count == k, let last = best.last, values[last] >= v { continue }
        var j = best.count
        while j > 0 && values[best[j - 1]] < v { j -= 1 }
        best.insert(i, at: j)
        if best.count > k { best.removeLast() }
    }
    return best
}
