import XCTest
import InferenceCore
@testable import SpeculativeDecoding

final class DraftTreeTests: XCTestCase {
    func testAChainVerifiesAsCausalRowsAfterThePendingToken() {
        let cache = KVCache(layers: 1, kvDim: 4, capacity: 32)
        cache.append(10)
        let rows = DraftTree(chain: [5, 6, 7]).verificationRows(pending: 4, position: 10, cache: cache)
        XCTAssertEqual(rows.map(\.token), [4, 5, 6, 7])
        XCTAssertEqual(rows.map(\.position), [10, 11, 12, 13])
        XCTAssertEqual(rows.map(\.slot), [10, 11, 12, 13])
        XCTAssertTrue(rows.allSatisfy { $0.visibility == .causal })
    }

    func testATreeNodeSeesThePendingTokenAndItsAncestors() {
        var tree = DraftTree()
        let a = tree.add(token: 1, parent: -1)
        let b = tree.add(token: 2, parent: -1)
        let c = tree.add(token: 3, parent: b)
        XCTAssertFalse(tree.isChain)
        XCTAssertEqual(tree.maxDepth, 2)
        XCTAssertEqual(tree.children(of: -1), [a, b])
        XCTAssertEqual(tree.path(to: c), [b, c])
        let cache = KVCache(layers: 1, kvDim: 4, capacity: 32)
        cache.append(10)
        let rows = tree.verificationRows(pending: 9, position: 10, cache: cache)
        XCTAssertEqual(rows[3].position, 12)
        XCTAssertEqual(rows[3].slot, 13)
        XCTAssertEqual(rows[3].visibility, .tree(prefixLength: 10, path: [10, 12, 13]))
        XCTAssertEqual(rows[1].visibility, .tree(prefixLength: 10, path: [10, 11]))
    }
}

final class AcceptanceTests: XCTestCase {
    private func oneHotLogits(_ token: Int, vocab: Int = 10) -> [Float] {
        var l = [Float](repeating: 0, count: vocab); l[token] = 5; return l
    }

    func testGreedyFollowsTheTargetsArgmaxDownTheTree() {
        // Root children 3 and 4; 4 has children 5 and 6. The target wants 4, then 6, then 8.
        var tree = DraftTree()
        tree.add(token: 3, parent: -1)
        let four = tree.add(token: 4, parent: -1)
        tree.add(token: 5, parent: four)
        let six = tree.add(token: 6, parent: four)
        let wants = [0: 4, four + 1: 6, six + 1: 8]
        var rng = SeededGenerator(seed: 1)
        let o = accept(tree, rule: .greedy, sampling: .greedy, rng: &rng) { self.oneHotLogits(wants[$0] ?? 0) }
        XCTAssertEqual(o.path, [four, six])
        XCTAssertEqual(o.next, 8)
        XCTAssertEqual(o.row, six + 1)
    }

    func testGreedyRejectsAtTheFirstMismatch() {
        let tree = DraftTree(chain: [1, 2, 3])
        var rng = SeededGenerator(seed: 1)
        let o = accept(tree, rule: .greedy, sampling: .greedy, rng: &rng) { [1: 2, 2: 9][$0].map { self.oneHotLogits($0) } ?? self.oneHotLogits(1) }
        XCTAssertEqual(o.path, [0, 1])
        XCTAssertEqual(o.next, 9)
    }

    func testTypicalAcceptanceKeepsTheLongestPathOverTheThresholdAndIsLabelledLossy() {
        var tree = DraftTree()
        let a = tree.add(token: 1, parent: -1)
        let b = tree.add(token: 2, parent: -1)
        tree.add(token: 3, parent: b)
        // Row 0: tokens 1 and 2 both likely; row of b: token 3 likely; row of a: flat.
        let logits: (Int) -> [Float] = { row in
            switch row {
            case 0: return [0, 3, 3, 0, 0, 0]
            case b + 1: return [0, 0, 0, 4, 0, 0]
            default: return [Float](repeating: 0, count: 6)
            }
        }
        var rng = SeededGenerator(seed: 2)
        let rule = AcceptanceRule.typical(threshold: 0.09, alpha: 0.3)
        let o = accept(tree, rule: rule, sampling: SamplingParameters(temperature: 1), rng: &rng, logits: logits)
        XCTAssertEqual(o.path, [b, 2])
        XCTAssertFalse(rule.isLossless)
        XCTAssertTrue(AcceptanceRule.rejectionSampling.isLossless)
        _ = a
    }
}

final class NGramDrafterTests: XCTestCase {
    func testLookupProposesWhatFollowedTheLongestMostRecentMatch() {
        let d = NGramDrafter(minN: 1, maxN: 3)
        // "5 6 7" occurred twice; the most recent occurrence is followed by 1 2.
        XCTAssertEqual(d.lookup([5, 6, 7, 8, 9, 5, 6, 7, 1, 2, 0, 5, 6, 7], limit: 4), [1, 2, 0, 5])
        XCTAssertEqual(d.lookup([5, 6, 7, 8, 9, 5, 6, 7, 1, 2, 0, 5, 6, 7], limit: 1), [1])
        // Only a 1-gram matches.
        XCTAssertEqual(d.lookup([4, 9, 1, 3, 9], limit: 2), [1, 3])
        XCTAssertEqual(d.lookup([1, 2, 3], limit: 3), [])
        XCTAssertEqual(NGramDrafter(minN: 2, maxN: 2).lookup([4, 9, 1, 3, 9], limit: 2), [])
    }
}
