import Foundation
import XCTest
@testable import InferenceCore
@testable import SpeculativeDecoding

/// DESIGN §5 "adaptive, never slower": the draft length follows acceptance, and a request switches speculation
/// off once its expected speedup falls below the break-even — judged by the calibrated draft cost, or, when the
/// decode step was measured, by the draft time the request really spends.
final class AdaptiveSpeculationTests: XCTestCase {
    let target = ToyModels.model(seed: 1)
    let prompt = (0..<12).map { ($0 * 17 + 4) % 96 }

    /// Proposes the plain greedy continuation at continuation indices `rightFrom..<rightUntil` (default: all) and
    /// a token that is always wrong elsewhere, after an optional busy wait that stands for an expensive draft model.
    final class ScriptedDrafter: Drafter {
        let continuation: [Int], promptCount: Int, rightFrom: Int, rightUntil: Int, delay: Double
        init(continuation: [Int], promptCount: Int, right: Bool = true, rightFrom: Int? = nil, rightUntil: Int = .max,
             delay: Double = 0) {
            self.continuation = continuation
            self.promptCount = promptCount
            self.rightFrom = rightFrom ?? (right ? 0 : Int.max)
            self.rightUntil = rightUntil
            self.delay = delay
        }
        var method: SpeculativeMethod { .ngram }
        func start(tokens: [Int], hidden: Tensor) {}
        func commit(tokens: [Int], tree: DraftTree, outcome: AcceptanceOutcome, hidden: [[Float]]) {}
        func propose(tokens: [Int], limit: Int, sampling: SamplingParameters, rng: inout SeededGenerator) -> DraftTree {
            let until = monotonicSeconds() + delay
            while monotonicSeconds() < until {}
            let next = tokens.count - promptCount          // index in the continuation of the first draft token
            let chain = continuation.enumerated().dropFirst(next).prefix(limit).map { (rightFrom..<max(rightFrom, rightUntil)).contains($0.offset) ? $0.element : ($0.element + 1) % 96 }
            return DraftTree(chain: Array(chain))
        }
    }

    private func plain(maxTokens: Int) -> [Int] {
        let g = Generation(target: target, prompt: prompt, maxTokens: maxTokens)
        g.run()
        return Array(g.generated)
    }

    /// A clock that never moves: every step times at zero, so auto-off is left to the calibrated cost model and
    /// does not depend on how fast this machine runs the toy model at the moment.
    static let stoppedClock: @Sendable () -> Double = { 0 }

    private func run(_ drafter: Drafter, _ settings: SpeculationSettings, maxTokens: Int = 60,
                     now: @escaping () -> Double = monotonicSeconds) -> Generation {
        let g = Generation(target: target, prompt: prompt, maxTokens: maxTokens, drafter: drafter, settings: settings, now: now)
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

    func testTheChainLengthIsTheOneWithTheMostTokensPerUnitOfTime() {
        let steep = CostModel(draftPerToken: 0, verify: [0.0] + (1...17).map { Double($0) })
        let cheap = CostModel(draftPerToken: 0, verify: cheapVerify)
        // A verify row that costs a whole decode step never pays for a second drafted token.
        XCTAssertEqual(steep.bestChainLength(acceptance: 0.99, draftPerToken: 0, maxLength: 8), 1)
        // Rows that cost 5 % each: the longest chain at 90 %, unless nothing is ever accepted.
        XCTAssertEqual(cheap.bestChainLength(acceptance: 0.9, draftPerToken: 0.05, maxLength: 8), 8)
        XCTAssertEqual(cheap.bestChainLength(acceptance: 0, draftPerToken: 0.05, maxLength: 8), 1)
        // Session 9's Xeon: verify of 2–8 rows 0.92, 0.99, 1.11, 1.42, 1.55, 1.68, 1.93× a decode step and 0.14×
        // per drafted token; 3 tokens at 80 % (the race measured k = 3 best: draft 1.60×, k = 5 1.48×, k = 8 1.35×).
        let xeon = CostModel(draftPerToken: 0.14, verify: [0, 1, 0.92, 0.99, 1.11, 1.42, 1.55, 1.68, 1.93])
        XCTAssertEqual(xeon.bestChainLength(acceptance: 0.8, draftPerToken: 0.14, maxLength: 8), 3)
        // The better the drafts, the longer the chain (never shorter).
        var previous = 1
        for acceptance in stride(from: 0.0, through: 0.99, by: 0.03) {
            let k = xeon.bestChainLength(acceptance: acceptance, draftPerToken: 0.05, maxLength: 8)
            XCTAssertGreaterThanOrEqual(k, previous, "at acceptance \(acceptance)")
            previous = k
        }
        XCTAssertEqual(CostModel.free.bestChainLength(acceptance: 0.1, draftPerToken: 0, maxLength: 6), 6, "nothing measured")
    }

    func testWhereAVerifyRowCostsAWholeStepAChainOfRightDraftsIsCutToOneToken() {
        let expected = plain(maxTokens: 40)
        let settings = SpeculationSettings(numDraft: 6, adaptive: true, autoDisable: false,
                                           costModel: CostModel(draftPerToken: 0, verify: [0.0] + (1...17).map { Double($0) }))
        let g = run(ScriptedDrafter(continuation: expected, promptCount: prompt.count, right: true), settings, maxTokens: 40,
                    now: Self.stoppedClock)
        XCTAssertEqual(Array(g.generated), expected)
        XCTAssertEqual(g.stats.acceptanceRate, 1)
        // The first step drafts the configured 6; every later one the single token the cost model allows.
        XCTAssertEqual(g.stats.drafted, 6 + (g.stats.steps - 1))
        // With rows that cost 5 % each the same drafter keeps the whole chain.
        let cheap = run(ScriptedDrafter(continuation: expected, promptCount: prompt.count, right: true),
                        SpeculationSettings(numDraft: 6, adaptive: true, autoDisable: false,
                                            costModel: CostModel(draftPerToken: 0, verify: cheapVerify)),
                        maxTokens: 40, now: Self.stoppedClock)
        XCTAssertEqual(Array(cheap.generated), expected)
        XCTAssertEqual(cheap.stats.draftedPerPosition.count, 6)
        XCTAssertGreaterThan(cheap.stats.drafted, 4 * cheap.stats.steps)
    }

    func testARequestWhoseDraftsAreNeverAcceptedSwitchesSpeculationOffAfterTheWarmUp() {
        let expected = plain(maxTokens: 60)
        let settings = SpeculationSettings(numDraft: 4, autoDisable: true, warmupSteps: 8, retryAfter: 0,
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
        let measured = run(slow, SpeculationSettings(numDraft: 2, adaptive: false, autoDisable: true, warmupSteps: 4, retryAfter: 0,
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
        let g = run(good, SpeculationSettings(numDraft: 3, adaptive: false, warmupSteps: 4, retryAfter: 0, costModel: clocked))
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

    /// Right drafts after a busy wait, and every other call nothing (after the same wait).
    final class SometimesSilentDrafter: Drafter {
        let inner: ScriptedDrafter
        var calls = 0
        init(_ inner: ScriptedDrafter) { self.inner = inner }
        var method: SpeculativeMethod { .ngram }
        func start(tokens: [Int], hidden: Tensor) {}
        func commit(tokens: [Int], tree: DraftTree, outcome: AcceptanceOutcome, hidden: [[Float]]) {}
        func propose(tokens: [Int], limit: Int, sampling: SamplingParameters, rng: inout SeededGenerator) -> DraftTree {
            calls += 1
            let tree = inner.propose(tokens: tokens, limit: limit, sampling: sampling, rng: &rng)
            return calls % 2 == 0 ? DraftTree() : tree
        }
    }

    /// The plain step speculation is compared with is the forward alone: a drafting attempt that found nothing
    /// would not run with speculation off, so it must not make plain steps look as slow as speculative ones.
    func testAPlainStepsReferenceLeavesOutAFailedDraftingAttempt() {
        let expected = plain(maxTokens: 60)
        let drafter = SometimesSilentDrafter(ScriptedDrafter(continuation: expected, promptCount: prompt.count, right: true, delay: 2e-3))
        let g = run(drafter, SpeculationSettings(numDraft: 2, adaptive: false, autoDisable: true, warmupSteps: 4, retryAfter: 0,
                                                 costModel: CostModel(draftPerToken: 0, verify: cheapVerify)))
        XCTAssertEqual(Array(g.generated), expected)
        // 2 ms of drafting per 3 tokens against a toy forward of tens of µs: it does not pay.
        XCTAssertTrue(g.stats.autoDisabled)
    }

    /// Calibrated costs under which a rejected draft never pays and a fully accepted one does.
    private func retrying(_ retryAfter: Int, numDraft: Int = 4) -> SpeculationSettings {
        SpeculationSettings(numDraft: numDraft, adaptive: false, autoDisable: true, warmupSteps: 8, retryAfter: retryAfter,
                            costModel: CostModel(draftPerToken: 0.05, verify: cheapVerify))
    }

    func testSpeculationSwitchedOffIsTriedAgainAfterAPauseThatDoublesWhileItKeepsFailing() {
        let expected = plain(maxTokens: 200)
        let g = run(ScriptedDrafter(continuation: expected, promptCount: prompt.count, right: false), retrying(16), maxTokens: 200,
                now: Self.stoppedClock)
        XCTAssertEqual(Array(g.generated), expected)
        XCTAssertTrue(g.stats.autoDisabled)
        // 8 warm-up steps (tokens 2–9), 16 plain, a 4-step try, 32 plain, a try, 64 plain, a try, then 128 plain
        // (the cap, 8 × 16) run past max_tokens: three tries of four steps.
        XCTAssertEqual(g.stats.retries, 3)
        XCTAssertEqual(g.stats.steps, 8 + 3 * 4)
        XCTAssertEqual(g.stats.plainSteps, 16 + 32 + 64 + (200 - 1 - 8 - 16 - 4 - 32 - 4 - 64 - 4))
        // With retries off the same request never speculates again.
        let once = run(ScriptedDrafter(continuation: expected, promptCount: prompt.count, right: false), retrying(0), maxTokens: 200,
                       now: Self.stoppedClock)
        XCTAssertEqual(once.stats.retries, 0)
        XCTAssertEqual(once.stats.steps, 8)
    }

    func testARequestWhoseDraftsTurnGoodSpeculatesAgainAndStaysOn() {
        let expected = plain(maxTokens: 120)
        // Wrong for the first 40 tokens: off after the warm-up, a failed try at token 25, then at token 61 drafts
        // are right and the try keeps going to the end.
        let g = run(ScriptedDrafter(continuation: expected, promptCount: prompt.count, rightFrom: 40), retrying(16), maxTokens: 120,
                now: Self.stoppedClock)
        XCTAssertEqual(Array(g.generated), expected)
        XCTAssertTrue(g.stats.autoDisabled)
        XCTAssertEqual(g.stats.retries, 2)
        XCTAssertEqual(g.stats.plainSteps, 16 + 32)
        // Every step of the second try accepted its whole chain: tokens 62…120 in 11 steps of 4 drafts and a
        // bonus token, then one of 3 (no room to draft past max_tokens).
        XCTAssertEqual(g.stats.accepted, 11 * 4 + 3)
    }

    func testAfterSpeculationPaidForAWhileTheNextPauseIsShortAgain() {
        let expected = plain(maxTokens: 300)
        // Wrong before token 40 (off, a failed try), right until 200 (a long paying stretch), wrong after.
        let g = Generation(target: target, prompt: prompt, maxTokens: 300,
                           drafter: ScriptedDrafter(continuation: expected, promptCount: prompt.count, rightFrom: 40, rightUntil: 200),
                           settings: retrying(16), now: Self.stoppedClock)
        g.completePrefill(target.forward(g.prefillRows()))
        var pauses: [Int] = [], paused = false
        while !g.isFinished {
            g.completeStep(target.forward(g.stepRows()))
            if let retry = g.retryAtPlainStep, !paused { pauses.append(retry - g.stats.plainSteps) }
            paused = g.retryAtPlainStep != nil
        }
        XCTAssertEqual(Array(g.generated), expected)
        // 16 after the warm-up, 32 after the failed try, 16 again once speculation had paid for many steps, then
        // doubling while the tries keep failing.
        XCTAssertEqual(Array(pauses.prefix(4)), [16, 32, 16, 32])
    }

    /// The real drafters stay in step with the committed tokens while speculation is paused (a draft model's
    /// cache, an MTP module's queue of hidden states, the Medusa heads' last state): greedy output stays plain
    /// decoding's across many pauses and tries.
    func testEveryDrafterResumesInStepAfterAPause() throws {
        let expected = plain(maxTokens: 80)
        let heads = MedusaHeads(target: target, layout: .v2SharedHead, blocks: (0..<2).map { _ in
            [(weight: Tensor(shape: [target.config.hiddenSize, target.config.hiddenSize]), bias: Tensor(shape: [target.config.hiddenSize]))] },
            projections: [])
        let drafters: [(String, () -> Drafter)] = [
            ("draft", { DraftModelDrafter(model: ToyModels.perturbed(seed: 1, noise: 0.05)) }),
            ("mtp", { MTPDrafter(module: ToyModels.mtpModule(target: self.target)) }),
            ("medusa", { MedusaDrafter(heads: heads, tree: try! MedusaTree(choices: [[0], [0, 0], [1]], heads: 2)) }),
            ("ngram", { NGramDrafter(minN: 1, maxN: 3) }),
        ]
        for (name, make) in drafters {
            // A break-even no method reaches: off after two steps, tried again after 3, 6, 12 … plain steps.
            let settings = SpeculationSettings(numDraft: 3, adaptive: false, autoDisable: true, breakEven: 100, warmupSteps: 2,
                                               retryAfter: 3, costModel: CostModel(draftPerToken: 0.05, verify: cheapVerify))
            let g = run(make(), settings, maxTokens: 80)
            XCTAssertEqual(Array(g.generated), expected, name)
            XCTAssertGreaterThanOrEqual(g.stats.retries, 3, name)
        }
    }
}
