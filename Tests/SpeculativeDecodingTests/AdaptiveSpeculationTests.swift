import Foundation
import XCTest
import InferenceCore
@testable import SpeculativeDecoding

/// DESIGN §5 "adaptive, never slower": the draft length follows acceptance, and a request switches speculation
/// off once its expected speedup falls below the break-even — judged by the calibrated draft cost, or, when the
/// decode step was measured, by the draft time the request really spends.
final class AdaptiveSpeculationTests: XCTestCase {
    let target = ToyModels.model(seed: 1)
    let prompt = (0..<12).map { ($0 * 17 + 4) % 96 }

    /// Proposes the plain greedy continuation (`right`) or a token that is always wrong, after an optional
    /// busy wait that stands for an expensive draft model.
    final class ScriptedDrafter: Drafter {
        let continuation: [Int], promptCount: Int, right: Bool, delay: Double
        init(continuation: [Int], promptCount: Int, right: Bool, delay: Double = 0) {
            self.continuation = continuation
            self.promptCount = promptCount
            self.right = right
            self.delay = delay
        }
        var method: SpeculativeMethod { .ngram }
        func start(tokens: [Int], hidden: Tensor) {}
        func commit(tokens: [Int], tree: DraftTree, outcome: AcceptanceOutcome, hidden: [[Float]]) {}
        func propose(tokens: [Int], limit: Int, sampling: SamplingParameters, rng: inout SeededGenerator) -> DraftTree {
            let until = monotonicSeconds() + delay
            while monotonicSeconds() < until {}
            let next = tokens.count - promptCount          // index in the continuation of the first draft token
            let chain = continuation.dropFirst(next).prefix(limit).map { right ? $0 : ($0 + 1) % 96 }
            return DraftTree(chain: Array(chain))
        }
    }

    private func plain(maxTokens: Int) -> [Int] {
        let g = Generation(target: target, prompt: prompt, maxTokens: maxTokens)
        g.run()
        return Array(g.generated)
    }

    private func run(_ drafter: Drafter, _ settings: SpeculationSettings, maxTokens: Int = 60) -> Generation {
        let g = Generation(target: target, prompt: prompt, maxTokens: maxTokens, drafter: drafter, settings: settings)
        g.run()
        return g
    }

    /// verify[r] = 1 + 0.05·(r − 1): a verify forward costs about one decode step.
    let cheapVerify = [0.0] + (1...17).map { 1 + 0.05 * Double($0 - 1) }

    func testTheDraftLengthGrowsToTheLimitWhileEverythingIsAcceptedAndFallsToOneWhenNothingIs() {
        let expected = plain(maxTokens: 60)
        let settings = SpeculationSettings(numDraft: 6, adaptive: true, autoDisable: false)
        let good = run(ScriptedDrafter(continuation: expected, promptCount: prompt.count, right: true), settings)
        XCTAssertEqual(Array(good.generated), expected)
        XCTAssertEqual(good.stats.draftedPerPosition.count, 6, "the chain reached the limit")
        XCTAssertEqual(good.stats.acceptanceRate, 1)

        let bad = run(ScriptedDrafter(continuation: expected, promptCount: prompt.count, right: false), settings)
        XCTAssertEqual(Array(bad.generated), expected)
        XCTAssertEqual(bad.stats.accepted, 0)
        // Starting at 6, each rejected step takes one off until 1: 6 + 5 + 4 + 3 + 2 + 1·(steps − 5) drafted.
        XCTAssertEqual(bad.stats.drafted, 20 + bad.stats.steps - 5)
    }

    func testARequestWhoseDraftsAreNeverAcceptedSwitchesSpeculationOffAfterTheWarmUp() {
        let expected = plain(maxTokens: 60)
        let settings = SpeculationSettings(numDraft: 4, autoDisable: true, warmupSteps: 8,
                                           costModel: CostModel(draftPerToken: 0.05, verify: cheapVerify))
        let g = run(ScriptedDrafter(continuation: expected, promptCount: prompt.count, right: false), settings)
        XCTAssertEqual(Array(g.generated), expected)
        XCTAssertTrue(g.stats.autoDisabled)
        XCTAssertEqual(g.stats.steps, 8, "off right after the warm-up")
        XCTAssertGreaterThan(g.stats.plainSteps, 40)

        let right = run(ScriptedDrafter(continuation: expected, promptCount: prompt.count, right: true), settings)
        XCTAssertFalse(right.stats.autoDisabled, "drafts that are accepted pay for themselves")
        XCTAssertLessThanOrEqual(right.stats.plainSteps, 1, "at most a last step with no room to draft")
    }

    func testAMeasuredDecodeStepJudgesTheDrafterByTheTimeItReallySpends() {
        let expected = plain(maxTokens: 60)
        // Perfect drafts that take 2 ms each: calibrated as free, they look worth it …
        let slow = ScriptedDrafter(continuation: expected, promptCount: prompt.count, right: true, delay: 2e-3)
        let calibrated = run(slow, SpeculationSettings(numDraft: 2, adaptive: false, autoDisable: true, warmupSteps: 4,
                                                       costModel: CostModel(draftPerToken: 0, verify: cheapVerify)))
        XCTAssertFalse(calibrated.stats.autoDisabled)
        // … but against a decode step measured at 0.1 ms each step's 2 ms of drafting costs 20 decode steps for 3
        // tokens, and the request stops speculating.
        let measured = run(slow, SpeculationSettings(numDraft: 2, adaptive: false, autoDisable: true, warmupSteps: 4,
                                                     costModel: CostModel(draftPerToken: 0, verify: cheapVerify, decodeSeconds: 1e-4)))
        XCTAssertTrue(measured.stats.autoDisabled)
        XCTAssertEqual(measured.stats.steps, 4)
        XCTAssertEqual(Array(measured.generated), expected)
        // A decode step measured as slow as the drafts leaves them worth it.
        let fair = run(slow, SpeculationSettings(numDraft: 2, adaptive: false, autoDisable: true, warmupSteps: 4,
                                                 costModel: CostModel(draftPerToken: 0, verify: cheapVerify, decodeSeconds: 1)))
        XCTAssertFalse(fair.stats.autoDisabled)
    }
}
