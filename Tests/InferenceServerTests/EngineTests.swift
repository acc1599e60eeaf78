import Foundation
import XCTest
import InferenceCore
import SpeculativeDecoding
@testable import InferenceServer

/// A small model family for engine tests: random weights sized to the committed fixture tokenizer.
enum ToyFamily {
    static func make(draft: Bool = true) throws -> ModelFamily {
        let tokenizer = try BPETokenizer(contentsOf: Fixtures.url("tokenizer/fixture-tokenizer.json"))
        let config = LlamaConfig(hiddenSize: 32, intermediateSize: 64, numHiddenLayers: 2, numAttentionHeads: 4,
                                 numKeyValueHeads: 2, rmsNormEps: 1e-5, vocabSize: tokenizer.vocabSize,
                                 maxPositionEmbeddings: 640, tieWordEmbeddings: true)
        let target = LlamaModel(weights: .random(config: config, seed: 21, scale: 2))
        return ModelFamily(target: target, tokenizer: tokenizer, stopTokens: [], draft: draft ? target : nil,
                           targetDirectory: Fixtures.directory)
    }
}

/// Collects one job's events on the caller's side. Written by the engine thread, read by the test: every access
/// holds the lock.
final class Collector: @unchecked Sendable {
    private let lock = NSCondition()
    private var storedTokens: [Int] = []
    private var storedFinish: FinishReason?
    private var storedStats: SpeculationStats?
    private var storedFailure: String?
    private var storedStarted = false

    var tokens: [Int] { lock.withLock { storedTokens } }
    var finish: FinishReason? { lock.withLock { storedFinish } }
    var stats: SpeculationStats? { lock.withLock { storedStats } }
    var failure: String? { lock.withLock { storedFailure } }
    var started: Bool { lock.withLock { storedStarted } }

    func handle(_ event: EngineEvent) {
        lock.lock()
        switch event {
        case .started: storedStarted = true
        case let .tokens(t): storedTokens += t
        case let .finished(reason, s, _): storedFinish = reason; storedStats = s
        case let .failed(m): storedFailure = m
        case .stopped: storedFailure = "stopped"
        }
        lock.broadcast()
        lock.unlock()
    }

    func wait(timeout: Double = 30) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        lock.lock()
        defer { lock.unlock() }
        while storedFinish == nil && storedFailure == nil { if !lock.wait(until: deadline) { return false } }
        return true
    }
}

final class EngineTests: XCTestCase {
    func testConcurrentRequestsEachGetExactlyTheirSoloGreedyOutput() throws {
        let family = try ToyFamily.make()
        let engine = Engine(family: family, settings: EngineSettings(maxQueue: 32, maxActive: 8))
        engine.start()
        defer { engine.stop() }
        // Prompts around the 256-token prefill chunk, and every method.
        let prompts: [[Int]] = [Array(1...5), (0..<300).map { ($0 * 7 + 3) % 500 }, (0..<40).map { ($0 % 9) + 10 },
                                (0..<257).map { ($0 * 3) % 700 }, [42]]
        let methods: [SpeculativeMethod] = [.none, .ngram, .draft]
        var expected: [[Int]] = []
        var collectors: [Collector] = []
        for (i, prompt) in prompts.enumerated() {
            let solo = Generation(target: family.target, prompt: prompt, maxTokens: 24)
            solo.run()
            expected.append(Array(solo.generated))
            for method in methods {
                let c = Collector()
                _ = try engine.submit(prompt: prompt, parameters: JobParameters(maxTokens: 24, method: method,
                                      speculation: SpeculationSettings(numDraft: 2 + i % 4))) { c.handle($0) }
                collectors.append(c)
            }
        }
        for (i, c) in collectors.enumerated() {
            XCTAssertTrue(c.wait(), "job \(i) did not finish")
            XCTAssertEqual(c.tokens, expected[i / methods.count], "prompt \(i / methods.count), method \(methods[i % methods.count])")
            XCTAssertEqual(c.finish, .length)
        }
        let text = engine.metrics.prometheusText()
        XCTAssertTrue(text.contains("specserve:spec_decode_num_drafts_total"))
        XCTAssertTrue(text.contains("specserve:generation_tokens_total 360"), text)
    }

    func testAFullQueueRefusesAndACancelledJobEndsWithinAStep() throws {
        let family = try ToyFamily.make(draft: false)
        let engine = Engine(family: family, settings: EngineSettings(maxQueue: 2, maxActive: 1))
        // Not started: jobs stay queued.
        _ = try engine.submit(prompt: [1, 2], parameters: JobParameters(maxTokens: 4)) { _ in }
        _ = try engine.submit(prompt: [1, 2], parameters: JobParameters(maxTokens: 4)) { _ in }
        XCTAssertThrowsError(try engine.submit(prompt: [1, 2], parameters: JobParameters(maxTokens: 4)) { _ in }) {
            XCTAssertEqual($0 as? EngineError, .queueFull(2))
        }
        engine.start()
        defer { engine.stop() }
        let c = Collector()
        var job: Job?
        // Wait for room, then a long job that is cancelled after its first tokens.
        for _ in 0..<200 where job == nil {
            job = try? engine.submit(prompt: [3, 4, 5], parameters: JobParameters(maxTokens: 500)) { event in
                c.handle(event)
            }
            if job == nil { Thread.sleep(forTimeInterval: 0.01) }
        }
        while c.tokens.isEmpty && c.finish == nil { Thread.sleep(forTimeInterval: 0.001) }
        job?.cancel()
        XCTAssertTrue(c.wait())
        XCTAssertEqual(c.finish, .cancelled)
        XCTAssertLessThan(c.tokens.count, 500)
    }

    func testInvalidJobsAreRefusedWithAReason() throws {
        let family = try ToyFamily.make(draft: false)
        let engine = Engine(family: family)
        XCTAssertThrowsError(try engine.submit(prompt: Array(repeating: 1, count: 600), parameters: JobParameters(maxTokens: 100)) { _ in }) {
            XCTAssertTrue("\($0)".contains("exceeds the context of 640"), "\($0)")
        }
        XCTAssertThrowsError(try engine.submit(prompt: [1], parameters: JobParameters(maxTokens: 4, method: .medusa)) { _ in }) {
            XCTAssertTrue("\($0)".contains("'medusa' is not available"), "\($0)")
        }
    }

    func testEachRequestsDrafterIsBuiltWithTheConfiguredOptions() throws {
        let family = try ToyFamily.make()
        let engine = Engine(family: family)
        engine.start()
        defer { engine.stop() }
        func run(_ options: DrafterOptions) throws -> SpeculationStats {
            let c = Collector()
            _ = try engine.submit(prompt: [5, 6, 7], parameters: JobParameters(maxTokens: 12, method: .draft,
                                  speculation: SpeculationSettings(autoDisable: false), drafter: options)) { c.handle($0) }
            XCTAssertTrue(c.wait())
            return try XCTUnwrap(c.stats)
        }
        // The draft is the target itself, so its top probability is what it is; p_min above 1 stops every chain.
        XCTAssertGreaterThan(try run(DrafterOptions(pMin: 0)).steps, 0)
        let never = try run(DrafterOptions(pMin: 1.5))
        XCTAssertEqual(never.steps, 0)
        XCTAssertGreaterThan(never.plainSteps, 0)
    }

    func testStoppingTheEngineFailsActiveJobsAsShutdownNotAsCancellation() throws {
        let family = try ToyFamily.make(draft: false)
        let engine = Engine(family: family)
        engine.start()
        let c = Collector()
        _ = try engine.submit(prompt: [1, 2, 3], parameters: JobParameters(maxTokens: 400)) { c.handle($0) }
        while c.tokens.isEmpty { Thread.sleep(forTimeInterval: 0.001) }
        engine.stop()
        XCTAssertTrue(c.wait())
        XCTAssertNil(c.finish)
        XCTAssertEqual(c.failure, "stopped")
        // The gauge drops to 0 once the engine thread has dropped the job (right after the event).
        var idle = false
        for _ in 0..<200 where !idle {
            idle = engine.metrics.prometheusText().contains("specserve:num_requests_running 0")
            if !idle { Thread.sleep(forTimeInterval: 0.005) }
        }
        XCTAssertTrue(idle)
    }

    func testDraftModelForwardsAreBatchedAcrossRequestsAndOutputsStayExact() throws {
        let family = try ToyFamily.make()
        let engine = Engine(family: family, settings: EngineSettings(maxQueue: 8, maxActive: 4))
        let prompts = [[1, 2, 3], [9, 8, 7, 6], [40, 41], [5]]
        var collectors: [Collector] = []
        // Queued before the engine starts, so all four are admitted together.
        for p in prompts {
            let c = Collector()
            _ = try engine.submit(prompt: p, parameters: JobParameters(maxTokens: 20, method: .draft,
                                  speculation: SpeculationSettings(numDraft: 4, adaptive: false, autoDisable: false))) { c.handle($0) }
            collectors.append(c)
        }
        engine.start()
        defer { engine.stop() }
        for (p, c) in zip(prompts, collectors) {
            XCTAssertTrue(c.wait())
            let solo = Generation(target: family.target, prompt: p, maxTokens: 20)
            solo.run()
            XCTAssertEqual(c.tokens, Array(solo.generated))
        }
        let text = engine.metrics.prometheusText()
        func value(_ name: String) -> Double {
            let line = text.split(separator: "\n").first { $0.hasPrefix("specserve:\(name) ") }
            return Double(line?.split(separator: " ").last ?? "0") ?? 0
        }
        let passes = value("draft_forward_passes_total"), rows = value("draft_forward_rows_total")
        XCTAssertGreaterThan(passes, 0)
        XCTAssertGreaterThan(rows / passes, 2, "draft forwards carried \(rows) rows in \(passes) passes")
    }
}
