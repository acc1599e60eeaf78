import XCTest
import InferenceCore
@testable import SpeculativeDecoding

/// The race's speedup pairs each round of a method with `none`'s round from the same minutes.
final class SpeculativeBenchmarkTests: XCTestCase {
    func testTheSpeedupIsTheMedianOfPerRoundRatiosNotTheRatioOfMedians() {
        // The machine got faster in round 2 for both: per round the method is 2×, 1×, 2× as fast as none.
        let none: [Double] = [100, 400, 300]
        let method: [Double] = [200, 400, 600]
        XCTAssertEqual(SpeculativeBenchmark.pairedSpeedup(method, over: none), 2)
        XCTAssertEqual(SpeculativeBenchmark.median(method) / SpeculativeBenchmark.median(none), 400.0 / 300.0,
                       "the unpaired figure this replaces")
    }

    func testOneRoundIsItsOwnRatio() {
        XCTAssertEqual(SpeculativeBenchmark.pairedSpeedup([300], over: [150]), 2)
    }

    /// `none`'s plain steps keep the drafters' decode-step clock current (auto-off's reference in the race).
    func testNoneFeedsTheDraftersDecodeStepClock() {
        let target = ToyModels.model(seed: 1)
        let prompt = (0..<12).map { ($0 * 17 + 4) % 96 }
        let plain = Generation(target: target, prompt: prompt, maxTokens: 24)
        plain.run()
        let clock = DecodeStepClock()
        // A drafter that is always wrong speculates in every step but the last: one plain step of its own.
        let wrong = SpeculativeBenchmark.Contender(name: "wrong", cost: CostModel(draftPerToken: 0, verify: [], clock: clock)) {
            AdaptiveSpeculationTests.ScriptedDrafter(continuation: Array(plain.generated), promptCount: prompt.count, right: false)
        }
        var options = BenchmarkOptions()
        options.maxTokens = 24
        options.repeats = 1
        options.numDraft = 1
        options.adaptive = false
        options.autoDisable = false
        let report = SpeculativeBenchmark(target: target, stopTokens: [], drafters: [wrong]).run(prompts: [prompt], options: options)
        XCTAssertEqual(report.methods.map(\.method), ["none", "wrong"])
        XCTAssertNotNil(clock.seconds, "none's 23 plain steps reached the clock")
    }

    /// One run races a method at several lengths: each contender drafts up to its own `numDraft`, the others up to
    /// the options'.
    func testAContendersOwnDraftLengthOverridesTheRunsLength() {
        let target = ToyModels.model(seed: 1)
        let prompt = (0..<12).map { ($0 * 17 + 4) % 96 }
        let plain = Generation(target: target, prompt: prompt, maxTokens: 40)
        plain.run()
        func right(_ name: String, _ k: Int?) -> SpeculativeBenchmark.Contender {
            .init(name: name, numDraft: k) {
                AdaptiveSpeculationTests.ScriptedDrafter(continuation: Array(plain.generated), promptCount: prompt.count, right: true)
            }
        }
        var options = BenchmarkOptions()
        options.maxTokens = 40
        options.repeats = 1
        options.numDraft = 3
        options.adaptive = false
        options.autoDisable = false
        let report = SpeculativeBenchmark(target: target, stopTokens: [], drafters: [right("k=2", 2), right("k=7", 7), right("run's", nil)])
            .run(prompts: [prompt], options: options)
        XCTAssertEqual(report.methods.map(\.method), ["none", "k=2", "k=7", "run's"])
        // Every draft is right, so each step accepts the whole chain: a mean length of k + 1 (the last step may be
        // cut short by max_tokens).
        XCTAssertEqual(report.methods.map(\.acceptancePerPosition.count), [0, 2, 7, 3])
        XCTAssertEqual(report.methods[1].meanAcceptanceLength, 3, accuracy: 0.1)
        XCTAssertEqual(report.methods[2].meanAcceptanceLength, 8, accuracy: 1)
        XCTAssertTrue(report.methods.allSatisfy { $0.identicalToNone == true })
    }

    func testDraftLengthListsParseAndMalformedOnesAreRefused() {
        XCTAssertEqual(BenchmarkOptions.draftLengths("8"), [8])
        XCTAssertEqual(BenchmarkOptions.draftLengths("5, 8,12"), [5, 8, 12])
        for bad in ["", "0", "17", "5,,8", "5,8,", "five", "5,5", "-3"] {
            XCTAssertNil(BenchmarkOptions.draftLengths(bad), bad)
        }
    }
}
