import InferenceCore

// DeepSeek-V3-style MTP drafting: the module reads the target's final hidden state at position i and the next
// token's embedding and predicts the token after it; chains longer than the module count reuse the module with its
// own output as the hidden state. Its KV cache stays in step with the target: committed positions hold entries
// computed from the target's true hidden states; drafted positions are rolled back at every commit.

public final class MTPDrafter: Drafter {
    public let method = SpeculativeMethod.mtp
    public let module: MTPModule
    private var cache: KVCache?
    /// MTP cache entries 0..<committed were computed from the target's hidden states.
    private var committed = 0
    /// Target hidden states of positions committed..<committed + count, not yet fed to the module.
    private var waiting: [[Float]] = []

    public init(module: MTPModule) { self.module = module }

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
        var (h, logits) = module.forward(hidden: waiting, tokens: positions.map { tokens[$0 + 1] }, positions: positions,
                                         cache: cache, logitsOfLastRow: true)
        cache.append(positions.count)
        committed += positions.count
        waiting = []
        let room = min(limit, module.target.config.maxPositionEmbeddings - tokens.count)
        var tree = DraftTree()
        var position = tokens.count - 1
        while tree.count < room, let current = logits {
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
            (h, logits) = module.forward(hidden: [previous], tokens: [token], positions: [position], cache: cache, logitsOfLastRow: true)
            cache.append(1)
            position += 1
        }
        return tree
    }

    public func commit(tokens: [Int], tree: DraftTree, outcome: AcceptanceOutcome, hidden: [[Float]]) {
        cache?.truncate(to: committed)
        waiting = hidden
    }
}
