import Foundation
import XCTest
import TestSupport
@testable import InferenceCore

/// The shipped target (models/specserve-code) against HF transformers and HF tokenizers (`ShippedGolden`). Its
/// Medusa heads, MTP module and greedy continuations are checked in SpeculativeDecodingTests/ShippedModelTests.
final class ShippedTargetTests: XCTestCase {
    typealias Golden = ShippedGolden
    static let logitTolerance = ShippedGolden.logitTolerance
    static let hiddenTolerance = ShippedGolden.hiddenTolerance

    private func assertTopK(_ logits: [Float], ids: [Int], values: [Float], _ what: String) {
        for problem in topKDisagreements(logits, ids: ids, values: values, tolerance: Self.logitTolerance) {
            XCTFail("\(what): \(problem)")
        }
    }

    func testTheShippedTargetMatchesTransformersPromptByPromptAndTokenByToken() throws {
        let directory = Fixtures.repositoryRoot.appendingPathComponent("models/specserve-code")
        let model = try LlamaModel.load(directory: directory)
        let tokenizer = try BPETokenizer(contentsOf: directory.appendingPathComponent("tokenizer.json"))
        let golden = try JSONDecoder().decode(Golden.self, from: Data(contentsOf: Fixtures.url("logits/specserve-code.json")))
        XCTAssertEqual(golden.prompts.count, 4)
        for (n, prompt) in golden.prompts.enumerated() {
            XCTAssertEqual(tokenizer.encode(prompt.text), prompt.token_ids, "prompt \(n) encoding")
            for (mode, logits, hidden) in forwardAsPromptAndTokenByToken(model, prompt.token_ids) {
                for p in prompt.token_ids.indices {
                    assertTopK(logits[p], ids: prompt.topk_ids[p], values: prompt.topk_logits[p], "prompt \(n) \(mode) position \(p)")
                }
                if let last = prompt.last_logits, let h = prompt.last_hidden {
                    XCTAssertLessThan(maxAbsDifference(logits.last!, last), Self.logitTolerance, "prompt \(n) \(mode) full last row")
                    XCTAssertLessThan(maxAbsDifference(hidden.last!, h), Self.hiddenTolerance, "prompt \(n) \(mode) last hidden")
                }
            }
        }
    }
}
