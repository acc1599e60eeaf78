// Comparing the engine's logits with a reference's top-k (the shipped model's goldens come from transformers,
// whose float32 sums run in another order): shared by the core and the speculation tests.

/// Where a row of logits disagrees with the reference's top-k: a logit of a listed id further than `tolerance`
/// from the reference's value, or an id at another rank where the reference's neighbouring logits are further
/// apart than twice the tolerance (a near-tie may order either way). Empty when they agree.
public func topKDisagreements(_ logits: [Float], ids: [Int], values: [Float], tolerance: Float) -> [String] {
    var problems: [String] = []
    for (rank, (id, value)) in zip(ids, values).enumerated() where abs(logits[id] - value) > tolerance {
        problems.append("logit of rank-\(rank) id \(id) is \(logits[id]), reference \(value)")
    }
    let order = logits.indices.sorted { logits[$0] > logits[$1] }.prefix(ids.count)
    for rank in ids.indices {
        let separated = (rank == 0 || values[rank - 1] - values[rank] > 2 * tolerance)
            && (rank == ids.count - 1 || values[rank] - values[rank + 1] > 2 * tolerance)
        if separated && order[order.startIndex + rank] != ids[rank] {
            problems.append("id at rank \(rank) is \(order[order.startIndex + rank]), reference \(ids[rank])")
        }
    }
    return problems
}
