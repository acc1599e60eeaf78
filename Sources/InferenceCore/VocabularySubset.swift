// A drafter's output layer cut down to the most frequent tokens (frequency-ranked drafting).
//
// Drafting one token through a small model reads its whole lm_head: for the shipped draft model that is 57 % of
// its weights (8192 × 192), for an MTP module 63 % of what a drafted token reads (the target's 8192 × 384 head),
// for Medusa heads of layout v2 nearly all of a step's drafting bytes (the same head, one row per head).
// Most tokens a drafter gets right are common ones, so scoring only the `N` most frequent tokens of the training
// corpus loses little acceptance and saves most of those bytes. It costs nothing in exactness: the target still
// verifies every draft, and a sampled draft is still drawn from a proper distribution q (zero outside the subset),
// which rejection sampling corrects exactly.
//
// Layout: `weight` is `[N, H]`, row i a copy of lm_head row `ids[i]` (row-major, as the lm_head). Each logit is
// the same dot product over H the full lm_head computes (the streaming kernel computes every output on its own),
// so a subset logit is bitwise the full one.

public final class VocabularySubset: @unchecked Sendable {
    /// Token ids kept, in the order given (most frequent first).
    public let ids: [Int]
    /// The full vocabulary size; logits come back this long.
    public let vocabSize: Int
    let weight: Tensor
    let pool: WorkerPool

    /// Keeps lm_head rows `ids` (each in `0..<lmHead.rows`, no repeats).
    public init(lmHead: Tensor, ids: [Int], pool: WorkerPool = .shared) {
        precondition(!ids.isEmpty && Set(ids).count == ids.count && ids.allSatisfy { (0..<lmHead.rows).contains($0) },
                     "a vocabulary subset takes distinct token ids inside the vocabulary")
        self.ids = ids
        self.vocabSize = lmHead.rows
        self.pool = pool
        let h = lmHead.columns
        weight = Tensor(shape: [ids.count, h])
        for (i, id) in ids.enumerated() { weight.row(i).update(from: lmHead.row(id), count: h) }
        // A drafter's head: streamed from a BF16 copy when its values allow (bitwise the same logits).
        weight.keepBF16Copy()
    }

    /// Bytes one drafted token reads through this head.
    public var byteCount: Int { weight.streamedByteCount }

    /// Full-vocabulary logits `[M, V]` of final hidden states `[M, H]` (one pass over the subset's head for all rows),
    /// laid out as `logits(hidden:)` gives each.
    public func logits(rows hidden: Tensor) -> Tensor {
        let m = hidden.rows
        let scores = Tensor(shape: [m, ids.count])
        matmul(hidden.data, rows: m, weight: weight, into: scores.data, path: .streaming, pool: pool)
        let out = Tensor(shape: [m, vocabSize])
        out.data.update(repeating: -.infinity, count: m * vocabSize)
        for r in 0..<m {
            let s = scores.row(r), o = out.row(r)
            for (i, id) in ids.enumerated() { o[id] = s[i] }
        }
        return out
    }

    /// Full-vocabulary logits of one final hidden state `[H]`: the kept tokens' scores, −∞ for every other token
    /// (argmax, softmax and sampling then never pick one).
    public func logits(hidden: UnsafePointer<Float>) -> [Float] {
        var scores = [Float](repeating: 0, count: ids.count)
        scores.withUnsafeMutableBufferPointer {
            matmul(hidden, rows: 1, weight: weight, into: $0.baseAddress!, path: .streaming, pool: pool)
        }
        var out = [Float](repeating: -.infinity, count: vocabSize)
        for (i, id) in ids.enumerated() { out[id] = scores[i] }
        return out
    }
}
