import InferenceCore

// Prompt lookup (n-gram) drafting: find the most recent earlier occurrence of the context's last n tokens
// (n from `maxN` down to `minN`) in the prompt and the output so far, and propose what followed it.
// Free to draft; pays on prompts that repeat themselves (edits, refactors, quoting). The guess is deterministic,
// so rejection sampling treats it as a one-hot draft distribution.

public final class NGramDrafter: Drafter {
    public let method = SpeculativeMethod.ngram
    public let minN: Int
    public let maxN: Int

    public init(minN: Int = 1, maxN: Int = 3) {
        precondition(minN >= 1 && maxN >= minN, "n-gram sizes must satisfy 1 ≤ min ≤ max")
        self.minN = minN
        self.maxN = maxN
    }

    public func start(tokens: [Int], hidden: Tensor) {}
    public func commit(tokens: [Int], tree: DraftTree, outcome: AcceptanceOutcome, hidden: [[Float]]) {}

    public func propose(tokens: [Int], limit: Int, sampling: SamplingParameters, rng: inout SeededGenerator) -> DraftTree {
        DraftTree(chain: lookup(tokens, limit: limit))
    }

    /// The continuation of the longest, then most recent, earlier match of the context's suffix.
    public func lookup(_ tokens: [Int], limit: Int) -> [Int] {
        let count = tokens.count
        guard limit > 0 else { return [] }
        for n in stride(from: min(maxN, count - 1), through: minN, by: -1) {
            let suffixStart = count - n
            var i = suffixStart - 1
            while i >= 0 {
                var match = true
                for j in 0..<n where tokens[i + j] != tokens[suffixStart + j] { match = false; break }
                if match {
                    let from = i + n
                    let to = min(from + limit, count)
                    if from < to { return Array(tokens[from..<to]) }
                }
                i -= 1
            }
        }
        return []
    }
}
