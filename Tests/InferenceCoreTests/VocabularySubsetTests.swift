import XCTest
@testable import InferenceCore

/// A drafter's lm_head cut to a subset of tokens scores those tokens exactly as the whole head does.
final class VocabularySubsetTests: XCTestCase {
    func testSubsetLogitsAreTheFullHeadsLogitsOfTheKeptTokensAndMinusInfinityElsewhere() {
        let config = LlamaConfig(hiddenSize: 48, intermediateSize: 64, numHiddenLayers: 1, numAttentionHeads: 4,
                                 numKeyValueHeads: 2, vocabSize: 200, tieWordEmbeddings: true)
        let model = LlamaModel(weights: .random(config: config, seed: 3))
        let cache = model.makeCache(capacity: 8)
        let out = model.forward((0..<3).map { Row(token: 5 * $0 + 1, position: $0, cache: cache) })
        let kept = [199, 0, 57, 58, 120, 3, 77]
        let subset = VocabularySubset(lmHead: model.lmHead, ids: kept, pool: model.pool)
        XCTAssertEqual(subset.byteCount, kept.count * config.hiddenSize * 4)
        for r in 0..<3 {
            let full = out.logits(row: r)
            let cut = subset.logits(hidden: out.hidden.row(r))
            XCTAssertEqual(cut.count, config.vocabSize)
            for id in 0..<config.vocabSize {
                if kept.contains(id) {
                    XCTAssertEqual(cut[id].bitPattern, full[id].bitPattern, "row \(r) token \(id)")
                } else {
                    XCTAssertEqual(cut[id], -.infinity, "row \(r) token \(id) is not in the subset")
                }
            }
            // Sampling never picks a token outside the subset; argmax is the best kept token.
            XCTAssertEqual(argmax(cut), kept.max { full[$0] < full[$1] })
            let p = distribution(cut, SamplingParameters(temperature: 1))
            XCTAssertEqual(p.enumerated().filter { $0.element > 0 }.map(\.offset).sorted(), kept.sorted())
        }
        // All rows in one pass (Medusa's heads) give each row bitwise what it gets alone.
        let batch = subset.logits(rows: out.hidden)
        for r in 0..<3 {
            let alone = subset.logits(hidden: out.hidden.row(r))
            XCTAssertEqual(Array(UnsafeBufferPointer(start: batch.row(r), count: config.vocabSize)).map(\.bitPattern),
                           alone.map(\.bitPattern), "row \(r) in the batch")
        }
    }
}
