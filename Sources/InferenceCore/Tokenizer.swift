import Foundation

/// A byte-level BPE tokenizer loaded from a Hugging Face tokenizer.json, whose encodings and decodes equal
/// HF `tokenizers` (`tokenizer.encode(text).ids`, `tokenizer.decode(ids)`).
///
/// Encoding: added tokens are taken out of the text first; the stretches between them go through the
/// ByteLevel pre-tokenizer (GPT-2 split pattern) and then BPE on raw bytes; a `TemplateProcessing`
/// post-processor adds its tokens around the result. Supported files and the errors for the rest are
/// described in `TokenizerDefinition`.
public final class BPETokenizer: Sendable {
    private let model: BPEModel
    private let preTokenizer: ByteLevelPreTokenizer
    private let addedVocabulary: AddedVocabulary
    private let postProcessor: [PostProcessorStep]
    private let cache = BPEWordCache()

    /// By id: the token string (added tokens first, as the reference looks them up), nil for unused ids.
    private let tokenStrings: [String?]
    /// By id: the bytes a token decodes to, stored back to back; `byteOffsets[id]..<byteOffsets[id + 1]`.
    private let byteStorage: [UInt8]
    private let byteOffsets: [Int]
    /// By id: whether decoding with `skipSpecialTokens` leaves the token out.
    private let specialFlags: [Bool]
    /// Token ids by the UTF-8 of the token string (bytes, so that canonically equivalent strings stay apart).
    private let idsByToken: [[UInt8]: Int]

    /// Token ids run from 0 to `vocabSize - 1` (added tokens included).
    public let vocabSize: Int
    /// Ids of the added tokens marked special (those `decode(_:skipSpecialTokens:)` can leave out).
    public let specialTokenIDs: Set<Int>

    /// Loads a tokenizer.json; errors name the file and the JSON key.
    public convenience init(contentsOf url: URL) throws {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw TokenizerLoadError(message: "\(url.path): cannot be read (\(error.localizedDescription))")
        }
        try self.init(jsonData: data, source: url.path)
    }

    /// Loads tokenizer.json content; `source` names it in error messages.
    public init(jsonData: Data, source: String) throws {
        let definition = try TokenizerDefinition(jsonData: jsonData, source: source)
        let vocab = definition.vocab

        let byteIDs = (0..<256).map { byte -> Int32 in
            // The definition checked that every byte has its token.
            Int32(vocab[String(Character(Unicode.Scalar(ByteLevelAlphabet.scalarForByte[byte])!))]!)
        }
        var merges: [UInt64: UInt64] = [:]
        merges.reserveCapacity(definition.merges.count)
        for (rank, (left, right)) in definition.merges.enumerated() {
            // The definition checked that all three are in the vocabulary; a pair listed twice keeps its
            // last rank, as in the reference.
            let key = BPEModel.pairKey(Int32(vocab[left]!), Int32(vocab[right]!))
            merges[key] = UInt64(rank) << 32 | UInt64(vocab[left + right]!)
        }
        var idsByBytes: [[UInt8]: Int32] = [:]
        if definition.ignoreMerges {
            for (token, id) in vocab {
                if let bytes = ByteLevelAlphabet.decode(token) { idsByBytes[bytes] = Int32(id) }
            }
        }
        model = BPEModel(byteIDs: byteIDs, merges: merges, ignoreMerges: definition.ignoreMerges, idsByBytes: idsByBytes)
        preTokenizer = definition.preTokenizer
        addedVocabulary = AddedVocabulary(tokens: definition.addedTokens)
        postProcessor = definition.postProcessor

        let maxID = max(vocab.values.max() ?? -1, definition.addedTokens.map(\.id).max() ?? -1)
        vocabSize = maxID + 1
        var strings = [String?](repeating: nil, count: vocabSize)
        var idsByToken: [[UInt8]: Int] = [:]
        idsByToken.reserveCapacity(vocab.count + definition.addedTokens.count)
        for (token, id) in vocab {
            strings[id] = token
            idsByToken[Array(token.utf8)] = id
        }
        for token in definition.addedTokens {
            strings[token.id] = token.content
            idsByToken[Array(token.content.utf8)] = token.id
        }
        tokenStrings = strings
        self.idsByToken = idsByToken

        // The ByteLevel decoder maps a token's characters back to bytes when all of them are in its table,
        // and otherwise keeps the token's own UTF-8 (added tokens such as "<|endoftext|>" are in the table).
        var storage: [UInt8] = []
        var offsets = [0]
        offsets.reserveCapacity(vocabSize + 1)
        for string in strings {
            if let string { storage += ByteLevelAlphabet.decode(string) ?? Array(string.utf8) }
            offsets.append(storage.count)
        }
        byteStorage = storage
        byteOffsets = offsets

        let specialContents = Set(definition.addedTokens.filter(\.special).map { Array($0.content.utf8) })
        specialFlags = strings.map { $0.map { specialContents.contains(Array($0.utf8)) } ?? false }
        specialTokenIDs = Set(definition.addedTokens.filter(\.special).map(\.id))
    }

    // MARK: Encoding

    /// The ids of `text`, as `tokenizer.encode(text).ids` gives them (special tokens in the text are
    /// recognised; a post-processor template is applied).
    public func encode(_ text: String) -> [Int] {
        var text = text
        var ids: [Int] = []
        ids.reserveCapacity(text.utf8.count / 3 + 4)
        text.withUTF8 { bytes in
            var scratch = BPEScratch()
            for segment in addedVocabulary.segments(of: bytes) {
                switch segment {
                case .token(let id):
                    ids.append(id)
                case .text(let range):
                    preTokenizer.forEachWord(in: UnsafeBufferPointer(rebasing: bytes[range])) { word in
                        encodeWord(word, into: &ids, scratch: &scratch)
                    }
                }
            }
        }
        for step in postProcessor {
            switch step {
            case .template(let elements):
                ids = elements.flatMap { element -> [Int] in
                    switch element {
                    case .sequence: return ids
                    case .ids(let fixed): return fixed
                    }
                }
            }
        }
        return ids
    }

    private func encodeWord(_ word: UnsafeBufferPointer<UInt8>, into ids: inout [Int], scratch: inout BPEScratch) {
        if word.count == 1 {
            ids.append(Int(model.byteIDs[Int(word[0])]))
            return
        }
        guard word.count <= BPEWordCache.maxWordLength else {
            model.encode(word: word, into: &ids, scratch: &scratch)
            return
        }
        let key = Array(word)
        if let cached = cache.lookup(key) {
            for id in cached { ids.append(Int(id)) }
            return
        }
        let start = ids.count
        model.encode(word: word, into: &ids, scratch: &scratch)
        cache.store(key, ids[start...].map { Int32($0) })
    }

    // MARK: Decoding

    /// The text of `ids`, as `tokenizer.decode(ids, skip_special_tokens:)` gives it: ids the tokenizer
    /// does not have are left out, invalid UTF-8 becomes U+FFFD.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        var bytes: [UInt8] = []
        for id in ids where hasToken(id) && !(skipSpecialTokens && specialFlags[id]) {
            bytes += byteStorage[byteOffsets[id]..<byteOffsets[id + 1]]
        }
        var decoder = UTF8Repair()
        return decoder.take(bytes, final: true)
    }

    /// The raw bytes token `id` stands for in decoded text (empty for an unknown id).
    public func tokenBytes(_ id: Int) -> [UInt8] {
        guard hasToken(id) else { return [] }
        return Array(byteStorage[byteOffsets[id]..<byteOffsets[id + 1]])
    }

    /// The id of a token string as the vocabulary writes it (e.g. "Ġthe"), added tokens included.
    public func tokenID(_ token: String) -> Int? {
        idsByToken[Array(token.utf8)]
    }

    /// The token string of `id` as the vocabulary writes it, nil for an unknown id.
    public func tokenString(_ id: Int) -> String? {
        id >= 0 && id < vocabSize ? tokenStrings[id] : nil
    }

    /// Whether `id` names a token.
    func hasToken(_ id: Int) -> Bool {
        id >= 0 && id < vocabSize && tokenStrings[id] != nil
    }

    /// Whether `skipSpecialTokens` leaves token `id` out of decoded text.
    func isSpecial(_ id: Int) -> Bool {
        hasToken(id) && specialFlags[id]
    }
}
