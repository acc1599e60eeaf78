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

/// A drafter that builds its proposal over several forwards of its own model (a draft model: a catch-up forward,
/// then one row per drafted token). A scheduler can put the rows of many requests' drafters into one forward per
/// draft position, exactly as it batches the target's rows; `propose` drives it alone.
public protocol SteppedDrafter: Drafter {
    var draftModel: LlamaModel { get }
    /// Starts a proposal of at most `limit` tokens after `tokens` (whose last token is pending).
    func beginProposal(tokens: [Int], limit: Int)
    /// Rows for the next forward of `draftModel`; empty once the proposal is complete.
    func proposalRows() -> [Row]
    /// Takes that forward's results for the rows `proposalRows` returned, placed at `offset` of `output`.
    func takeProposalOutput(_ output: ForwardOutput, offset: Int, sampling: SamplingParameters, rng: inout SeededGenerator)
    /// The finished proposal.
    func finishProposal() -> DraftTree
}

extension SteppedDrafter {
    public func propose(tokens: [Int], limit: Int, sampling: SamplingParameters, rng: inout SeededGenerator) -> DraftTree {
        beginProposal(tokens: tokens, limit: limit)
        while case let rows = proposalRows(), !rows.isEmpty {
            takeProposalOutput(draftModel.forward(rows), offset: 0, sampling: sampling, rng: &rng)
        }
        return finishProposal()
    }
}
