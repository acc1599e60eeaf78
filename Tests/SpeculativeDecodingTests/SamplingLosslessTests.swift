import XCTest
import InferenceCore
@testable import SpeculativeDecoding

/// At T > 0, speculative sampling must draw from exactly the distribution plain sampling draws from.
final class SamplingLosslessTests: XCTestCase {
    /// Chi-square statistic of observed counts against expected probabilities (cells with tiny expectations pooled).
    private func chiSquare(_ counts: [Int], _ probs: [Double]) -> (statistic: Double, degrees: Int) {
        let n = Double(counts.reduce(0, +))
        var stat = 0.0, cells = 0, pooledObserved = 0.0, pooledExpected = 0.0
        for (c, p) in zip(counts, probs) {
            let e = p * n
            if e < 5 { pooledObserved += Double(c); pooledExpected += e; continue }
            stat += (Double(c) - e) * (Double(c) - e) / e
            cells += 1
        }
        if pooledExpected > 0 {
            stat += (pooledObserved - pooledExpected) * (pooledObserved - pooledExpected) / max(pooledExpected, 1e-9)
            cells += 1
        }
        return (stat, cells - 1)
    }

    /// The p = 0.001 critical value of chi-square with `k` degrees of freedom (Wilson–Hilferty).
    private func critical(_ k: Int) -> Double {
        let z = 3.0902  // one-sided 0.001
        let kd = Double(k)
        return kd * pow(1 - 2 / (9 * kd) + z * (2 / (9 * kd)).squareRoot(), 3)
    }

    func testRejectionSamplingOfAChainMatchesTheTargetDistribution() {
        // Pure acceptance check: a two-token chain drawn from q, verified against p, many times.
        let vocab = 6
        let p0: [Float] = [0.05, 0.4, 0.1, 0.25, 0.15, 0.05]
        let q0: [Float] = [0.3, 0.1, 0.3, 0.1, 0.1, 0.1]
        let logits0 = p0.map { logf($0) }
        var rng = SeededGenerator(seed: 3)
        var counts = [Int](repeating: 0, count: vocab)
        let n = 40_000
        for _ in 0..<n {
            let d = sample(q0, using: &rng)
            let tree = DraftTree(chain: [d], distributions: [q0])
            let outcome = accept(tree, rule: .rejectionSampling, sampling: SamplingParameters(temperature: 1), rng: &rng) { row in
                row == 0 ? logits0 : [Float](repeating: 0, count: vocab)
            }
            counts[outcome.path.isEmpty ? outcome.next : d] += 1
        }
        let (stat, df) = chiSquare(counts, p0.map(Double.init))
        XCTAssertLessThan(stat, critical(df), "counts \(counts)")
    }

    func testMultiBranchRejectionOfDeterministicSiblingsMatchesTheTargetDistribution() {
        // Three one-hot sibling guesses (as Medusa's top-k or an n-gram make): the first accepted token is still
        // distributed as p.
        let p0: [Float] = [0.1, 0.3, 0.2, 0.15, 0.25]
        var tree = DraftTree()
        tree.add(token: 1, parent: -1); tree.add(token: 4, parent: -1); tree.add(token: 0, parent: -1)
        var rng = SeededGenerator(seed: 11)
        var counts = [Int](repeating: 0, count: p0.count)
        for _ in 0..<40_000 {
            let o = accept(tree, rule: .rejectionSampling, sampling: SamplingParameters(temperature: 1), rng: &rng) { row in
                row == 0 ? p0.map { logf($0) } : [Float](repeating: 0, count: p0.count)
            }
            counts[o.path.isEmpty ? o.next : tree.tokens[o.path[0]]] += 1
        }
        let (stat, df) = chiSquare(counts, p0.map(Double.init))
        XCTAssertLessThan(stat, critical(df), "counts \(counts)")
    }

    /// The exact distribution of the 2nd and 3rd generated tokens under plain sampling, by enumeration.
    private func exactMarginals(_ model: LlamaModel, prompt: [Int], sampling: SamplingParameters) -> ([Double], [Double]) {
        let vocab = model.config.vocabSize
        func dist(_ tokens: [Int]) -> [Float] {
            let cache = model.makeCache()
            let out = model.forward(tokens.enumerated().map { Row(token: $1, position: $0, cache: cache) })
            return distribution(out.logits(row: tokens.count - 1), sampling)
        }
        let first = dist(prompt)
        var second = [Double](repeating: 0, count: vocab), third = [Double](repeating: 0, count: vocab)
        for t1 in 0..<vocab where first[t1] > 0 {
            let d2 = dist(prompt + [t1])
            for t2 in 0..<vocab where d2[t2] > 0 {
                let p12 = Double(first[t1]) * Double(d2[t2])
                second[t2] += p12
                let d3 = dist(prompt + [t1, t2])
                for t3 in 0..<vocab { third[t3] += p12 * Double(d3[t3]) }
            }
        }
        return (second, third)
    }

    /// Speculative sampling with a draft model (optionally scoring only `subset`) against the exact marginals of
    /// plain sampling, over many seeds.
    private func assertDraftSamplingMatchesPlainSampling(subset: [Int]? = nil, file: StaticString = #filePath, line: UInt = #line) {
        let vocab = 8
        let target = ToyModels.model(seed: 5, vocab: vocab, hidden: 16, layers: 1, scale: 3)
        let draft = ToyModels.model(seed: 6, vocab: vocab, hidden: 16, layers: 1, scale: 3)
        let vocabulary = subset.map { VocabularySubset(lmHead: draft.lmHead, ids: $0) }
        let prompt = [1, 2, 3]
        let sampling = SamplingParameters(temperature: 1)
        let (second, third) = exactMarginals(target, prompt: prompt, sampling: sampling)
        var c2 = [Int](repeating: 0, count: vocab), c3 = [Int](repeating: 0, count: vocab)
        var drafted = 0, accepted = 0
        for seed in 0..<3_000 {
            var s = sampling
            s.seed = UInt64(seed)
            let g = Generation(target: target, prompt: prompt, maxTokens: 3, sampling: s,
                               drafter: DraftModelDrafter(model: draft, vocabulary: vocabulary),
                               settings: SpeculationSettings(numDraft: 2, autoDisable: false))
            g.run()
            let out = Array(g.generated)
            c2[out[1]] += 1
            c3[out[2]] += 1
            drafted += g.stats.drafted
            accepted += g.stats.accepted
        }
        XCTAssertGreaterThan(accepted, 0, "the test needs some accepted drafts to mean anything", file: file, line: line)
        XCTAssertLessThan(accepted, drafted, "and some rejections", file: file, line: line)
        let (s2, df2) = chiSquare(c2, second)
        let (s3, df3) = chiSquare(c3, third)
        XCTAssertLessThan(s2, critical(df2), "second token counts \(c2) vs \(second)", file: file, line: line)
        XCTAssertLessThan(s3, critical(df3), "third token counts \(c3) vs \(third)", file: file, line: line)
        if let subset {
            // Tokens outside the subset are never drafted, yet the target still produces them (from the residual).
            let outside = Set(0..<vocab).subtracting(subset)
            XCTAssertGreaterThan(outside.reduce(0) { $0 + c2[$1] }, 0, "outside tokens still appear", file: file, line: line)
        }
    }

    func testSpeculativeSamplingWithADraftModelMatchesPlainSamplingOnTheSecondAndThirdToken() {
        assertDraftSamplingMatchesPlainSampling()
    }

    /// A draft scoring only some tokens has q = 0 outside them: rejection sampling still gives the target's law.
    func testSamplingWithADraftVocabularySubsetStillMatchesPlainSampling() {
        assertDraftSamplingMatchesPlainSampling(subset: [0, 2, 3, 5])
    }

    func testASeedMakesSpeculativeSamplingReproducible() {
        let target = ToyModels.model(seed: 1)
        let draft = ToyModels.perturbed(seed: 1, noise: 0.1)
        func run(_ seed: UInt64) -> [Int] {
            let g = Generation(target: target, prompt: [4, 5, 6], maxTokens: 30,
                               sampling: SamplingParameters(temperature: 0.8, topP: 0.95, seed: seed),
                               drafter: DraftModelDrafter(model: draft), settings: SpeculationSettings(numDraft: 4))
            g.run()
            return Array(g.generated)
        }
        XCTAssertEqual(run(42), run(42))
        XCTAssertNotEqual(run(42), run(43))
    }
}
