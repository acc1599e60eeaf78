import Foundation

// Reading tokenizer.json: what it says, checked against what this tokenizer implements. Anything that
// would make encodings differ from HF `tokenizers` (another model type, a normalizer, byte fallback,
// dropout, other pre-tokenizers, decoders or post-processors, truncation, padding) fails here with a
// message naming the file and the key.

/// A tokenizer.json that cannot be loaded: `message` names the file and the JSON key.
public struct TokenizerLoadError: Error, CustomStringConvertible, Sendable, Equatable {
    public let message: String
    public var description: String { message }
}

/// One step of the post-processor, applied to the ids of a single sequence.
enum PostProcessorStep: Sendable, Equatable {
    /// `TemplateProcessing`'s `single` template: each element is either the sequence or fixed ids.
    case template([TemplateElement])
}

enum TemplateElement: Sendable, Equatable {
    case sequence
    case ids([Int])
}

/// The content of a supported tokenizer.json.
struct TokenizerDefinition {
    var vocab: [String: Int]
    var merges: [(String, String)]
    var ignoreMerges: Bool
    var addedTokens: [AddedToken]
    var preTokenizer: ByteLevelPreTokenizer
    var postProcessor: [PostProcessorStep]

    /// The GPT-2 split pattern, the only one a `Split` pre-tokenizer may use.
    static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    /// Ids beyond this are taken for a broken file rather than allocated for.
    static let maxTokenID = 1 << 24

    init(jsonData: Data, source: String) throws {
        let reader = JSONReader(source: source)
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: jsonData, options: [])
        } catch {
            throw reader.error("is not valid JSON (\(error.localizedDescription))")
        }
        guard let root = parsed as? [String: Any] else { throw reader.error("the top level is not a JSON object") }

        for key in ["truncation", "padding"] where !reader.isNull(root[key]) {
            throw reader.error("\(key) is set, which is not supported (it must be null)")
        }
        if !reader.isNull(root["normalizer"]) {
            let type = (root["normalizer"] as? [String: Any])?["type"] as? String ?? "?"
            throw reader.error("normalizer.type '\(type)' is not supported (only a null normalizer)")
        }

        let model = try reader.object(root["model"], "model")
        let modelType = try reader.string(model["type"], "model.type")
        guard modelType == "BPE" else { throw reader.error("model.type '\(modelType)' is not supported (only BPE)") }
        if let dropout = model["dropout"], !reader.isNull(dropout) {
            guard let value = dropout as? Double, value == 0 else {
                throw reader.error("model.dropout \(dropout) is not supported (only null or 0)")
            }
        }
        if try reader.bool(model["byte_fallback"], "model.byte_fallback", default: false) {
            throw reader.error("model.byte_fallback true is not supported")
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let affix = try reader.optionalString(model[key], "model.\(key)"), !affix.isEmpty {
                throw reader.error("model.\(key) '\(affix)' is not supported (only null)")
            }
        }
        ignoreMerges = try reader.bool(model["ignore_merges"], "model.ignore_merges", default: false)

        let vocabObject = try reader.object(model["vocab"], "model.vocab")
        var vocab: [String: Int] = [:]
        vocab.reserveCapacity(vocabObject.count)
        var tokensByID: [Int: String] = [:]
        for (token, value) in vocabObject {
            let id = try reader.tokenID(value, "model.vocab['\(token)']")
            if let other = tokensByID.updateValue(token, forKey: id) {
                throw reader.error("model.vocab gives id \(id) to both '\(other)' and '\(token)'")
            }
            vocab[token] = id
        }
        self.vocab = vocab
        // With a token for every byte, BPE never needs `unk_token` (nor `fuse_unk`); without one, the
        // reference would drop or replace bytes, which this tokenizer does not do.
        for byte in 0..<256 {
            let token = String(Character(Unicode.Scalar(ByteLevelAlphabet.scalarForByte[byte])!))
            guard vocab[token] != nil else {
                let hex = String(byte, radix: 16, uppercase: true)
                throw reader.error("model.vocab has no token for byte 0x\(hex.count < 2 ? "0" + hex : hex) ('\(token)'), which byte-level BPE needs")
            }
        }
        _ = try reader.optionalString(model["unk_token"], "model.unk_token")

        guard let mergeList = model["merges"] as? [Any] else { throw reader.error("model.merges is missing or not an array") }
        var merges: [(String, String)] = []
        merges.reserveCapacity(mergeList.count)
        for (index, entry) in mergeList.enumerated() {
            let key = "model.merges[\(index)]"
            if let line = entry as? String {
                let parts = line.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw reader.error("\(key) '\(line)' is not two tokens separated by a space") }
                merges.append((String(parts[0]), String(parts[1])))
            } else if let pair = entry as? [Any], pair.count == 2, let left = pair[0] as? String, let right = pair[1] as? String {
                merges.append((left, right))
            } else {
                throw reader.error("\(key) is neither \"a b\" nor [\"a\", \"b\"]")
            }
            let (left, right) = merges[merges.count - 1]
            for part in [left, right, left + right] where vocab[part] == nil {
                throw reader.error("\(key) ('\(left)', '\(right)'): '\(part)' is not in model.vocab")
            }
        }
        self.merges = merges

        addedTokens = try Self.readAddedTokens(root["added_tokens"], vocab: vocab, tokensByID: tokensByID, reader: reader)
        preTokenizer = try Self.readPreTokenizer(root["pre_tokenizer"], reader: reader)

        let decoder = try reader.object(root["decoder"], "decoder")
        let decoderType = try reader.string(decoder["type"], "decoder.type")
        guard decoderType == "ByteLevel" else {
            throw reader.error("decoder.type '\(decoderType)' is not supported (only ByteLevel)")
        }

        // A template's fixed ids must be tokens: every id encode gives is then below vocabSize, which a model family
        // checks against the embedding rows.
        let tokenIDs = Set(tokensByID.keys).union(addedTokens.map(\.id))
        postProcessor = try Self.readPostProcessor(root["post_processor"], "post_processor", tokenIDs: tokenIDs, reader: reader)
    }

    /// Added tokens, whose ids must be the ones `tokenizers` gives them on loading: a token the vocabulary
    /// has keeps its vocabulary id, the others follow the vocabulary in file order.
    private static func readAddedTokens(_ value: Any?, vocab: [String: Int], tokensByID: [Int: String],
                                        reader: JSONReader) throws -> [AddedToken] {
        guard !reader.isNull(value) else { return [] }
        guard let list = value as? [Any] else { throw reader.error("added_tokens is not an array") }
        var tokens: [AddedToken] = []
        var contents = Set<[UInt8]>()
        var nextID = vocab.count
        for (index, entry) in list.enumerated() {
            let key = "added_tokens[\(index)]"
            let object = try reader.object(entry, key)
            let content = try reader.string(object["content"], "\(key).content")
            guard !content.isEmpty else { throw reader.error("\(key).content is empty") }
            guard contents.insert(Array(content.utf8)).inserted else {
                throw reader.error("\(key).content '\(content)' appears twice")
            }
            let id = try reader.tokenID(object["id"], "\(key).id")
            let expected: Int
            if let vocabID = vocab[content] {
                expected = vocabID
            } else {
                expected = nextID
                nextID += 1
                if let clash = tokensByID[expected] {
                    throw reader.error("\(key) '\(content)' would get id \(expected), which model.vocab gives to '\(clash)'")
                }
            }
            guard id == expected else {
                throw reader.error("\(key).id \(id) of '\(content)' is not the id tokenizers assigns it (\(expected))")
            }
            tokens.append(AddedToken(
                id: id, content: content,
                special: try reader.bool(object["special"], "\(key).special", default: false),
                singleWord: try reader.bool(object["single_word"], "\(key).single_word", default: false),
                lstrip: try reader.bool(object["lstrip"], "\(key).lstrip", default: false),
                rstrip: try reader.bool(object["rstrip"], "\(key).rstrip", default: false),
                normalized: try reader.bool(object["normalized"], "\(key).normalized", default: true)))
        }
        return tokens
    }

    private static func readPreTokenizer(_ value: Any?, reader: JSONReader) throws -> ByteLevelPreTokenizer {
        let supported = "(ByteLevel, or a Sequence of a GPT-2 pattern Split and ByteLevel)"
        guard !reader.isNull(value) else { throw reader.error("pre_tokenizer is null, which is not supported \(supported)") }
        let object = try reader.object(value, "pre_tokenizer")
        let type = try reader.string(object["type"], "pre_tokenizer.type")
        switch type {
        case "ByteLevel":
            return try byteLevel(object, "pre_tokenizer", splitFirst: false, reader: reader)
        case "Sequence":
            guard let steps = object["pretokenizers"] as? [Any] else {
                throw reader.error("pre_tokenizer.pretokenizers is missing or not an array")
            }
            let types = try steps.enumerated().map { index, step in
                try reader.string(try reader.object(step, "pre_tokenizer.pretokenizers[\(index)]")["type"],
                                  "pre_tokenizer.pretokenizers[\(index)].type")
            }
            if types == ["ByteLevel"] {
                return try byteLevel(steps[0] as! [String: Any], "pre_tokenizer.pretokenizers[0]", splitFirst: false, reader: reader)
            }
            guard types == ["Split", "ByteLevel"] else {
                throw reader.error("pre_tokenizer.pretokenizers types \(types) are not supported \(supported)")
            }
            let split = steps[0] as! [String: Any]
            let pattern = try reader.object(split["pattern"], "pre_tokenizer.pretokenizers[0].pattern")
            guard pattern.count == 1, let regex = pattern["Regex"] as? String, regex == gpt2Pattern else {
                throw reader.error("pre_tokenizer.pretokenizers[0].pattern is not the GPT-2 split regex, which is the only one supported")
            }
            let behavior = try reader.string(split["behavior"], "pre_tokenizer.pretokenizers[0].behavior")
            guard behavior == "Isolated" else {
                throw reader.error("pre_tokenizer.pretokenizers[0].behavior '\(behavior)' is not supported (only Isolated)")
            }
            if try reader.bool(split["invert"], "pre_tokenizer.pretokenizers[0].invert", default: false) {
                throw reader.error("pre_tokenizer.pretokenizers[0].invert true is not supported")
            }
            return try byteLevel(steps[1] as! [String: Any], "pre_tokenizer.pretokenizers[1]", splitFirst: true, reader: reader)
        default:
            throw reader.error("pre_tokenizer.type '\(type)' is not supported \(supported)")
        }
    }

    private static func byteLevel(_ object: [String: Any], _ key: String, splitFirst: Bool, reader: JSONReader) throws -> ByteLevelPreTokenizer {
        ByteLevelPreTokenizer(
            splitFirst: splitFirst,
            addPrefixSpace: try reader.bool(object["add_prefix_space"], "\(key).add_prefix_space", default: true),
            useRegex: try reader.bool(object["use_regex"], "\(key).use_regex", default: true))
    }

    private static func readPostProcessor(_ value: Any?, _ key: String, tokenIDs: Set<Int>,
                                          reader: JSONReader) throws -> [PostProcessorStep] {
        guard !reader.isNull(value) else { return [] }
        let object = try reader.object(value, key)
        let type = try reader.string(object["type"], "\(key).type")
        switch type {
        case "ByteLevel":
            return []  // it only trims offsets; ids are untouched
        case "Sequence":
            guard let steps = object["processors"] as? [Any] else { throw reader.error("\(key).processors is missing or not an array") }
            return try steps.enumerated().flatMap { index, step in
                try readPostProcessor(step, "\(key).processors[\(index)]", tokenIDs: tokenIDs, reader: reader)
            }
        case "TemplateProcessing":
            guard let single = object["single"] as? [Any] else { throw reader.error("\(key).single is missing or not an array") }
            let specials = try reader.object(object["special_tokens"], "\(key).special_tokens")
            let elements = try single.enumerated().map { index, piece -> TemplateElement in
                let pieceKey = "\(key).single[\(index)]"
                let pieceObject = try reader.object(piece, pieceKey)
                if let sequence = pieceObject["Sequence"] as? [String: Any] {
                    let id = try reader.string(sequence["id"], "\(pieceKey).Sequence.id")
                    guard id == "A" else { throw reader.error("\(pieceKey).Sequence.id '\(id)' is not supported in a single template (only A)") }
                    return .sequence
                }
                if let special = pieceObject["SpecialToken"] as? [String: Any] {
                    let name = try reader.string(special["id"], "\(pieceKey).SpecialToken.id")
                    let entry = try reader.object(specials[name], "\(key).special_tokens['\(name)']")
                    guard let ids = entry["ids"] as? [Any] else { throw reader.error("\(key).special_tokens['\(name)'].ids is missing") }
                    let idsKey = "\(key).special_tokens['\(name)'].ids"
                    return .ids(try ids.map { value in
                        let id = try reader.tokenID(value, idsKey)
                        guard tokenIDs.contains(id) else {
                            throw reader.error("\(idsKey): \(id) is not a token of model.vocab or added_tokens")
                        }
                        return id
                    })
                }
                throw reader.error("\(pieceKey) is neither a Sequence nor a SpecialToken")
            }
            return [.template(elements)]
        default:
            throw reader.error("\(key).type '\(type)' is not supported (only ByteLevel, TemplateProcessing or a Sequence of them)")
        }
    }
}

/// Typed access to parsed JSON, with errors that name the file and the key.
struct JSONReader {
    let source: String

    func error(_ message: String) -> TokenizerLoadError {
        TokenizerLoadError(message: "\(source): \(message)")
    }

    func isNull(_ value: Any?) -> Bool {
        value == nil || value is NSNull
    }

    func object(_ value: Any?, _ key: String) throws -> [String: Any] {
        guard !isNull(value) else { throw error("\(key) is missing") }
        guard let object = value as? [String: Any] else { throw error("\(key) is not a JSON object") }
        return object
    }

    func string(_ value: Any?, _ key: String) throws -> String {
        guard !isNull(value) else { throw error("\(key) is missing") }
        guard let string = value as? String else { throw error("\(key) is not a string") }
        return string
    }

    func optionalString(_ value: Any?, _ key: String) throws -> String? {
        guard !isNull(value) else { return nil }
        guard let string = value as? String else { throw error("\(key) is not a string") }
        return string
    }

    func bool(_ value: Any?, _ key: String, default defaultValue: Bool) throws -> Bool {
        guard !isNull(value) else { return defaultValue }
        guard let bool = value as? Bool else { throw error("\(key) is not true or false") }
        return bool
    }

    func tokenID(_ value: Any?, _ key: String) throws -> Int {
        guard !isNull(value) else { throw error("\(key) is missing") }
        guard let id = value as? Int, id >= 0, id <= TokenizerDefinition.maxTokenID else {
            throw error("\(key) is not a token id (an integer from 0 to \(TokenizerDefinition.maxTokenID))")
        }
        return id
    }
}
