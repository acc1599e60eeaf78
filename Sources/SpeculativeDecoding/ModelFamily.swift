import Foundation
import InferenceCore

// A target model and everything that can draft for it: a draft model folder, Medusa heads
// (`medusa_lm_head.safetensors` beside the target) and MTP modules (layers past `num_hidden_layers` in the
// target's checkpoint). Loading checks that a drafter speaks the target's language: the same vocabulary and
// the same token table, and says what differs when it does not (DESIGN §3).

public struct SpeculativeSetupError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public struct MedusaOptions: Sendable {
    /// An explicit tree (paths of top-k ranks); nil sizes a sparse tree from `accuracy` and the measured verify cost.
    public var choices: [[Int]]?
    /// `accuracy[h][r]`: how often head h's rank-r token is right. nil: the model's measured figures
    /// (`medusa_topk_accuracy` in its config.json, written by the training report), else `defaultAccuracy`.
    public var accuracy: [[Double]]?
    /// Tree sizes (nodes) to choose from at start-up.
    public var sizes: [Int]
    /// Typical acceptance for T > 0 (lossy); nil uses lossless rejection sampling.
    public var typical: (threshold: Float, alpha: Float)?

    public init(choices: [[Int]]? = nil, accuracy: [[Double]]? = nil, sizes: [Int] = [4, 8, 16, 24, 32, 48, 64],
                typical: (threshold: Float, alpha: Float)? = (0.09, 0.3)) {
        self.choices = choices
        self.accuracy = accuracy
        self.sizes = sizes
        self.typical = typical
    }

    /// A conservative prior when the heads come without measured accuracies: head h's top-1 is right
    /// 0.55·0.7^h of the time, each further rank a third as often as the one before it.
    public static let defaultAccuracy: [[Double]] = (0..<4).map { h in (0..<8).map { r in 0.55 * pow(0.7, Double(h)) * pow(1.0 / 3, Double(r)) } }
}

public final class ModelFamily {
    public let target: LlamaModel
    public let tokenizer: BPETokenizer
    public let stopTokens: Set<Int>
    public let draft: LlamaModel?
    public let medusa: MedusaHeads?
    public let mtp: MTPModule?
    public let targetDirectory: URL
    /// Measured Medusa accuracies by head and rank, when the model folder carries them.
    public let medusaAccuracy: [[Double]]?
    /// Occurrences of each token id in the training corpus (`token_frequency.json` beside the target), when the
    /// folder carries them: they rank tokens for drafting with a vocabulary subset.
    public let tokenCounts: [Int]?
    /// The draft model's and the MTP module's output layers cut to the most frequent tokens (nil: whole vocabulary).
    public private(set) var draftVocabulary: VocabularySubset?
    public private(set) var mtpVocabulary: VocabularySubset?
    public private(set) var medusaVocabulary: VocabularySubset?

    public init(target: LlamaModel, tokenizer: BPETokenizer, stopTokens: Set<Int>, draft: LlamaModel? = nil,
                medusa: MedusaHeads? = nil, mtp: MTPModule? = nil, targetDirectory: URL, medusaAccuracy: [[Double]]? = nil,
                tokenCounts: [Int]? = nil) {
        self.target = target
        self.tokenizer = tokenizer
        self.stopTokens = stopTokens
        self.draft = draft
        self.medusa = medusa
        self.mtp = mtp
        self.targetDirectory = targetDirectory
        self.medusaAccuracy = medusaAccuracy
        self.tokenCounts = tokenCounts
    }

    /// Loads the target folder and whatever drafters it and `draftDirectory` provide.
    public static func load(target directory: URL, draft draftDirectory: URL? = nil, pool: WorkerPool = .shared) throws -> ModelFamily {
        let target = try LlamaModel.load(directory: directory, pool: pool)
        let tokenizer = try BPETokenizer(contentsOf: directory.appendingPathComponent("tokenizer.json"))
        guard tokenizer.vocabSize <= target.config.vocabSize else {
            throw SpeculativeSetupError("\(directory.path)/tokenizer.json has \(tokenizer.vocabSize) tokens but config.json vocab_size is \(target.config.vocabSize)")
        }
        var stops = Set(target.config.eosTokenIds)
        if let eot = tokenizer.tokenID("<|endoftext|>") { stops.insert(eot) }

        var draft: LlamaModel?
        if let draftDirectory {
            let model = try LlamaModel.load(directory: draftDirectory, pool: pool)
            let draftTokenizer = try BPETokenizer(contentsOf: draftDirectory.appendingPathComponent("tokenizer.json"))
            try checkSameLanguage(target: target.config, tokenizer, draft: model.config, draftTokenizer,
                                  targetPath: directory.path, draftPath: draftDirectory.path)
            // The draft's decode steps are bound by the bytes they stream: its matrices stream as BF16 when
            // exact (bitwise the same outputs).
            model.streamMatricesAsBF16()
            draft = model
        }
        var medusa: MedusaHeads?
        var accuracy: [[Double]]?
        if FileManager.default.fileExists(atPath: directory.appendingPathComponent("medusa_lm_head.safetensors").path) {
            medusa = try MedusaHeads.load(target: target, directory: directory)
            // Like the draft's, the heads' steps are bound by the bytes they stream.
            medusa?.streamMatricesAsBF16()
            accuracy = try medusaAccuracy(in: directory.appendingPathComponent("config.json"))
        }
        let mtp = target.config.numNextnPredictLayers > 0 ? try MTPModule.load(target: target, directory: directory) : nil
        mtp?.streamMatricesAsBF16()
        let counts = try tokenCounts(in: directory.appendingPathComponent(tokenFrequencyFile), vocabSize: target.config.vocabSize)
        return ModelFamily(target: target, tokenizer: tokenizer, stopTokens: stops, draft: draft, medusa: medusa, mtp: mtp,
                           targetDirectory: directory, medusaAccuracy: accuracy, tokenCounts: counts)
    }

    /// The token counts file beside the target (written by tools/train/token_frequency.py).
    public static let tokenFrequencyFile = "token_frequency.json"

    /// `counts` of the token counts file: one non-negative count per token id; nil when there is no such file.
    static func tokenCounts(in file: URL, vocabSize: Int) throws -> [Int]? {
        guard FileManager.default.fileExists(atPath: file.path) else { return nil }
        guard let object = try? JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any] else {
            throw SpeculativeSetupError("\(file.path): not a JSON object")
        }
        guard let list = object["counts"] as? [Any] else {
            throw SpeculativeSetupError("\(file.path): key 'counts': missing or not a list")
        }
        let counts = list.compactMap { ($0 as? NSNumber).flatMap { Int(exactly: $0.doubleValue) } }
        guard counts.count == list.count, counts.allSatisfy({ $0 >= 0 }) else {
            throw SpeculativeSetupError("\(file.path): key 'counts': expected non-negative integers")
        }
        guard counts.count == vocabSize else {
            throw SpeculativeSetupError("\(file.path): key 'counts': \(counts.count) counts for a vocabulary of \(vocabSize)")
        }
        return counts
    }

    /// The `n` most frequent token ids of the training corpus, most frequent first (ties: lower id first).
    public func mostFrequentTokens(_ n: Int) throws -> [Int] {
        guard let tokenCounts else {
            throw SpeculativeSetupError("a draft vocabulary subset needs \(targetDirectory.path)/\(ModelFamily.tokenFrequencyFile) (token counts of the training corpus)")
        }
        guard (1...tokenCounts.count).contains(n) else {
            throw SpeculativeSetupError("a draft vocabulary of \(n) tokens: the vocabulary has \(tokenCounts.count)")
        }
        return Array(tokenCounts.indices.sorted { tokenCounts[$0] != tokenCounts[$1] ? tokenCounts[$0] > tokenCounts[$1] : $0 < $1 }.prefix(n))
    }

    /// `method` (draft, mtp or medusa) drafts from only the `n` most frequent tokens; nil or the whole vocabulary's
    /// size scores every token. Set at load, before requests run. Medusa heads need layout v2 (the subset is one of
    /// the shared lm_head; v1 heads have projections of their own).
    public func useVocabularySubset(_ n: Int?, for method: SpeculativeMethod) throws {
        let lmHead: Tensor?
        switch method {
        case .draft: lmHead = draft?.lmHead
        case .mtp: lmHead = mtp == nil ? nil : target.lmHead
        case .medusa:
            if let n, n != target.lmHead.rows, let medusa, medusa.layout != .v2SharedHead {
                throw SpeculativeSetupError("the Medusa heads in \(targetDirectory.path) have projections of their own (layout v1); "
                                            + "a vocabulary subset is one of the shared lm_head (layout v2)")
            }
            lmHead = medusa == nil ? nil : target.lmHead
        case .none, .ngram: throw SpeculativeSetupError("method '\(method.rawValue)' does not draft through an lm_head of its own")
        }
        var subset: VocabularySubset?
        if let n, let lmHead, n != lmHead.rows { subset = VocabularySubset(lmHead: lmHead, ids: try mostFrequentTokens(n), pool: target.pool) }
        switch method {
        case .draft: draftVocabulary = subset
        case .mtp: mtpVocabulary = subset
        default: medusaVocabulary = subset
        }
    }

    /// The subset size `method` drafts from when nobody chose one (the CLI's default, as config/default.json writes
    /// it): 2,048 tokens, or the whole vocabulary if smaller; every token (nil) when the folder does not rank its
    /// tokens, and for Medusa heads with projections of their own (v1), which a subset of the lm_head cannot serve.
    public func defaultVocabularySubsetSize(for method: SpeculativeMethod) -> Int? {
        if method == .medusa, let medusa, medusa.layout != .v2SharedHead { return nil }
        return tokenCounts == nil ? nil : min(ModelFamily.defaultVocabularySubsetSize, target.config.vocabSize)
    }

    /// 2,048: the size config/default.json gives every drafter that drafts through an lm_head.
    public static let defaultVocabularySubsetSize = 2048

    /// The drafters' vocabulary subsets by method name, for load lines.
    public var vocabularySubsets: [(method: String, subset: VocabularySubset)] {
        [("draft", draftVocabulary), ("mtp", mtpVocabulary), ("medusa", medusaVocabulary)].compactMap { name, subset in
            subset.map { (name, $0) }
        }
    }

    /// The optional `medusa_topk_accuracy` key: one list of probabilities in [0, 1] per head.
    static func medusaAccuracy(in config: URL) throws -> [[Double]]? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(contentsOf: config)) as? [String: Any],
              let value = object["medusa_topk_accuracy"] else { return nil }
        guard let rows = value as? [[Any]],
              let table = Optional(rows.map { $0.compactMap { ($0 as? NSNumber)?.doubleValue } }),
              zip(rows, table).allSatisfy({ $0.count == $1.count }), table.joined().allSatisfy({ (0...1).contains($0) }) else {
            throw SpeculativeSetupError("\(config.path): key 'medusa_topk_accuracy': expected a list of lists of probabilities in [0, 1]")
        }
        return table
    }

    /// The draft's vocabulary and token table must be the target's: otherwise its token ids mean other text.
    static func checkSameLanguage(target: LlamaConfig, _ targetTokenizer: BPETokenizer, draft: LlamaConfig,
                                  _ draftTokenizer: BPETokenizer, targetPath: String, draftPath: String) throws {
        guard target.vocabSize == draft.vocabSize else {
            throw SpeculativeSetupError("draft model \(draftPath) has vocab_size \(draft.vocabSize); the target \(targetPath) has \(target.vocabSize)")
        }
        guard targetTokenizer.vocabSize == draftTokenizer.vocabSize else {
            throw SpeculativeSetupError("draft tokenizer \(draftPath)/tokenizer.json has \(draftTokenizer.vocabSize) tokens; the target's has \(targetTokenizer.vocabSize)")
        }
        for id in 0..<targetTokenizer.vocabSize where targetTokenizer.tokenString(id) != draftTokenizer.tokenString(id) {
            throw SpeculativeSetupError("draft tokenizer \(draftPath)/tokenizer.json differs from the target's at id \(id): "
                + "'\(draftTokenizer.tokenString(id) ?? "none")' there, '\(targetTokenizer.tokenString(id) ?? "none")' in the target")
        }
    }

    /// The methods this family can run.
    public var methods: [SpeculativeMethod] {
        var m: [SpeculativeMethod] = [.none, .ngram]
        if draft != nil { m.append(.draft) }
        if medusa != nil { m.append(.medusa) }
        if mtp != nil { m.append(.mtp) }
        return m
    }

    /// The Medusa tree for this machine: explicit choices, or the sparse tree whose size gives the best expected
    /// tokens per step over the measured verify cost.
    public func medusaTree(_ options: MedusaOptions, cost: CostModel) throws -> MedusaTree {
        guard let medusa else { throw SpeculativeSetupError("no Medusa heads beside \(targetDirectory.path)") }
        if let choices = options.choices {
            do { return try MedusaTree(choices: choices, heads: medusa.count) } catch let e as MedusaTree.Invalid {
                throw SpeculativeSetupError("medusa tree: \(e.description)")
            }
        }
        let accuracy = Array((options.accuracy ?? medusaAccuracy ?? MedusaOptions.defaultAccuracy).prefix(medusa.count))
        let best = MedusaTree.chooseSize(accuracy: accuracy, sizes: options.sizes) { cost.verifyCost(rows: $0) }
        let choices = best.size > 0 ? best.choices : [[0]]
        return try MedusaTree(choices: choices, heads: medusa.count)
    }

    /// A fresh drafter for one request.
    public func makeDrafter(_ method: SpeculativeMethod, medusaTree: MedusaTree? = nil, medusaOptions: MedusaOptions = .init(),
                            ngram: (min: Int, max: Int) = (1, 3), pMin: Float = 0) throws -> Drafter? {
        switch method {
        case .none: return nil
        case .ngram: return NGramDrafter(minN: ngram.min, maxN: ngram.max)
        case .draft:
            guard let draft else { throw SpeculativeSetupError("method 'draft' needs a draft model; none is configured") }
            return DraftModelDrafter(model: draft, pMin: pMin, vocabulary: draftVocabulary)
        case .mtp:
            guard let mtp else { throw SpeculativeSetupError("method 'mtp' needs num_nextn_predict_layers ≥ 1 in \(targetDirectory.path)/config.json") }
            return MTPDrafter(module: mtp, vocabulary: mtpVocabulary)
        case .medusa:
            guard let medusa else { throw SpeculativeSetupError("method 'medusa' needs medusa_lm_head.safetensors beside \(targetDirectory.path)") }
            let tree = try medusaTree ?? self.medusaTree(medusaOptions, cost: .free)
            return MedusaDrafter(heads: medusa, tree: tree, typical: medusaOptions.typical, vocabulary: medusaVocabulary)
        }
    }
}
