import Foundation
import InferenceCore

// The acceptance rules: given a draft tree and the target's logits at every verification row, pick the longest
// accepted path and the next token (the target's bonus token after that path).
//
// Row r of the verification batch holds the target's prediction for whatever follows row r's token: row 0
// (the pending token) predicts the root's children, row i + 1 (node i) predicts node i's children.

public struct AcceptanceOutcome: Sendable, Equatable {
    /// Accepted node indices, root's child first.
    public var path: [Int]
    /// The target's token after the accepted path: it becomes the pending token.
    public var next: Int
    /// The verification row whose prediction chose `next` (0 when no draft token was accepted).
    public var row: Int { path.last.map { $0 + 1 } ?? 0 }
}

public enum AcceptanceRule: Sendable, Equatable {
    /// T = 0: follow the target's argmax through the tree (exact: output identical to plain greedy decoding).
    case greedy
    /// T > 0, lossless: at each node, try its children in order; accept child x with probability
    /// min(1, p(x)/q(x)), else continue with p ← norm(max(0, p − q)); when no child is accepted, sample from
    /// what is left of p (Leviathan/Chen for a chain; the multi-draft form for trees). A node without a draft
    /// distribution is a deterministic guess: q is one-hot on its token.
    case rejectionSampling
    /// T > 0, lossy (Medusa's typical acceptance): accept x when p(x) > min(threshold, alpha · e^(−H(p))), keep the
    /// longest such path, then sample the next token from p.
    case typical(threshold: Float, alpha: Float)

    public var isLossless: Bool { if case .typical = self { return false } else { return true } }
}

/// Applies `rule` to `tree`. `logits(r)` returns verification row r's logits; `sampling` is the request's
/// sampling (temperature, top-k/p, min-p), which defines the target distribution p for the sampled rules.
public func accept<G: RandomNumberGenerator>(
    _ tree: DraftTree, rule: AcceptanceRule, sampling: SamplingParameters, rng: inout G,
    logits: (Int) -> [Float]
) -> AcceptanceOutcome {
    switch rule {
    case .greedy:
        return acceptGreedy(tree, logits: logits)
    case .rejectionSampling:
        return acceptRejection(tree, sampling: sampling, rng: &rng, logits: logits)
    case let .typical(threshold, alpha):
        return acceptTypical(tree, threshold: threshold, alpha: alpha, sampling: sampling, rng: &rng, logits: logits)
    }
}

func acceptGreedy(_ tree: DraftTree, logits: (Int) -> [Float]) -> AcceptanceOutcome {
    var path: [Int] = []
    var node = -1
    while true {
        let best = argmax(logits(node + 1))
        guard let child = tree.children(of: node).first(where: { tree.tokens[$0] == best }) else {
            return AcceptanceOutcome(path: path, next: best)
        }
        path.append(child)
        node = child
    }
}

func acceptRejection<G: RandomNumberGenerator>(
    _ tree: DraftTree, sampling: SamplingParameters, rng: inout G, logits: (Int) -> [Float]
) -> AcceptanceOutcome {
    var path: [Int] = []
    var node = -1
    descend: while true {
        var p = distribution(logits(node + 1), sampling)
        for child in tree.children(of: node) {
            let x = tree.tokens[child]
            let q = tree.draftDistributions[child]
            let qx = q?[x] ?? 1
            let u = Float(Double(rng.next() >> 11) * 0x1.0p-53)
            if qx > 0 && u < min(1, p[x] / qx) {
                path.append(child)
                node = child
                continue descend
            }
            // Rejected: continue from the residual max(0, p − q), renormalised.
            if let q {
                for i in p.indices { p[i] = max(0, p[i] - q[i]) }
            } else {
                p[x] = 0
            }
            normalise(&p)
            if p.allSatisfy({ $0 == 0 }) { p = distribution(logits(node + 1), sampling) }
        }
        return AcceptanceOutcome(path: path, next: sample(p, using: &rng))
    }
}

func acceptTypical<G: RandomNumberGenerator>(
    _ tree: DraftTree, threshold: Float, alpha: Float, sampling: SamplingParameters, rng: inout G,
    logits: (Int) -> [Float]
) -> AcceptanceOutcome {
    var cache: [Int: [Float]] = [:]
    func p(_ row: Int) -> [Float] {
        if let d = cache[row] { return d }
        let d = distribution(logits(row), sampling)
        cache[row] = d
        return d
    }
    /// Longest accepted path below `node` (first on ties).
    func longest(below node: Int) -> [Int] {
        let dist = p(node + 1)
        var entropy: Float = 0
        for v in dist where v > 0 { entropy -= v * logf(v) }
        let bar = min(threshold, alpha * expf(-entropy))
        var best: [Int] = []
        for child in tree.children(of: node) where dist[tree.tokens[child]] > bar {
            let candidate = [child] + longest(below: child)
            if candidate.count > best.count { best = candidate }
        }
        return best
    }
    let path = longest(below: -1)
    let row = path.last.map { $0 + 1 } ?? 0
    return AcceptanceOutcome(path: path, next: sample(p(row), using: &rng))
}
