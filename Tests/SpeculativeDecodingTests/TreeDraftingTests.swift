import XCTest
import Foundation
import InferenceCore
@testable import InferenceCore
@testable import SpeculativeDecoding

/// A test drafter that knows the plain greedy continuation and hides its next `depth` tokens on one branch of a
/// bushy tree full of decoys, at a different sibling position each step: acceptance must walk the tree and the
/// cache must compact the accepted branch exactly.
final class OracleTreeDrafter: Drafter {
    let method = SpeculativeMethod.medusa
    let answer: [Int]
    let promptCount: Int
    let depth: Int
    let vocab: Int
    var step = 0
    init(answer: [Int], promptCount: Int, depth: Int, vocab: Int) {
        self.answer = answer; self.promptCount = promptCount; self.depth = depth; self.vocab = vocab
    }
    func start(tokens: [Int], hidden: Tensor) {}
    func commit(tokens: [Int], tree: DraftTree, outcome: AcceptanceOutcome, hidden: [[Float]]) {}
    func propose(tokens: [Int], limit: Int, sampling: SamplingParameters, rng: inout SeededGenerator) -> DraftTree {
        step += 1
        let done = tokens.count - promptCount
        let truth = Array(answer.dropFirst(done).prefix(min(depth, limit)))
        var tree = DraftTree()
        var parent = -1
        for (d, token) in truth.enumerated() {
            // Decoys before and after the true child; on every third step the last level is wrong.
            let decoys = (1...2).map { (token + $0 * 7 + d) % vocab }
            let wrongLeaf = step % 3 == 0 && d == truth.count - 1
            let order = step % 2 == 0 ? [decoys[0], wrongLeaf ? decoys[1] : token, decoys[1]] : [wrongLeaf ? decoys[0] : token, decoys[0], decoys[1]]
            var next = -1
            for t in Set(order).count == order.count ? order : [token] {
                let i = tree.add(token: t, parent: parent)
                if t == token && !wrongLeaf { next = i }
            }
            if next < 0 { break }
            parent = next
        }
        return tree
    }
}

final class TreeDraftingTests: XCTestCase {
    let target = ToyModels.model(seed: 3)

    func testAcceptedTreeBranchesCompactIntoTheCacheExactlyLikePlainDecoding() {
        let prompt = (0..<20).map { ($0 * 11 + 2) % 96 }
        let plain = Generation(target: target, prompt: prompt, maxTokens: 40)
        plain.run()
        let answer = Array(plain.generated)
        for depth in [1, 2, 4, 6] {
            let g = Generation(target: target, prompt: prompt, maxTokens: 40,
                               drafter: OracleTreeDrafter(answer: answer, promptCount: prompt.count, depth: depth, vocab: 96),
                               settings: SpeculationSettings(numDraft: depth, adaptive: false, autoDisable: false))
            g.run()
            XCTAssertEqual(Array(g.generated), answer, "tree depth \(depth)")
            XCTAssertGreaterThan(g.stats.accepted, 0)
            XCTAssertLessThan(g.stats.steps, answer.count, "speculation must have saved steps at depth \(depth)")
        }
    }
}

final class MTPDrafterTests: XCTestCase {
    func testMTPGreedyIsIdenticalToPlainDecodingForEveryDraftLength() {
        let target = ToyModels.model(seed: 4)
        let module = ToyModels.mtpModule(target: target)
        for prompt in [[1, 2, 3], (0..<33).map { ($0 * 5) % 96 }] {
            let plain = Generation(target: target, prompt: prompt, maxTokens: 30)
            plain.run()
            for k in 1...8 {
                let g = Generation(target: target, prompt: prompt, maxTokens: 30, drafter: MTPDrafter(module: module),
                                   settings: SpeculationSettings(numDraft: k, autoDisable: false))
                g.run()
                XCTAssertEqual(Array(g.generated), Array(plain.generated), "mtp k=\(k)")
                XCTAssertGreaterThan(g.stats.steps, 0)
            }
        }
    }
}

final class MedusaTests: XCTestCase {
    let target = ToyModels.model(seed: 8)

    private func heads(count: Int, seed: UInt64, bf16: Bool = false) -> MedusaHeads {
        let h = target.config.hiddenSize
        var rng = SeededGenerator(seed: seed)
        func weight() -> Float {
            let w = Float(rng.nextUniform() - 0.5) * 0.6
            return bf16 ? Float(bitPattern: w.bitPattern & 0xFFFF_0000) : w
        }
        let blocks = (0..<count).map { _ in
            [(weight: Tensor(shape: [h, h], values: (0..<(h * h)).map { _ in weight() }),
              bias: Tensor(shape: [h], values: (0..<h).map { _ in Float(rng.nextUniform() - 0.5) * 0.1 }))]
        }
        return MedusaHeads(target: target, layout: .v2SharedHead, blocks: blocks, projections: [])
    }

    func testTreeCompilesInDepthOrderAndRefusesAMissingPrefix() throws {
        let tree = try MedusaTree(choices: [[0, 1], [1], [0], [0, 0], [0, 0, 0]], heads: 4)
        XCTAssertEqual(tree.choices, [[0], [1], [0, 0], [0, 1], [0, 0, 0]])
        XCTAssertEqual(tree.nodes.map(\.parent), [-1, -1, 0, 0, 2])
        XCTAssertEqual(tree.ranksPerHead, [2, 2, 1, 0])
        XCTAssertThrowsError(try MedusaTree(choices: [[0], [1, 0]], heads: 4)) {
            XCTAssertEqual($0 as? MedusaTree.Invalid, .missingPrefix(choice: [1, 0], prefix: [1]))
        }
        XCTAssertThrowsError(try MedusaTree(choices: [[0], [0, 0]], heads: 1))
    }

    func testSparseTreeTakesTheMostLikelyPathsAndSizeFollowsVerifyCost() {
        let accuracy = [[0.6, 0.2, 0.1], [0.4, 0.15], [0.3]]
        let (choices, expected) = MedusaTree.sparse(accuracy: accuracy, size: 4)
        // Path probabilities: [0] 0.6, [0,0] 0.24, [1] 0.2, [2] 0.1, [0,1] 0.09, [0,0,0] 0.072, …
        XCTAssertEqual(choices, [[0], [0, 0], [1], [2]])
        XCTAssertEqual(expected, 0.6 + 0.24 + 0.2 + 0.1, accuracy: 1e-9)
        // Free verification favours the biggest tree; verification that grows with rows favours a small one.
        XCTAssertEqual(MedusaTree.chooseSize(accuracy: accuracy, sizes: [2, 4, 8], verifyCost: { _ in 1 }).size, 8)
        XCTAssertEqual(MedusaTree.chooseSize(accuracy: accuracy, sizes: [2, 4, 8], verifyCost: { 1 + 0.3 * Double($0 - 1) }).size, 2)
    }

    func testMedusaGreedyIsIdenticalToPlainDecodingAndTypicalIsLabelledLossy() throws {
        let tree = try MedusaTree(choices: [[0], [1], [2], [0, 0], [0, 1], [1, 0], [0, 0, 0], [0, 0, 0, 0]], heads: 4)
        let drafter = MedusaDrafter(heads: heads(count: 4, seed: 5), tree: tree)
        let prompt = (0..<12).map { ($0 * 13) % 96 }
        let plain = Generation(target: target, prompt: prompt, maxTokens: 30)
        plain.run()
        for k in 1...4 {
            let g = Generation(target: target, prompt: prompt, maxTokens: 30, drafter: drafter,
                               settings: SpeculationSettings(numDraft: k, autoDisable: false))
            g.run()
            XCTAssertEqual(Array(g.generated), Array(plain.generated), "medusa depth \(k)")
            XCTAssertTrue(g.stats.lossless)
            // Full trees except near max_tokens, where the tree is cut to the room left.
            let nodes = k >= 4 ? 8 : [3, 6, 7][k - 1]
            XCTAssertLessThanOrEqual(g.stats.verifiedNodes, g.stats.steps * nodes)
            XCTAssertGreaterThan(g.stats.verifiedNodes, (g.stats.steps - 4) * nodes)
        }
        let sampled = Generation(target: target, prompt: prompt, maxTokens: 20, sampling: SamplingParameters(temperature: 0.7, seed: 1),
                                 drafter: drafter, settings: SpeculationSettings(numDraft: 4, autoDisable: false))
        sampled.run()
        XCTAssertFalse(sampled.stats.lossless)
        let lossless = MedusaDrafter(heads: heads(count: 4, seed: 5), tree: tree, typical: nil)
        let exact = Generation(target: target, prompt: prompt, maxTokens: 20, sampling: SamplingParameters(temperature: 0.7, seed: 1),
                               drafter: lossless, settings: SpeculationSettings(numDraft: 4, autoDisable: false))
        exact.run()
        XCTAssertTrue(exact.stats.lossless)
    }

    /// Heads scoring a vocabulary subset stay lossless, propose only kept tokens, and stream BF16 copies of their
    /// ResBlocks with bitwise the same logits.
    func testMedusaDraftingFromASubsetIsIdenticalToPlainDecodingAndProposesOnlyKeptTokens() throws {
        let tree = try MedusaTree(choices: [[0], [1], [0, 0], [0, 1], [0, 0, 0]], heads: 3)
        let prompt = (0..<12).map { ($0 * 11 + 5) % 96 }
        let plain = Generation(target: target, prompt: prompt, maxTokens: 30)
        plain.run()
        let kept = Array(stride(from: 1, to: 96, by: 3))
        XCTAssertTrue(plain.generated.contains { !kept.contains($0) }, "the subset must drop tokens plain decoding emits")
        let subset = VocabularySubset(lmHead: target.lmHead, ids: kept)
        let medusa = heads(count: 3, seed: 8)
        let drafter = MedusaDrafter(heads: medusa, tree: tree, vocabulary: subset)
        let g = Generation(target: target, prompt: prompt, maxTokens: 30, drafter: drafter,
                           settings: SpeculationSettings(numDraft: 3, autoDisable: false))
        g.run()
        XCTAssertEqual(Array(g.generated), Array(plain.generated))
        XCTAssertGreaterThan(g.stats.drafted, 0)
        var rng = SeededGenerator(seed: 1)
        let proposed = drafter.propose(tokens: prompt, limit: 3, sampling: SamplingParameters(), rng: &rng)
        XCTAssertFalse(proposed.tokens.isEmpty)
        XCTAssertTrue(proposed.tokens.allSatisfy { kept.contains($0) }, "\(proposed.tokens)")
        // A subset narrower than the tree's widest rank (2 here) drops the ranks it cannot fill and their subtrees.
        let narrow = MedusaDrafter(heads: medusa, tree: tree, vocabulary: VocabularySubset(lmHead: target.lmHead, ids: [kept[0]]))
        let withNarrow = Generation(target: target, prompt: prompt, maxTokens: 30, drafter: narrow,
                                    settings: SpeculationSettings(numDraft: 3, autoDisable: false))
        withNarrow.run()
        XCTAssertEqual(Array(withNarrow.generated), Array(plain.generated))
        let thin = narrow.propose(tokens: prompt, limit: 3, sampling: SamplingParameters(), rng: &rng)
        XCTAssertEqual(thin.tokens, [kept[0], kept[0], kept[0]])

        let hidden = (0..<target.config.hiddenSize).map { Float($0 % 7) * 0.2 - 0.6 }
        let full = medusa.logits(hidden: hidden, heads: 3)
        let cut = medusa.logits(hidden: hidden, heads: 3, vocabulary: subset)
        for h in 0..<3 {
            for id in 0..<96 {
                XCTAssertEqual(cut.row(h)[id].bitPattern, kept.contains(id) ? full.row(h)[id].bitPattern : (-Float.infinity).bitPattern)
            }
        }
        // Weights that are exactly BF16 stream from BF16 copies with the same logits.
        let rounded = heads(count: 3, seed: 8, bf16: true)
        let before = rounded.logits(hidden: hidden, heads: 3)
        XCTAssertTrue(rounded.streamMatricesAsBF16())
        XCTAssertLessThan(rounded.weightBytes, medusa.weightBytes)
        let after = rounded.logits(hidden: hidden, heads: 3)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: after.data, count: after.count)).map(\.bitPattern),
                       Array(UnsafeBufferPointer(start: before.data, count: before.count)).map(\.bitPattern))
        XCTAssertFalse(medusa.streamMatricesAsBF16(), "values that are not BF16 keep no copy")
    }

    func testTopKReturnsTheLargestFirst() {
        let v: [Float] = [0.1, 0.9, 0.3, 0.9, -1, 0.5]
        XCTAssertEqual(v.withUnsafeBufferPointer { topK($0, 3) }, [1, 3, 5])
    }
}

final class MedusaAccuracyConfigTests: XCTestCase {
    private func configFile(_ json: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("medusa-acc-\(UUID().uuidString).json")
        try Data(json.utf8).write(to: url)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    func testMeasuredAccuraciesAreReadAndShapeTheTree() throws {
        let url = try configFile(#"{"hidden_size": 32, "medusa_topk_accuracy": [[0.1, 0.7], [0.05, 0.02]]}"#)
        let table = try XCTUnwrap(ModelFamily.medusaAccuracy(in: url))
        XCTAssertEqual(table, [[0.1, 0.7], [0.05, 0.02]])
        // With these figures head 0's second choice is the likeliest node: the tree starts there, not at [0].
        let target = ToyModels.model(seed: 8)
        let h = target.config.hiddenSize
        let heads = MedusaHeads(target: target, layout: .v2SharedHead, blocks: (0..<2).map { _ in
            [(weight: Tensor(shape: [h, h]), bias: Tensor(shape: [h]))] }, projections: [])
        let family = ModelFamily(target: target, tokenizer: try BPETokenizer(contentsOf: Fixtures.url("tokenizer/fixture-tokenizer.json")),
                                 stopTokens: [], medusa: heads, targetDirectory: Fixtures.directory, medusaAccuracy: table)
        let tree = try family.medusaTree(MedusaOptions(sizes: [1]), cost: .free)
        XCTAssertEqual(tree.choices, [[1]])
        XCTAssertNil(try ModelFamily.medusaAccuracy(in: try configFile(#"{"hidden_size": 32}"#)))
    }

    func testABadAccuracyTableIsNamed() throws {
        let url = try configFile(#"{"medusa_topk_accuracy": [[0.5, 1.5]]}"#)
        XCTAssertThrowsError(try ModelFamily.medusaAccuracy(in: url)) {
            XCTAssertTrue("\($0)".contains("key 'medusa_topk_accuracy'"), "\($0)")
        }
    }
}
