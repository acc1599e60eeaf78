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

    /// A clock that has seen plain steps of `seconds` each.
    private func clock(seconds: Double) -> DecodeStepClock {
        let clock = DecodeStepClock()
        clock.record(seconds)
        clock.record(seconds)
        return clock
    }

    func testPlainStepsFeedTheModelsDecodeStepClock() {
        let clock = DecodeStepClock()
        XCTAssertNil(clock.seconds, "no reference before two steps")
        let g = Generation(target: target, prompt: prompt, maxTokens: 20,
                           settings: SpeculationSettings(costModel: CostModel(draftPerToken: 0, verify: [], clock: clock)))
        g.run()
        let seconds = try! XCTUnwrap(clock.seconds)
        XCTAssertGreaterThan(seconds, 0)
        XCTAssertLessThan(seconds, g.decodeSeconds, "one step's time, not the whole request's")
    }

    func testOneSlowStepDoesNotMoveTheClock() throws {
        let clock = DecodeStepClock()
        for seconds in [1e-3, 1.1e-3, 0.9e-3, 1e-3, 50e-3] { clock.record(seconds) }
        XCTAssertEqual(try XCTUnwrap(clock.seconds), 1e-3, accuracy: 1e-12, "the median of the recent steps")
        for _ in 0..<20 { clock.record(2e-3) }
        XCTAssertEqual(try XCTUnwrap(clock.seconds), 2e-3, accuracy: 1e-12, "only the recent steps count")
    }

    func testSpeculativeStepsTimedAloneAreComparedWithTheClocksPlainStep() {
        let expected = plain(maxTokens: 60)
        let good = ScriptedDrafter(continuation: expected, promptCount: prompt.count, right: true)
        // Calibrated as free, perfect drafts stay on …
        let free = CostModel(draftPerToken: 0, verify: cheapVerify)
        XCTAssertFalse(run(good, SpeculationSettings(numDraft: 3, adaptive: false, warmupSteps: 4, costModel: free)).stats.autoDisabled)
        // … but against plain steps clocked at 0.1 µs, each real step (tens of µs on the toy model) loses.
        var clocked = free
        clocked.clock = clock(seconds: 1e-7)
        let g = run(good, SpeculationSettings(numDraft: 3, adaptive: false, warmupSteps: 4, costModel: clocked))
        XCTAssertTrue(g.stats.autoDisabled)
        XCTAssertEqual(g.stats.steps, 5, "four steps timed alone (the first is left out) are needed")
        XCTAssertEqual(Array(g.generated), expected)
        // Against plain steps clocked at 1 s the same steps pay.
        clocked.clock = clock(seconds: 1)
        XCTAssertFalse(run(good, SpeculationSettings(numDraft: 3, adaptive: false, warmupSteps: 4, costModel: clocked)).stats.autoDisabled)
    }

    func testStepsSharedWithAnotherRequestAreNotTakenAsTimings() {
        let expected = plain(maxTokens: 40)
        var cost = CostModel(draftPerToken: 0, verify: cheapVerify)
        cost.clock = clock(seconds: 1e-7)
        let settings = SpeculationSettings(numDraft: 3, adaptive: false, warmupSteps: 4, costModel: cost)
        let requests = (0..<2).map { _ in
            Generation(target: target, prompt: prompt, maxTokens: 40,
                       drafter: ScriptedDrafter(continuation: expected, promptCount: prompt.count, right: true), settings: settings)
        }
        for g in requests { g.completePrefill(target.forward(g.prefillRows())) }
        // Both requests' rows in every forward, as the engine batches them.
        while requests.contains(where: { !$0.isFinished }) {
            let active = requests.filter { !$0.isFinished }
            let rows = active.map { $0.stepRows() }
            let out = target.forward(rows.flatMap { $0 })
            var offset = 0
            for (g, r) in zip(active, rows) { g.completeStep(out, offset: offset); offset += r.count }
        }
        for g in requests {
            XCTAssertEqual(Array(g.generated), expected)
            XCTAssertFalse(g.stats.autoDisabled, "no step ran alone, so the calibrated (free) cost decided")
        }
    }
}

