import XCTest
import InferenceCore
@testable import SpeculativeDecoding

/// DESIGN §5: greedy speculative output is token-identical to plain greedy decoding, for every lossless method
/// and every draft length.
final class LosslessTests: XCTestCase {
    let target = ToyModels.model(seed: 1)
    let prompts: [[Int]] = [
        Array(0..<5),
        [7, 3, 7, 3, 7, 3, 9, 12, 7, 3],
        (0..<40).map { ($0 * 17 + 4) % 96 },
    ]

    private func generate(_ prompt: [Int], drafter: Drafter?, k: Int, maxTokens: Int = 40) -> (tokens: [Int], stats: SpeculationStats) {
        let g = Generation(target: target, prompt: prompt, maxTokens: maxTokens, drafter: drafter,
                           settings: SpeculationSettings(numDraft: k, adaptive: k % 2 == 0, autoDisable: false))
        g.run()
        return (Array(g.generated), g.stats)
    }

    func testNGramGreedyIsIdenticalToPlainDecodingForEveryDraftLength() {
        for prompt in prompts {
            let plain = generate(prompt, drafter: nil, k: 0).tokens
            XCTAssertEqual(plain.count, 40)
            for k in 1...8 {
                let (tokens, stats) = generate(prompt, drafter: NGramDrafter(minN: 1, maxN: 3), k: k)
                XCTAssertEqual(tokens, plain, "ngram k=\(k)")
                XCTAssertLessThanOrEqual(stats.accepted, stats.drafted)
            }
        }
    }

    func testDraftModelGreedyIsIdenticalToPlainDecodingForEveryDraftLength() {
        let drafts: [(String, LlamaModel)] = [
            ("itself", target), ("perturbed", ToyModels.perturbed(seed: 1, noise: 0.05)), ("unrelated", ToyModels.model(seed: 77)),
        ]
        for prompt in prompts {
            let plain = generate(prompt, drafter: nil, k: 0).tokens
            for (name, draft) in drafts {
                for k in 1...8 {
                    let (tokens, stats) = generate(prompt, drafter: DraftModelDrafter(model: draft), k: k)
                    XCTAssertEqual(tokens, plain, "draft (\(name)) k=\(k)")
                    if name == "itself" {
                        // The target drafting for itself is always right: every step accepts its whole chain.
                        XCTAssertEqual(stats.accepted, stats.drafted, "self-draft acceptance k=\(k)")
                    }
                }
            }
        }
    }

    func testSpeculationActuallyAcceptsTokensWhenTheDraftIsGood() {
        let (_, stats) = generate(prompts[2], drafter: DraftModelDrafter(model: ToyModels.perturbed(seed: 1, noise: 0.05)), k: 4)
        XCTAssertGreaterThan(stats.acceptanceRate, 0.3)
        XCTAssertGreaterThan(stats.meanAcceptanceLength, 1.5)
        XCTAssertEqual(stats.acceptancePerPosition.count, 4)
    }

    func testMaxTokensAndStopTokensEndGenerationAtTheSamePlaceWithOrWithoutSpeculation() {
        let prompt = prompts[1]
        let plain = Generation(target: target, prompt: prompt, maxTokens: 13)
        plain.run()
        let spec = Generation(target: target, prompt: prompt, maxTokens: 13, drafter: DraftModelDrafter(model: target),
                              settings: SpeculationSettings(numDraft: 6))
        spec.run()
        XCTAssertEqual(Array(spec.generated), Array(plain.generated))
        XCTAssertEqual(spec.generated.count, 13)
        XCTAssertEqual(spec.finishReason, .length)

        // Stop at the fifth token of the plain output: both stop there, without emitting it.
        let stop = plain.generated[plain.generated.startIndex + 4]
        let firstIndex = plain.generated.firstIndex(of: stop)! - plain.generated.startIndex
        let a = Generation(target: target, prompt: prompt, maxTokens: 30, stopTokens: [stop])
        a.run()
        let b = Generation(target: target, prompt: prompt, maxTokens: 30, stopTokens: [stop],
                           drafter: DraftModelDrafter(model: target), settings: SpeculationSettings(numDraft: 8))
        b.run()
        XCTAssertEqual(a.generated.count, firstIndex)
        XCTAssertEqual(Array(b.generated), Array(a.generated))
        XCTAssertEqual(b.finishReason, .stop)
    }
}
