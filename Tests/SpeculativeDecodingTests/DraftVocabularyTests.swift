import Foundation
import XCTest
@testable import InferenceCore
@testable import SpeculativeDecoding

/// Drafting from the most frequent tokens only: still lossless, really restricted, and ranked from the model
/// folder's token counts (bad files named).
final class DraftVocabularyTests: XCTestCase {
    let target = ToyModels.model(seed: 1)
    let prompt = (0..<20).map { ($0 * 13 + 2) % 96 }

    private func run(_ drafter: Drafter?, k: Int) -> (tokens: [Int], stats: SpeculationStats) {
        let g = Generation(target: target, prompt: prompt, maxTokens: 40, drafter: drafter,
                           settings: SpeculationSettings(numDraft: k, adaptive: false, autoDisable: false))
        g.run()
        return (Array(g.generated), g.stats)
    }

    func testGreedyDraftingFromASubsetIsIdenticalToPlainDecodingAndDraftsOnlyKeptTokens() {
        let plain = run(nil, k: 0).tokens
        let used = Set(plain)
        let module = ToyModels.mtpModule(target: target)
        // Half the vocabulary (some of the tokens plain decoding emits, some not), and a subset holding none of them.
        let half = Array(stride(from: 0, to: 96, by: 2))
        let none = (0..<96).filter { !used.contains($0) }
        for k in [1, 3, 6] {
            for ids in [half, none] {
                let subset = VocabularySubset(lmHead: target.lmHead, ids: ids)
                let draft = run(DraftModelDrafter(model: target, vocabulary: subset), k: k)
                XCTAssertEqual(draft.tokens, plain, "draft k=\(k)")
                let mtp = run(MTPDrafter(module: module, vocabulary: subset), k: k)
                XCTAssertEqual(mtp.tokens, plain, "mtp k=\(k)")
                if ids == none {
                    // The target drafting for itself is always right, except that it may not name a used token.
                    XCTAssertEqual(draft.stats.accepted, 0, "no emitted token can be drafted, k=\(k)")
                    XCTAssertEqual(mtp.stats.accepted, 0, "no emitted token can be drafted, k=\(k)")
                    XCTAssertGreaterThan(draft.stats.drafted, 0)
                }
            }
        }
        // With every token kept the self-draft accepts everything again.
        let all = run(DraftModelDrafter(model: target, vocabulary: VocabularySubset(lmHead: target.lmHead, ids: Array(0..<96).reversed())), k: 4)
        XCTAssertEqual(all.stats.accepted, all.stats.drafted)
    }

    /// p_min's test reads the top probability over the kept tokens only (the others are −∞ and add nothing).
    func testTheTopProbabilityOverASubsetIsTheSoftmaxAmongTheKeptTokens() {
        let logits: [Float] = [-.infinity, 1, -.infinity, 3, 2]
        let expected = expf(3) / (expf(1) + expf(3) + expf(2))
        XCTAssertEqual(softmaxProbability(of: 3, in: logits, among: [1, 3, 4]), expected, accuracy: 1e-6)
        XCTAssertEqual(softmaxProbability(of: 3, in: logits), expected, accuracy: 1e-6)
        XCTAssertEqual(softmaxProbability(of: 1, in: [0, 0, 0, 0]), 0.25, accuracy: 1e-6)
    }

    /// Medusa heads of layout v2 draft from a subset of the shared lm_head; v1 heads, with projections of their own,
    /// refuse one with a message that says why.
    func testMedusaHeadsTakeASubsetOfTheSharedHeadInLayoutV2Only() throws {
        let h = target.config.hiddenSize
        let blocks = (0..<2).map { _ in [(weight: Tensor(shape: [h, h]), bias: Tensor(shape: [h]))] }
        let v2 = try family(counts: #"{"counts": \#(Array(0..<96))}"#,
                            medusa: MedusaHeads(target: target, layout: .v2SharedHead, blocks: blocks, projections: []))
        try v2.useVocabularySubset(10, for: .medusa)
        XCTAssertEqual(v2.medusaVocabulary?.ids, Array((86..<96).reversed()))
        XCTAssertEqual((try v2.makeDrafter(.medusa) as? MedusaDrafter)?.vocabulary?.ids.count, 10)
        XCTAssertEqual(v2.vocabularySubsets.map(\.method), ["medusa"])
        // Unasked, every drafter takes 2,048 tokens or the whole (smaller) vocabulary, except v1 heads.
        XCTAssertEqual([SpeculativeMethod.draft, .mtp, .medusa].map { v2.defaultVocabularySubsetSize(for: $0) }, [96, 96, 96])
        let v1 = try family(counts: #"{"counts": \#(Array(0..<96))}"#,
                            medusa: MedusaHeads(target: target, layout: .v1OwnProjection, blocks: blocks,
                                                projections: [Tensor(shape: [96, h]), Tensor(shape: [96, h])]))
        XCTAssertThrowsError(try v1.useVocabularySubset(10, for: .medusa)) {
            XCTAssertTrue("\($0)".contains("layout v1"), "\($0)")
        }
        // Every token, asked for either way, is what v1 heads do anyway.
        try v1.useVocabularySubset(nil, for: .medusa)
        try v1.useVocabularySubset(96, for: .medusa)
        XCTAssertNil(v1.medusaVocabulary)
        XCTAssertNil(v1.defaultVocabularySubsetSize(for: .medusa))
        XCTAssertEqual(v1.defaultVocabularySubsetSize(for: .draft), 96)
        XCTAssertNil(try family(counts: nil).defaultVocabularySubsetSize(for: .draft), "no token counts: every token")
    }

    private func family(counts json: String?, medusa: MedusaHeads? = nil) throws -> ModelFamily {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vocab-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent(ModelFamily.tokenFrequencyFile)
        if let json { try Data(json.utf8).write(to: file) }
        let counts = try ModelFamily.tokenCounts(in: file, vocabSize: target.config.vocabSize)
        return ModelFamily(target: target, tokenizer: try BPETokenizer(contentsOf: Fixtures.url("tokenizer/fixture-tokenizer.json")),
                           stopTokens: [], draft: target, medusa: medusa, mtp: ToyModels.mtpModule(target: target), targetDirectory: dir,
                           tokenCounts: counts)
    }

    func testTokensAreRankedByTheirCountsWithTiesByIdAndBothDraftersUseTheSubset() throws {
        var counts = [Int](repeating: 1, count: 96)
        counts[40] = 50; counts[7] = 9; counts[90] = 9; counts[3] = 0
        let f = try family(counts: #"{"counts": \#(counts)}"#)
        XCTAssertEqual(try f.mostFrequentTokens(4), [40, 7, 90, 0])
        XCTAssertEqual(try f.mostFrequentTokens(96).last, 3)
        try f.useVocabularySubset(10, for: .draft)
        try f.useVocabularySubset(20, for: .mtp)
        XCTAssertEqual(f.draftVocabulary?.ids, try f.mostFrequentTokens(10))
        XCTAssertEqual(f.mtpVocabulary?.ids.count, 20)
        XCTAssertEqual((try f.makeDrafter(.draft) as? DraftModelDrafter)?.vocabulary?.ids.count, 10)
        XCTAssertEqual((try f.makeDrafter(.mtp) as? MTPDrafter)?.vocabulary?.ids.count, 20)
        // The whole vocabulary, or nothing set, scores every token.
        try f.useVocabularySubset(96, for: .draft)
        try f.useVocabularySubset(nil, for: .mtp)
        XCTAssertNil(f.draftVocabulary)
        XCTAssertNil(f.mtpVocabulary)
        XCTAssertThrowsError(try f.useVocabularySubset(97, for: .draft)) { XCTAssertTrue("\($0)".contains("the vocabulary has 96"), "\($0)") }
        XCTAssertThrowsError(try f.useVocabularySubset(0, for: .draft))
        // No Medusa heads here: nothing to cut, as for a family without a draft model.
        try f.useVocabularySubset(8, for: .medusa)
        XCTAssertNil(f.medusaVocabulary)
        XCTAssertThrowsError(try f.useVocabularySubset(8, for: .ngram))
    }

    func testAMissingOrBrokenCountsFileIsNamedWithItsKey() throws {
        let missing = try family(counts: nil)
        XCTAssertNil(missing.tokenCounts)
        XCTAssertThrowsError(try missing.useVocabularySubset(8, for: .mtp)) {
            XCTAssertTrue("\($0)".contains(ModelFamily.tokenFrequencyFile), "\($0)")
        }
        let bad: [(String, String)] = [
            (#"[1, 2]"#, "not a JSON object"),
            (#"{"counts": 5}"#, "key 'counts'"),
            (#"{"counts": [1, -2]}"#, "non-negative integers"),
            (#"{"counts": [1, 2.5]}"#, "non-negative integers"),
            (#"{"counts": [1, 2, 3]}"#, "3 counts for a vocabulary of 96"),
        ]
        for (json, message) in bad {
            XCTAssertThrowsError(try family(counts: json), json) {
                XCTAssertTrue("\($0)".contains(message) && "\($0)".contains(ModelFamily.tokenFrequencyFile), "\(json): \($0)")
            }
        }
    }
}
