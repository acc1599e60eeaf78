import Foundation
import XCTest
import TestSupport
import InferenceCore
@testable import SpeculativeDecoding

/// The shipped family under models/ (the trained target with its Medusa heads and MTP module, and its draft)
/// against the reference implementations, and lossless on it.
///
/// Goldens: Tests/Fixtures/logits/specserve-code.json, written by tools/fixtures/make_model_goldens.py from HF
/// transformers (float32, eager attention) and HF tokenizers on the exported folder.
final class ShippedModelTests: XCTestCase {
    typealias Golden = ShippedGolden
    static let logitTolerance = ShippedGolden.logitTolerance

    static let targetDirectory = Fixtures.repositoryRoot.appendingPathComponent("models/specserve-code")
    static let draftDirectory = Fixtures.repositoryRoot.appendingPathComponent("models/specserve-code-draft")

    nonisolated(unsafe) private static var loaded: ModelFamily?
    private static let lock = NSLock()

    /// Loaded once for the whole class (about 0.1 s, but every test needs it).
    static func family() throws -> ModelFamily {
        try lock.withLock {
            if let loaded { return loaded }
            let family = try ModelFamily.load(target: targetDirectory, draft: draftDirectory)
            loaded = family
            return family
        }
    }

    static func golden() throws -> Golden {
        try JSONDecoder().decode(Golden.self, from: Data(contentsOf: Fixtures.url("logits/specserve-code.json")))
    }

    private func assertTopK(_ logits: [Float], ids: [Int], values: [Float], _ what: String) {
        for problem in topKDisagreements(logits, ids: ids, values: values, tolerance: Self.logitTolerance) {
            XCTFail("\(what): \(problem)")
        }
    }

    /// The drafters' steps are bound by the bytes they stream, so the draft model and the MTP module stream their
    /// matrices as BF16 (bitwise the same outputs: the goldens below pass through them); the target streams F32.
    func testTheDraftersStreamTheirMatricesAsBF16AndTheTargetF32() throws {
        let family = try Self.family()
        XCTAssertNotNil(try XCTUnwrap(family.draft).lmHead.bf16)
        // 1.87M parameters: 7.5 MB as F32, under 4 MB with its matrices as BF16.
        XCTAssertLessThan(try XCTUnwrap(family.mtp).weightBytes, 4_000_000)
        XCTAssertNil(family.target.lmHead.bf16)
    }

    /// (The target's logits against transformers: InferenceCoreTests/ShippedTargetTests.)
    func testTheShippedTargetsGreedyContinuationsMatchTransformers() throws {
        let family = try Self.family(), golden = try Self.golden()
        let model = family.target
        XCTAssertEqual(golden.prompts.count, 4)
        for (n, prompt) in golden.prompts.enumerated() {
            // 16 greedy tokens through the generation loop (no stop token, as in the reference).
            let g = Generation(target: model, prompt: prompt.token_ids, maxTokens: prompt.greedy.count)
            g.run()
            XCTAssertEqual(Array(g.generated), prompt.greedy, "prompt \(n) greedy continuation")
        }
    }

    func testTheShippedMedusaHeadsMatchTheReference() throws {
        let family = try Self.family(), golden = try Self.golden()
        let heads = try XCTUnwrap(family.medusa, "models/specserve-code carries medusa_lm_head.safetensors")
        XCTAssertEqual(heads.layout, .v2SharedHead, "the shipped heads share the target's lm_head")
        for (n, prompt) in golden.prompts.enumerated() {
            let reference = try XCTUnwrap(prompt.medusa)
            XCTAssertEqual(reference.count, heads.count)
            let cache = family.target.makeCache()
            let out = family.target.forward(prompt.token_ids.enumerated().map { Row(token: $1, position: $0, cache: cache, isPrompt: true) })
            let logits = heads.logits(hidden: out.hidden(row: prompt.token_ids.count - 1))
            for head in reference {
                assertTopK(Array(UnsafeBufferPointer(start: logits.row(head.head), count: family.target.config.vocabSize)),
                           ids: head.topk_ids, values: head.topk_logits, "prompt \(n) Medusa head \(head.head)")
            }
        }
    }

    func testTheShippedMTPModuleMatchesTheReferenceOverThePromptAndAlongItsChain() throws {
        let family = try Self.family(), golden = try Self.golden()
        let mtp = try XCTUnwrap(family.mtp, "models/specserve-code declares num_nextn_predict_layers: 1")
        let model = family.target, vocab = model.config.vocabSize
        for (n, prompt) in golden.prompts.enumerated() {
            let reference = try XCTUnwrap(prompt.mtp)
            let count = prompt.token_ids.count
            let cache = model.makeCache()
            let out = model.forward(prompt.token_ids.enumerated().map { Row(token: $1, position: $0, cache: cache, isPrompt: true) })
            let hidden = (0..<count).map { out.hidden(row: $0) }
            // Step 1 at every prompt position: hidden h_i with the next token t_{i+1} (the last one is the
            // target's own argmax, the pending token).
            XCTAssertEqual(reference.next_tokens.last, argmax(out.logits(row: count - 1)), "prompt \(n) pending token")
            let mtpCache = mtp.makeCache(capacity: count + 8)
            let step1 = mtp.forward(hidden: hidden, tokens: reference.next_tokens, positions: Array(0..<count), cache: mtpCache,
                                    logitsOfLastRow: false)
            let step1Logits = model.vocabularyLogits(step1.hidden)
            for p in 0..<count {
                assertTopK(Array(UnsafeBufferPointer(start: step1Logits.row(p), count: vocab)),
                           ids: reference.step1_topk_ids[p], values: reference.step1_topk_logits[p], "prompt \(n) MTP step 1 position \(p)")
            }
            // The chain: h' of the last position stands in for the target's hidden state one position on.
            var h = Array(UnsafeBufferPointer(start: step1.hidden.row(count - 1), count: model.config.hiddenSize))
            var chain: [Int] = []
            for (s, step) in reference.chain_steps.enumerated() {
                let row = Tensor(shape: [1, model.config.hiddenSize])
                row.data.update(from: h, count: h.count)
                let logits = model.vocabularyLogits(row).array
                assertTopK(logits, ids: step.topk_ids, values: step.topk_logits, "prompt \(n) MTP chain step \(s)")
                let drafted = argmax(logits)
                chain.append(drafted)
                if s + 1 < reference.chain_steps.count {
                    let next = mtp.forward(hidden: [h], tokens: [drafted], positions: [count + s], cache: mtpCache, logitsOfLastRow: false)
                    h = Array(UnsafeBufferPointer(start: next.hidden.row(0), count: model.config.hiddenSize))
                }
            }
            XCTAssertEqual(chain, reference.chain, "prompt \(n) MTP chain")
        }
    }

    /// DESIGN §5 on the real models: every lossless method, every draft length, the same tokens as `none`.
    func testGreedySpeculationOnTheShippedModelsIsIdenticalToPlainDecodingForEveryDraftLength() throws {
        let family = try Self.family()
        struct PromptFile: Decodable {
            struct Prompt: Decodable { let name: String, kind: String, text: String }
            let prompts: [Prompt]
        }
        let prompts = try JSONDecoder().decode(PromptFile.self, from: Data(contentsOf: Fixtures.repositoryRoot
            .appendingPathComponent("config/bench_prompts.json"))).prompts
        let chosen = [try XCTUnwrap(prompts.first { $0.kind == "completion" }), try XCTUnwrap(prompts.first { $0.kind == "edit" })]
        var accepted = [String: Int]()
        let frequent = try family.mostFrequentTokens(2048)
        let draftSubset = VocabularySubset(lmHead: family.draft!.lmHead, ids: frequent)
        let mtpSubset = VocabularySubset(lmHead: family.target.lmHead, ids: frequent)
        for prompt in chosen {
            let ids = family.tokenizer.encode(prompt.text)
            func run(_ drafter: Drafter?, k: Int) -> ([Int], SpeculationStats) {
                let g = Generation(target: family.target, prompt: ids, maxTokens: 24, stopTokens: family.stopTokens, drafter: drafter,
                                   settings: SpeculationSettings(numDraft: k, adaptive: k % 2 == 0, autoDisable: false))
                g.run()
                return (Array(g.generated), g.stats)
            }
            let plain = run(nil, k: 0).0
            XCTAssertFalse(plain.isEmpty)
            for k in 1...8 {
                var drafters: [(String, Drafter)] = [
                    ("draft", try XCTUnwrap(family.makeDrafter(.draft))),
                    ("mtp", try XCTUnwrap(family.makeDrafter(.mtp))),
                    ("ngram", try XCTUnwrap(family.makeDrafter(.ngram))),
                    // Drafting from the 2,048 most frequent tokens (the shipped config's choice).
                    ("draft@2048", DraftModelDrafter(model: family.draft!, vocabulary: draftSubset)),
                    ("mtp@2048", MTPDrafter(module: family.mtp!, vocabulary: mtpSubset)),
                ]
                // Medusa's tree replaces the draft length: a chain of min(k, 4) top-1 tokens, then sparse trees.
                let choices = (1...min(k, 4)).map { Array(repeating: 0, count: $0) }
                let tree = try MedusaTree(choices: k <= 4 ? choices : try family.medusaTree(MedusaOptions(sizes: [8 * (k - 4)]), cost: .free).choices,
                                          heads: family.medusa!.count)
                drafters.append(("medusa", MedusaDrafter(heads: family.medusa!, tree: tree, typical: nil)))
                for (name, drafter) in drafters {
                    let (tokens, stats) = run(drafter, k: k)
                    XCTAssertEqual(tokens, plain, "\(prompt.name): \(name) k=\(k)")
                    XCTAssertTrue(stats.lossless, "\(name) greedy is lossless")
                    accepted[name, default: 0] += stats.accepted
                }
            }
        }
        // The trained drafters do get tokens accepted on code (otherwise the test proves little).
        for name in ["draft", "mtp", "medusa", "draft@2048", "mtp@2048"] { XCTAssertGreaterThan(accepted[name, default: 0], 0, name) }
    }

    /// The bar for the first impression: a greedy completion of a function header (the bench's
    /// `fibonacci` prompt, which ends on code: see config/bench_prompts.json) is Python that parses.
    func testAGreedyCompletionOfAFunctionHeaderIsPythonThatParses() throws {
        let family = try Self.family()
        let prompt = "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\""
        let g = Generation(target: family.target, prompt: family.tokenizer.encode(prompt), maxTokens: 64,
                           stopTokens: family.stopTokens, drafter: try family.makeDrafter(.draft))
        g.run()
        let text = prompt + family.tokenizer.decode(Array(g.generated))
        // CPython's own parser on the longest run of whole lines that parses (the token budget may cut the last
        // block open); it must hold most of what was generated, not just the prompt.
        let script = """
            import ast, sys
            lines = sys.stdin.read().split("\\n")[:-1]
            for n in range(len(lines), 0, -1):
                try:
                    ast.parse("\\n".join(lines[:n]) + "\\n")
                    print(n, len(lines)); break
                except SyntaxError:
                    pass
            else:
                print(0, len(lines))
            """
        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        python.arguments = ["python3", "-c", script]
        let input = Pipe(), output = Pipe()
        python.standardInput = input
        python.standardOutput = output
        try python.run()
        input.fileHandleForWriting.write(Data(text.utf8))
        try input.fileHandleForWriting.close()
        python.waitUntilExit()
        XCTAssertEqual(python.terminationStatus, 0)
        let counts = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        XCTAssertEqual(counts.count, 2)
        let (parsed, complete) = (counts.first ?? 0, counts.last ?? 0)
        let promptLines = prompt.split(separator: "\n", omittingEmptySubsequences: false).count
        XCTAssertGreaterThanOrEqual(parsed, promptLines + 6, "six generated lines or more parse:\n\(text)")
        XCTAssertGreaterThanOrEqual(parsed + 2, complete, "at most the last open block fails to parse:\n\(text)")
    }
}
