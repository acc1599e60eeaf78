import InferenceCore

// One interface for every way of guessing ahead (DESIGN §5): a drafter proposes a draft tree after the committed
// tokens, the target verifies it in one forward, and the drafter hears what was accepted so it can roll its own
// state (a draft model's KV cache, an MTP module's cache) forward or back.

public enum SpeculativeMethod: String, Sendable, CaseIterable, Codable {
    case none, draft, medusa, mtp, ngram
}

public protocol Drafter: AnyObject {
    var method: SpeculativeMethod { get }
    /// The acceptance rule this drafter's proposals are verified with, for the request's sampling.
    func acceptanceRule(for sampling: SamplingParameters) -> AcceptanceRule
    /// After the prompt's prefill: `tokens` is the prompt plus the first generated token (pending), `hidden`
    /// the target's final hidden states `[prompt, H]` (after the final norm) of the prompt rows.
    func start(tokens: [Int], hidden: Tensor)
    /// Proposes at most `limit` draft tokens along any path to follow `tokens` (whose last token is pending).
    func propose(tokens: [Int], limit: Int, sampling: SamplingParameters, rng: inout SeededGenerator) -> DraftTree
    /// After verification. `tokens` now ends with the new pending token; `hidden` holds the target's final hidden
    /// states of the committed verification rows, in order: the old pending token, then each accepted node.
    func commit(tokens: [Int], tree: DraftTree, outcome: AcceptanceOutcome, hidden: [[Float]])
}

extension Drafter {
    public func acceptanceRule(for sampling: SamplingParameters) -> AcceptanceRule {
        sampling.isGreedy ? .greedy : .rejectionSampling
    }
}
