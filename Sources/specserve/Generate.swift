import ArgumentParser
import Foundation
import InferenceCore
import InferenceServer
import SpeculativeDecoding

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Complete a prompt with a model folder (HF layout) and print the speed.")

    @Option(help: "Model folder with config.json, model.safetensors and tokenizer.json.")
    var model: String
    @Option(help: "The text to continue.")
    var prompt: String
    @Option(name: .customLong("max-tokens"), help: "Most tokens to generate.")
    var maxTokens = 128
    @Option(help: "0 decodes greedily.")
    var temperature: Float = 0
    @Option(name: .customLong("top-k"), help: "Keep the k most likely tokens (0: off).")
    var topK = 0
    @Option(name: .customLong("top-p"), help: "Nucleus sampling mass (1: off).")
    var topP: Float = 1
    @Option(name: .customLong("min-p"), help: "Drop tokens below min-p × the top probability (0: off).")
    var minP: Float = 0
    @Option(help: "Seed for reproducible sampling.")
    var seed: UInt64?
    @Option(help: "Kernel threads (default: all cores).")
    var threads: Int?
    @Option(help: "Speculative method: none, ngram, draft, medusa or mtp.")
    var speculative: SpeculativeMethod = .none
    @Option(name: .customLong("num-draft"), help: "Most draft tokens per step.")
    var numDraft = SpeculationSettings.defaultNumDraft
    @Option(name: .customLong("draft-model"), help: "Draft model folder (for --speculative draft).")
    var draftModel: String?
    @OptionGroup var vocabulary: DraftVocabularyOptions
    @OptionGroup var weights: WeightStreamingOption

    func validate() throws {
        guard maxTokens > 0 else { throw ValidationError("--max-tokens must be positive") }
        guard temperature >= 0 else { throw ValidationError("--temperature must be ≥ 0") }
        guard topP > 0 && topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
        guard (1...16).contains(numDraft) else { throw ValidationError("--num-draft must be in 1...16") }
        if speculative == .draft && draftModel == nil { throw ValidationError("--speculative draft needs --draft-model DIR") }
    }

    func run() throws {
        let family = try loadFamily(model, draft: draftModel, threads: threads, vocabulary: vocabulary, weights: weights)
        let tokens = family.tokenizer.encode(prompt)
        guard !tokens.isEmpty else { throw ValidationError("the prompt encodes to no tokens") }
        guard tokens.count < family.target.config.maxPositionEmbeddings else {
            throw CLIError("the prompt is \(tokens.count) tokens; the model's context is \(family.target.config.maxPositionEmbeddings)")
        }
        // Speculation is judged by what it costs on this machine, as in `serve` and `bench`: the verify cost by rows
        // and the method's draft cost decide the chain length each step, auto-off and the Medusa tree's size.
        var cost = CostModel.free
        var tree: MedusaTree?
        if speculative != .none {
            _ = try family.makeDrafter(speculative)  // a method the models cannot run fails now, not after calibrating
            let start = monotonicSeconds()
            cost = CostModel.measure(target: family.target)
            if speculative == .medusa { tree = try family.medusaTree(MedusaOptions(), cost: cost) }
            cost.draftPerToken = DraftCost.measure(speculative, family: family, medusaTree: tree)
            printError(String(format: "calibrated in %.2f s: verify of 2/4/8 rows %.2f×/%.2f×/%.2f× a decode step, one token drafted by %@ %.3f×%@",
                              monotonicSeconds() - start, cost.verifyCost(rows: 2), cost.verifyCost(rows: 4), cost.verifyCost(rows: 8),
                              speculative.rawValue, cost.draftPerToken, tree.map { ", medusa tree of \($0.nodes.count) nodes" } ?? ""))
        }
        let drafter = try family.makeDrafter(speculative, medusaTree: tree)
        let generation = Generation(
            target: family.target, prompt: tokens, maxTokens: maxTokens,
            sampling: SamplingParameters(temperature: temperature, topK: topK, topP: topP, minP: minP, seed: seed),
            stopTokens: family.stopTokens, drafter: drafter, settings: SpeculationSettings(numDraft: numDraft, costModel: cost))
        var decoder = IncrementalDecoder(tokenizer: family.tokenizer)
        writeOut(prompt)
        generation.run { newTokens in
            for t in newTokens { writeOut(decoder.append(t)) }
            return true
        }
        writeOut(decoder.finish() + "\n")
        let n = generation.generated.count
        let s = generation.stats
        printError(String(format: "\nprompt: %d tokens in %.1f ms (%.1f tokens/s) | generation: %d tokens, %.1f tokens/s (%@)",
                          tokens.count, generation.promptSeconds * 1e3, Double(tokens.count) / generation.promptSeconds,
                          n, Double(max(n - 1, 0)) / max(generation.decodeSeconds + s.draftSeconds, 1e-9),
                          (generation.finishReason ?? .length).rawValue))
        if speculative != .none {
            printError(String(format: "speculation (%@%@): %d steps, %d drafted, %d accepted (%.0f %%), mean acceptance length %.2f, draft %.1f ms, verify %.1f ms%@",
                              speculative.rawValue, s.lossless ? "" : ", lossy", s.steps, s.drafted, s.accepted, 100 * s.acceptanceRate,
                              s.meanAcceptanceLength, s.draftSeconds * 1e3, s.verifySeconds * 1e3,
                              s.autoDisabled ? ", switched off (did not pay)" : ""))
        }
    }
}

extension SpeculativeMethod: ExpressibleByArgument {}

/// Loads a model folder and its drafters, turning load errors into one line that names the file and the key.
func loadFamily(_ path: String, draft: String?, threads: Int?, vocabulary: DraftVocabularyOptions = .init(),
                weights: WeightStreamingOption = .init()) throws -> ModelFamily {
    let directory = URL(fileURLWithPath: path)
    guard FileManager.default.fileExists(atPath: directory.appendingPathComponent("config.json").path) else {
        throw CLIError("\(path): no config.json here — is this a model folder? (see models/ and tools/train/README.md)")
    }
    let pool = threads.map { WorkerPool(threadCount: $0) } ?? .shared
    let start = monotonicSeconds()
    do {
        let family = try ModelFamily.load(target: directory, draft: draft.map { URL(fileURLWithPath: $0) }, pool: pool)
        try weights.apply(to: family.target, path: path)
        for (method, option) in [(SpeculativeMethod.draft, vocabulary.draftVocabulary), (.mtp, vocabulary.mtpVocabulary),
                                 (.medusa, vocabulary.medusaVocabulary)] {
            do { try family.useVocabularySubset(vocabulary.size(option, family, for: method), for: method) } catch {
                throw CLIError("--\(method.rawValue)-vocabulary: \(error)")
            }
        }
        let subsets = family.vocabularySubsets.map { ", \($0.method) drafts from the \($0.subset.ids.count) most frequent tokens" }.joined()
        printError(String(format: "loaded %@: %.1fM parameters, %.1f MB of weights streamed per token (%@), methods %@, %.2f s, %d kernel threads, %@%@",
                          path, Double(family.target.parameterCount) / 1e6, Double(family.target.weightBytes) / 1e6, weights.dtype,
                          family.methods.map(\.rawValue).joined(separator: "/"), monotonicSeconds() - start, pool.threadCount,
                          BLASCoreChoice.kernelsDescription(), subsets))
        return family
    } catch let error as ModelLoadError {
        throw CLIError(error.description)
    } catch let error as TokenizerLoadError {
        throw CLIError(error.description)
    } catch let error as SpeculativeSetupError {
        throw CLIError(error.description)
    }
}

/// `--dtype`: how the target's weights are streamed by decode and verify (as the server config's `models[].dtype`).
struct WeightStreamingOption: ParsableArguments {
    @Option(help: "f32, or bf16: stream the target's matrices as BF16 (a BF16 checkpoint only; bitwise the same outputs, half the bytes per decode step).")
    var dtype = "f32"

    func validate() throws {
        guard dtype == "f32" || dtype == "bf16" else { throw ValidationError("--dtype must be f32 or bf16") }
    }

    func apply(to model: LlamaModel, path: String) throws {
        if dtype == "bf16" && !model.streamMatricesAsBF16() {
            throw CLIError("--dtype bf16: \(path) holds weights that are not exactly BF16, so streaming them as BF16 would change them: use --dtype f32")
        }
    }
}

/// Drafting with the most frequent tokens only (frequency-ranked drafting; needs token_frequency.json in the folder).
/// The default is the shipped config's: 2,048 tokens when the folder ranks them, else every token
/// (`ModelFamily.defaultVocabularySubsetSize(for:)`).
struct DraftVocabularyOptions: ParsableArguments {
    @Option(name: .customLong("draft-vocabulary"), help: "The draft model scores only this many most frequent tokens (0: all; default 2048 when the model folder has token_frequency.json).")
    var draftVocabulary: Int?
    @Option(name: .customLong("mtp-vocabulary"), help: "The MTP module scores only this many most frequent tokens (0: all; default as --draft-vocabulary).")
    var mtpVocabulary: Int?
    @Option(name: .customLong("medusa-vocabulary"), help: "Medusa heads of layout v2 score only this many most frequent tokens (0: all; default as --draft-vocabulary; v1 heads score all).")
    var medusaVocabulary: Int?

    /// The subset size for `method`: the option as given (0: every token), or the family's default.
    func size(_ option: Int?, _ family: ModelFamily, for method: SpeculativeMethod) -> Int? {
        guard let option else { return family.defaultVocabularySubsetSize(for: method) }
        return option == 0 ? nil : option
    }
}
