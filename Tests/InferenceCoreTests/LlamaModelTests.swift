import Foundation
import XCTest
@testable import InferenceCore

/// Every position's logits and final hidden state for `tokens`, computed two ways: once as one prompt (the sgemm
/// path for long prompts) and once token by token through the KV cache (the streaming path).
func forwardAsPromptAndTokenByToken(
    _ model: LlamaModel, _ tokens: [Int]
) -> [(mode: String, logits: [[Float]], hidden: [[Float]])] {
    var results: [(mode: String, logits: [[Float]], hidden: [[Float]])] = []
    let cache = model.makeCache()
    let rows = tokens.enumerated().map { Row(token: $1, position: $0, cache: cache, isPrompt: true) }
    let out = model.forward(rows)
    results.append(("prefill", rows.indices.map { out.logits(row: $0) }, rows.indices.map { out.hidden(row: $0) }))
    cache.reset()
    var logits: [[Float]] = [], hidden: [[Float]] = []
    for (p, token) in tokens.enumerated() {
        let out = model.forward([Row(token: token, position: p, cache: cache)])
        cache.append(1)
        logits.append(out.logits(row: 0))
        hidden.append(out.hidden(row: 0))
    }
    results.append(("decode", logits, hidden))
    return results
}

/// The forward pass against HF transformers (float32, eager attention) on the committed tiny fixtures.
final class LlamaModelGoldenTests: XCTestCase {
    struct Golden: Decodable {
        struct Prompt: Decodable {
            let token_ids: [Int]
            let argmax: [Int]
            let logits: [[Float]]
            let final_hidden: [[Float]]
        }
        let prompts: [Prompt]
    }

    private func check(fixture: String) throws {
        let model = try LlamaModel.load(directory: Fixtures.url(fixture))
        let golden = try JSONDecoder().decode(Golden.self, from: Data(contentsOf: Fixtures.url("logits/\(fixture).json")))
        XCTAssertFalse(golden.prompts.isEmpty)
        for prompt in golden.prompts {
            for (mode, logits, hidden) in forwardAsPromptAndTokenByToken(model, prompt.token_ids) {
                for p in prompt.token_ids.indices {
                    XCTAssertLessThan(maxAbsDifference(logits[p], prompt.logits[p]), 1e-4, "\(fixture) \(mode) position \(p) logits")
                    XCTAssertLessThan(maxAbsDifference(hidden[p], prompt.final_hidden[p]), 1e-4, "\(fixture) \(mode) position \(p) hidden")
                    XCTAssertEqual(argmax(logits[p]), prompt.argmax[p], "\(fixture) \(mode) position \(p) argmax")
                }
            }
        }
    }

    func testTiedF32FixtureMatchesTransformers() throws { try check(fixture: "tiny-llama-tied") }
    func testUntiedBF16FixtureMatchesTransformers() throws { try check(fixture: "tiny-llama-untied") }
}

/// DESIGN §2: a position's logits are bitwise the same alone, in a verify chain, in a tree and beside rows of
/// another sequence.
final class BatchInvarianceTests: XCTestCase {
    func testLogitsAreBitwiseEqualAloneInChainsInTreesAndBesideOtherSequences() throws {
        let model = try LlamaModel.load(directory: Fixtures.url("tiny-llama-untied"))
        let vocab = model.config.vocabSize
        let prompt = (0..<45).map { ($0 * 37 + 11) % vocab }
        let continuation = (0..<16).map { ($0 * 53 + 5) % vocab }
        let other = (0..<30).map { ($0 * 29 + 3) % vocab }

        func prefilled(_ tokens: [Int]) -> KVCache {
            let cache = model.makeCache()
            _ = model.forward(tokens.enumerated().map { Row(token: $1, position: $0, cache: cache, isPrompt: true, wantsLogits: false) })
            cache.append(tokens.count)
            return cache
        }

        // Reference: each continuation token decoded alone, one step at a time.
        let cache = prefilled(prompt)
        var alone: [[Float]] = []
        for (i, t) in continuation.enumerated() {
            alone.append(model.forward([Row(token: t, position: prompt.count + i, cache: cache)]).logits(row: 0))
            cache.append(1)
        }

        // Verify chains of 2...16 rows.
        for k in 2...16 {
            let c = prefilled(prompt)
            let out = model.forward(continuation.prefix(k).enumerated().map { Row(token: $1, position: prompt.count + $0, cache: c) })
            for i in 0..<k { XCTAssertEqual(out.logits(row: i), alone[i], "chain of \(k), row \(i)") }
        }

        // A tree whose branch [0, 2, 4] carries continuation[0...2]; the decoy branch carries other tokens.
        let t = prefilled(prompt)
        let base = prompt.count
        let nodes: [(token: Int, path: [Int])] = [
            (continuation[0], [base]),
            ((continuation[1] + 1) % vocab, [base, base + 1]),
            (continuation[1], [base, base + 2]),
            ((continuation[2] + 7) % vocab, [base, base + 2, base + 3]),
            (continuation[2], [base, base + 2, base + 4]),
        ]
        let treeOut = model.forward(nodes.map {
            Row(token: $0.token, position: base + $0.path.count - 1, cache: t, slot: $0.path.last!,
                visibility: .tree(prefixLength: base, path: $0.path))
        })
        XCTAssertEqual(treeOut.logits(row: 0), alone[0], "tree root")
        XCTAssertEqual(treeOut.logits(row: 2), alone[1], "tree depth 1")
        XCTAssertEqual(treeOut.logits(row: 4), alone[2], "tree depth 2")

        // The accepted path compacted into place continues exactly like plain decoding.
        t.compact(keeping: [base, base + 2, base + 4])
        let next = model.forward([Row(token: continuation[3], position: base + 3, cache: t)])
        XCTAssertEqual(next.logits(row: 0), alone[3], "after compact")

        // Beside rows of another sequence (decode rows of a second request, before and after).
        let mine = prefilled(prompt), theirs = prefilled(other)
        var rows = [Row(token: 1, position: other.count, cache: theirs)]
        rows += continuation.prefix(4).enumerated().map { Row(token: $1, position: prompt.count + $0, cache: mine) }
        rows.append(Row(token: 2, position: other.count + 1, cache: theirs))
        let mixed = model.forward(rows)
        for i in 0..<4 { XCTAssertEqual(mixed.logits(row: i + 1), alone[i], "beside another sequence, row \(i)") }
    }

    func testPromptRowsBesideDecodeRowsLeaveTheDecodeRowsUnchanged() throws {
        let model = try LlamaModel.load(directory: Fixtures.url("tiny-llama-tied"))
        let prompt = Array(0..<20)
        let a = model.makeCache()
        _ = model.forward(prompt.enumerated().map { Row(token: $1, position: $0, cache: a, isPrompt: true) })
        a.append(prompt.count)
        let alone = model.forward([Row(token: 7, position: 20, cache: a)]).logits(row: 0)
        a.truncate(to: 20)
        // Another request's 40-row prompt (sgemm) in the same forward.
        let b = model.makeCache()
        var rows = (0..<40).map { Row(token: ($0 * 3) % 300, position: $0, cache: b, isPrompt: true, wantsLogits: false) }
        rows.append(Row(token: 7, position: 20, cache: a))
        let out = model.forward(rows)
        XCTAssertEqual(model.linearSegments(rows).map(\.path), [.blas, .streaming])
        XCTAssertEqual(out.logits(row: 40), alone)
    }
}
