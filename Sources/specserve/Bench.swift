import ArgumentParser
import Foundation
import InferenceCore
import InferenceServer
import SpeculativeDecoding

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Race the speculative methods on the bench prompts: tokens/s, speedup over none in the same run, acceptance, identical-to-greedy.")

    @Option(help: "Target model folder.")
    var model: String
    @Option(name: .customLong("draft-model"), help: "Draft model folder (enables the draft method).")
    var draftModel: String?
    @OptionGroup var vocabulary: DraftVocabularyOptions
    @OptionGroup var weights: WeightStreamingOption
    @Option(help: "Comma-separated methods (default: every method the models support).")
    var methods: String?
    @Option(help: "Prompt set (JSON with a prompts array of {name, text}).")
    var prompts = "config/bench_prompts.json"
    @Option(help: "Only the prompts of this kind (the bench set has 'completion' and 'edit').")
    var kind: String?
    @Option(name: .customLong("max-tokens"))
    var maxTokens = 128
    @Option(help: "Repeats per method (the median is reported).")
    var repeats = 3
    @Option(help: "0 decodes greedily (and checks outputs against none).")
    var temperature: Float = 0
    @Option(name: .customLong("num-draft"), help: "Most draft tokens per step; a comma-separated list races each chain method (draft, mtp, ngram) at every length in the same run.")
    var numDraft = String(SpeculationSettings.defaultNumDraft)
    @Option(name: .customLong("synthetic-acceptance"), help: "Synthetic mode: accept each draft position with this probability (no draft cost).")
    var syntheticAcceptance: Double?
    @Flag(name: .customLong("fixed-length"), help: "Keep the draft length fixed (no adaptation, no auto-off).")
    var fixedLength = false
    @Option(name: .customLong("break-even"), help: "Auto-off: switch a request's speculation off when its expected speedup falls below this.")
    var breakEven = SpeculationSettings().breakEven
    @Option(name: .customLong("warmup-steps"), help: "Auto-off: speculative steps before the first decision.")
    var warmupSteps = SpeculationSettings().warmupSteps
    @Option(name: .customLong("retry-after"), help: "Auto-off: plain steps before a request tries speculation again (doubling after each failed try; 0: never).")
    var retryAfter = SpeculationSettings().retryAfter
    @Option(name: .customLong("p-min"), help: "Draft model: stop a chain when its top probability falls below this.")
    var pMin: Float = 0
    @Option(help: "Kernel threads (default: all cores).")
    var threads: Int?
    @Option(help: "Also write the report as JSON to this file.")
    var json: String?

    func run() throws {
        guard let lengths = BenchmarkOptions.draftLengths(numDraft) else {
            throw ValidationError("--num-draft takes lengths in 1...16, comma-separated (got '\(numDraft)')")
        }
        let family = try loadFamily(model, draft: draftModel, threads: threads, vocabulary: vocabulary, weights: weights)
        let texts = try loadPrompts(prompts, kind: kind)
        let tokenized = texts.map { family.tokenizer.encode($0) }
        let wanted = try methods.map { list in
            try list.split(separator: ",").map { name -> SpeculativeMethod in
                guard let m = SpeculativeMethod(rawValue: String(name)) else { throw ValidationError("unknown method '\(name)'") }
                guard family.methods.contains(m) || syntheticAcceptance != nil else {
                    throw CLIError("method '\(name)' is not available for \(model) (have: \(family.methods.map(\.rawValue).joined(separator: ", ")))")
                }
                return m
            }
        } ?? family.methods

        // Costs on this machine: verify by rows, and each drafter's step, for auto-off and the Medusa tree size.
        printError("calibrating verify and draft costs…")
        let verify = CostModel.measure(target: family.target)
        let tree = family.medusa != nil ? try family.medusaTree(MedusaOptions(), cost: verify) : nil
        if let tree { printError("medusa tree: \(tree.nodes.count) nodes, depth \(tree.maxDepth) (sized to this machine's verify cost)") }
        printError("verify cost relative to one decode step: "
                   + (2...8).map { String(format: "%d rows %.2f×", $0, verify.verifyCost(rows: $0)) }.joined(separator: ", "))

        var options = BenchmarkOptions()
        options.maxTokens = maxTokens
        options.repeats = repeats
        options.sampling = SamplingParameters(temperature: temperature)
        options.numDraft = lengths[0]
        options.syntheticAcceptance = syntheticAcceptance
        options.adaptive = !fixedLength && syntheticAcceptance == nil
        options.autoDisable = !fixedLength && syntheticAcceptance == nil
        options.breakEven = breakEven
        options.warmupSteps = warmupSteps
        options.retryAfter = retryAfter
        var contenders: [SpeculativeBenchmark.Contender] = []
        if syntheticAcceptance != nil {
            contenders = [.init(name: "synthetic", cost: verify) { nil }]
        } else {
            for m in wanted where m != .none {
                var cost = verify
                cost.draftPerToken = DraftCost.measure(m, family: family, medusaTree: tree)
                if cost.draftPerToken > 0 { printError(String(format: "%@: one draft token costs %.3f× a decode step", m.rawValue, cost.draftPerToken)) }
                // A Medusa tree has its own depth; the chain methods race at every length asked for.
                let raced = m == .medusa || lengths.count == 1 ? [nil] : lengths.map(Optional.some)
                for k in raced {
                    contenders.append(.init(name: k.map { "\(m.rawValue) k=\($0)" } ?? m.rawValue, cost: cost, numDraft: k) {
                        try? family.makeDrafter(m, medusaTree: tree, pMin: pMin)
                    })
                }
            }
        }
        let report = SpeculativeBenchmark(target: family.target, stopTokens: family.stopTokens, drafters: contenders)
            .run(prompts: tokenized, options: options) { printError($0) }
        writeOut(report.table + "\n")
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(report).write(to: URL(fileURLWithPath: json))
        }
    }
}

struct PromptFile: Decodable {
    struct Prompt: Decodable { let name: String; let text: String; let kind: String? }
    let prompts: [Prompt]
}

func loadPrompts(_ path: String, kind: String? = nil) throws -> [String] {
    do {
        let file = try JSONDecoder().decode(PromptFile.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        guard !file.prompts.isEmpty else { throw CLIError("\(path): key 'prompts' is empty") }
        let chosen = file.prompts.filter { kind == nil || $0.kind == kind }
        guard !chosen.isEmpty else {
            let kinds = Set(file.prompts.compactMap(\.kind)).sorted().joined(separator: ", ")
            throw CLIError("\(path): no prompt of kind '\(kind ?? "")' (kinds: \(kinds.isEmpty ? "none" : kinds))")
        }
        return chosen.map(\.text)
    } catch let error as DecodingError {
        throw CLIError("\(path): \(describe(error))")
    } catch let error as CLIError {
        throw error
    } catch {
        throw CLIError("\(path): cannot be read (\(error.localizedDescription))")
    }
}

func describe(_ error: DecodingError) -> String {
    func path(_ p: [CodingKey]) -> String { p.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().trimmingCharacters(in: CharacterSet(charactersIn: ".")) }
    switch error {
    case let .keyNotFound(key, ctx): return "key '\(path(ctx.codingPath + [key]))' is missing"
    case let .typeMismatch(_, ctx): return "key '\(path(ctx.codingPath))': \(ctx.debugDescription)"
    case let .valueNotFound(_, ctx): return "key '\(path(ctx.codingPath))' is null"
    case let .dataCorrupted(ctx): return "not valid JSON (\(ctx.debugDescription))"
    @unknown default: return "\(error)"
    }
}
