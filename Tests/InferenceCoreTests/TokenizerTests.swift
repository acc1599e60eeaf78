import Foundation
import XCTest
import TestSupport
@testable import InferenceCore

/// Goldens written by tools/fixtures/make_tokenizer_goldens.py with HF `tokenizers`.
struct TokenizerGoldens {
    struct Variant {
        let name: String
        let tokenizer: BPETokenizer
        let json: [String: Any]
        let vocabSize: Int
        let specialIDs: [Int]
        let added: [[String: Any]]
        /// `encodings[i]` is the reference encoding of `texts[i]`.
        let encodings: [[Int]]
        let decodes: [[String: Any]]
    }

    let texts: [(name: String, text: String)]
    let variants: [Variant]

    static func load(_ name: String) throws -> TokenizerGoldens {
        let golden = try jsonObject(Fixtures.url("tokenizer/\(name)"))
        let baseJSON = try jsonObject(Fixtures.repositoryRoot.appendingPathComponent(golden["tokenizer"] as! String))
        let texts = (golden["texts"] as! [[String: Any]]).map { ($0["name"] as! String, $0["text"] as! String) }
        let variants = try (golden["variants"] as! [[String: Any]]).map { entry -> Variant in
            let name = entry["name"] as! String
            let json = applying(entry["set"] as! [[Any]], droppingMerges: entry["drop_merges"] as! [[String]],
                                legacyMerges: entry["legacy_merges"] as! Bool, to: baseJSON)
            let data = try JSONSerialization.data(withJSONObject: json)
            return Variant(
                name: name, tokenizer: try BPETokenizer(jsonData: data, source: "\(name).json"), json: json,
                vocabSize: entry["vocab_size"] as! Int, specialIDs: entry["special_ids"] as! [Int],
                added: entry["added"] as! [[String: Any]], encodings: entry["encodings"] as! [[Int]],
                decodes: entry["decodes"] as! [[String: Any]])
        }
        return TokenizerGoldens(texts: texts, variants: variants)
    }

    static func jsonObject(_ url: URL) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    }

    /// The variant's `set` operations (path, value), dropped merges and merges format, as the generator
    /// applied them.
    static func applying(_ operations: [[Any]], droppingMerges dropped: [[String]], legacyMerges: Bool,
                         to base: [String: Any]) -> [String: Any] {
        var json = base
        for operation in operations {
            json = setting(operation[1], at: operation[0] as! [String], in: json)
        }
        var model = json["model"] as! [String: Any]
        var merges = (model["merges"] as! [Any]).map { merge -> [String] in
            merge as? [String] ?? (merge as! String).split(separator: " ").map(String.init)
        }
        merges.removeAll { dropped.contains($0) }
        model["merges"] = legacyMerges ? merges.map { $0.joined(separator: " ") } as [Any] : merges as [Any]
        json["model"] = model
        return json
    }

    static func setting(_ value: Any, at path: [String], in object: [String: Any]) -> [String: Any] {
        var object = object
        if path.count == 1 {
            object[path[0]] = value
        } else {
            object[path[0]] = setting(value, at: Array(path.dropFirst()), in: object[path[0]] as! [String: Any])
        }
        return object
    }
}

final class TokenizerTests: XCTestCase {
    nonisolated(unsafe) static let goldens = Result { try TokenizerGoldens.load("fixture-goldens.json") }

    func goldens() throws -> TokenizerGoldens { try Self.goldens.get() }

    func base() throws -> TokenizerGoldens.Variant { try goldens().variants[0] }

    func testEncodingsEqualReferenceForEveryTextAndVariant() throws {
        let goldens = try goldens()
        XCTAssertEqual(goldens.variants.map(\.name), [
            "base", "add_prefix_space", "no_regex", "split_sequence", "dropped_merges", "ignore_merges",
            "legacy_merges", "added_token_flags", "template_post_processor", "byte_level_post_processor",
        ])
        for variant in goldens.variants {
            XCTAssertGreaterThanOrEqual(variant.encodings.count, 60)
            for (index, expected) in variant.encodings.enumerated() {
                let (name, text) = goldens.texts[index]
                XCTAssertEqual(variant.tokenizer.encode(text), expected, "\(variant.name)/\(name)")
            }
        }
    }

    func testDecodesEqualReference() throws {
        let goldens = try goldens()
        var checked = 0
        for variant in goldens.variants {
            for entry in variant.decodes {
                let skip = entry["skip_special_tokens"] as! Bool
                let ids: [Int]
                let expected: String
                if let index = entry["encoding"] as? Int {
                    ids = variant.encodings[index]
                    expected = entry["text"] as? String ?? goldens.texts[index].text
                } else {
                    ids = entry["ids"] as! [Int]
                    expected = entry["text"] as! String
                }
                XCTAssertEqual(variant.tokenizer.decode(ids, skipSpecialTokens: skip), expected,
                               "\(variant.name): decode(\(ids.prefix(12))..., skip: \(skip))")
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 1000)
    }

    func testDecodeOfEncodeGivesTheTextBack() throws {
        let goldens = try goldens()
        let tokenizer = try base().tokenizer
        for (name, text) in goldens.texts {
            XCTAssertEqual(tokenizer.decode(tokenizer.encode(text)), text, name)
        }
    }

    func testVocabSizeSpecialTokensAndAddedTokenLookupsEqualReference() throws {
        for variant in try goldens().variants {
            let tokenizer = variant.tokenizer
            XCTAssertEqual(tokenizer.vocabSize, variant.vocabSize, variant.name)
            XCTAssertEqual(tokenizer.specialTokenIDs, Set(variant.specialIDs), variant.name)
            for added in variant.added {
                let content = added["content"] as! String, id = added["id"] as! Int
                XCTAssertEqual(tokenizer.tokenID(content), added["token_to_id"] as? Int, "\(variant.name): \(content)")
                XCTAssertEqual(tokenizer.tokenString(id), added["id_to_token"] as? String, "\(variant.name): \(id)")
            }
        }
        let tokenizer = try base().tokenizer
        XCTAssertEqual(tokenizer.specialTokenIDs, [0])
        XCTAssertEqual(tokenizer.tokenID("<|endoftext|>"), 0)
        XCTAssertEqual(tokenizer.tokenID("<|cursor|>"), 2000)
        XCTAssertEqual(tokenizer.vocabSize, 2001)
    }

    func testTokenLookupsAgreeWithTheVocabulary() throws {
        let variant = try base()
        let vocab = (variant.json["model"] as! [String: Any])["vocab"] as! [String: Int]
        XCTAssertEqual(vocab.count, 2000)
        for (token, id) in vocab {
            XCTAssertEqual(variant.tokenizer.tokenID(token), id, token)
            XCTAssertEqual(variant.tokenizer.tokenString(id), token)
        }
        let tokenizer = variant.tokenizer
        XCTAssertEqual(tokenizer.tokenBytes(tokenizer.tokenID("Ġ")!), [0x20])
        XCTAssertEqual(tokenizer.tokenBytes(tokenizer.tokenID("Ċ")!), [0x0A])
        XCTAssertEqual(tokenizer.tokenBytes(tokenizer.tokenID("Ã")!), [0xC3])
        XCTAssertEqual(tokenizer.tokenBytes(0), Array("<|endoftext|>".utf8))
        XCTAssertEqual(tokenizer.tokenBytes(2000), Array("<|cursor|>".utf8))
        XCTAssertEqual(tokenizer.tokenBytes(-1), [])
        XCTAssertEqual(tokenizer.tokenBytes(2001), [])
        XCTAssertNil(tokenizer.tokenString(2001))
        XCTAssertNil(tokenizer.tokenString(-3))
        XCTAssertNil(tokenizer.tokenID("not a token at all"))
        XCTAssertEqual(tokenizer.encode(""), [])
    }

    func testAddedTokensContainingSpacesDecodeToTheirOwnText() throws {
        // The ByteLevel decoder maps a token through its byte table only when every character is in it:
        // "  " is not ("Ġ" stands for the space), "Ġhello" is, so it decodes to " hello".
        let flags = try goldens().variants.first { $0.name == "added_token_flags" }!.tokenizer
        let spaces = flags.tokenID("  ")!, ghello = flags.tokenID("Ġhello")!
        XCTAssertEqual(flags.tokenBytes(spaces), [0x20, 0x20])
        XCTAssertEqual(flags.decode([spaces]), "  ")
        XCTAssertEqual(flags.decode([ghello]), " hello")
        XCTAssertEqual(flags.encode("Ġhello"), [ghello])
    }

    func testTemplatePostProcessorPrependsItsSpecialToken() throws {
        let goldens = try goldens()
        let base = goldens.variants[0]
        let template = goldens.variants.first { $0.name == "template_post_processor" }!
        for (index, (name, text)) in goldens.texts.enumerated() where index < template.encodings.count {
            XCTAssertEqual(template.tokenizer.encode(text), [0] + base.encodings[index], name)
        }
    }

    func testEncodingTheSameTextFromManyThreadsGivesTheSameIDs() throws {
        let goldens = try goldens()
        let tokenizer = goldens.variants[0].tokenizer
        let expected = goldens.variants[0].encodings
        let texts = goldens.texts.map(\.text)
        let mismatches = Mismatches()
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            for round in 0..<3 {
                for index in expected.indices.shuffled() where (index + worker + round) % 2 == 0 {
                    if tokenizer.encode(texts[index]) != expected[index] { mismatches.add(index) }
                }
            }
        }
        XCTAssertEqual(mismatches.all, [])
    }

    /// About `size` bytes of code-like text with many distinct words, so that a word cache cannot hide
    /// the cost of merging.
    static func largeText(size: Int, seed: UInt64) -> String {
        var generator = SplitMix64(seed: seed)
        let letters = Array("abcdefghijklmnopqrstuvwxyz_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        let symbols = ["(", ")", ": ", ", ", " = ", ".", " + ", "[", "]", " # ", "'s", " == ", "\"", "->", "{", "}"]
        let extras = ["é", "日本語", "👍", "ß", "→", "\u{a0}", "😀", "中文", "naïve", "👨\u{200d}👩\u{200d}👧"]
        var text = ""
        while text.utf8.count < size {
            text += String(repeating: " ", count: 4 * Int(generator.next() % 3))
            for _ in 0..<(1 + generator.next() % 10) {
                switch generator.next() % 10 {
                case 0..<6:
                    let length = 1 + Int(generator.next() % 12)
                    text += String((0..<length).map { _ in letters[Int(generator.next() % UInt64(letters.count))] })
                case 6..<9: text += symbols[Int(generator.next() % UInt64(symbols.count))]
                default: text += extras[Int(generator.next() % UInt64(extras.count))]
                }
            }
            text += generator.next() % 7 == 0 ? "  \n\n" : "\n"
        }
        return text
    }

    func testLargeInputsEncodeInBoundedTime() throws {
        // A freshly loaded tokenizer: its word cache starts empty.
        let tokenizer = try BPETokenizer(contentsOf: Fixtures.url("tokenizer/fixture-tokenizer.json"))
        let text = Self.largeText(size: 100_000, seed: 1)
        let started = Date()
        let ids = tokenizer.encode(text)
        let elapsed = Date().timeIntervalSince(started)
        XCTAssertEqual(tokenizer.decode(ids), text)
        XCTAssertLessThan(elapsed, 0.5, "100 KB encoded in \(elapsed) s")

        // Without the split regex every stretch between added tokens is one word: merging must not be
        // quadratic in the word's length.
        let noRegex = try goldens().variants.first { $0.name == "no_regex" }!.tokenizer
        let oneWord = Self.largeText(size: 100_000, seed: 2)
        let wordStarted = Date()
        let wordIDs = noRegex.encode(oneWord)
        let wordElapsed = Date().timeIntervalSince(wordStarted)
        XCTAssertEqual(noRegex.decode(wordIDs), oneWord)
        XCTAssertLessThan(wordElapsed, 1.0, "a \(oneWord.utf8.count)-byte word encoded in \(wordElapsed) s")
        print("tokenizer: 100 KB of text in \(Int(elapsed * 1000)) ms (\(ids.count) ids, cold cache); "
              + "a 100 KB single word in \(Int(wordElapsed * 1000)) ms")
    }

    // MARK: The shipped model's tokenizer

    func testShippedTokenizerEncodingsAndDecodesEqualReference() throws {
        // Goldens made from models/specserve-code/tokenizer.json; if that file is retrained, run
        // tools/fixtures/make_tokenizer_goldens.py models/specserve-code/tokenizer.json again.
        let goldens = try TokenizerGoldens.load("specserve-code-goldens.json")
        let shipped = goldens.variants[0]
        XCTAssertEqual(shipped.tokenizer.vocabSize, 8192)
        XCTAssertEqual(shipped.tokenizer.specialTokenIDs, [0])
        XCTAssertEqual(shipped.encodings.count, goldens.texts.count)
        for (index, expected) in shipped.encodings.enumerated() {
            XCTAssertEqual(shipped.tokenizer.encode(goldens.texts[index].text), expected, goldens.texts[index].name)
        }
        for entry in shipped.decodes {
            let skip = entry["skip_special_tokens"] as! Bool
            let index = entry["encoding"] as? Int
            let ids = index.map { shipped.encodings[$0] } ?? entry["ids"] as! [Int]
            let expected = entry["text"] as? String ?? goldens.texts[index!].text
            XCTAssertEqual(shipped.tokenizer.decode(ids, skipSpecialTokens: skip), expected, "decode(\(ids.prefix(12))...)")
            var decoder = IncrementalDecoder(tokenizer: shipped.tokenizer, skipSpecialTokens: skip)
            XCTAssertEqual(ids.map { decoder.append($0) }.joined() + decoder.finish(), expected)
        }
        let fromFile = try BPETokenizer(contentsOf: Fixtures.repositoryRoot.appendingPathComponent("models/specserve-code/tokenizer.json"))
        let text = Self.largeText(size: 100_000, seed: 3)
        let started = Date()
        let ids = fromFile.encode(text)
        let elapsed = Date().timeIntervalSince(started)
        XCTAssertEqual(fromFile.decode(ids), text)
        XCTAssertLessThan(elapsed, 0.5)
        print("tokenizer (specserve-code): 100 KB of text in \(Int(elapsed * 1000)) ms, \(ids.count) ids")
    }

    // MARK: Load errors

    func testLoadingRejectsWhatItCannotEncodeExactly() throws {
        let base = try base().json
        func model(_ key: String, _ value: Any) -> [String: Any] {
            TokenizerGoldens.setting(value, at: ["model", key], in: base)
        }
        func vocabWithout(_ token: String) -> [String: Any] {
            var vocab = (base["model"] as! [String: Any])["vocab"] as! [String: Any]
            vocab["<renamed>"] = vocab.removeValue(forKey: token)
            return vocab
        }
        let cases: [(json: [String: Any], fragment: String)] = [
            (model("type", "Unigram"), "model.type 'Unigram' is not supported"),
            (model("type", "WordPiece"), "model.type 'WordPiece' is not supported"),
            (model("byte_fallback", true), "model.byte_fallback true is not supported"),
            (model("dropout", 0.1), "model.dropout 0.1 is not supported"),
            (model("continuing_subword_prefix", "##"), "model.continuing_subword_prefix '##' is not supported"),
            (model("end_of_word_suffix", "</w>"), "model.end_of_word_suffix '</w>' is not supported"),
            (model("unk_token", 5), "model.unk_token is not a string"),
            (model("vocab", vocabWithout("ā")), "model.vocab has no token for byte 0x01 ('ā')"),
            (model("merges", ["Ġ Ġ", "a b c"]), "model.merges[1] 'a b c' is not two tokens"),
            (model("merges", [["Ġ", "Ġ"], ["Ġ", "QQQ"]]), "model.merges[1] ('Ġ', 'QQQ'): 'QQQ' is not in model.vocab"),
            (model("merges", [["Ġ", "Ġ"], 7]), "model.merges[1] is neither"),
            (model("vocab", ["a": 0, "b": 0]), "model.vocab gives id 0 to both"),
            (model("vocab", ["a": -4]), "model.vocab['a'] is not a token id"),
            (TokenizerGoldens.setting(["type": "NFC"], at: ["normalizer"], in: base),
             "normalizer.type 'NFC' is not supported"),
            (TokenizerGoldens.setting(["type": "Metaspace"], at: ["pre_tokenizer"], in: base),
             "pre_tokenizer.type 'Metaspace' is not supported"),
            (TokenizerGoldens.setting(NSNull(), at: ["pre_tokenizer"], in: base), "pre_tokenizer is null"),
            (TokenizerGoldens.setting(["type": "Sequence", "pretokenizers": [
                ["type": "Split", "pattern": ["Regex": "\\s+"], "behavior": "Isolated", "invert": false],
                ["type": "ByteLevel", "add_prefix_space": false, "use_regex": false],
            ]], at: ["pre_tokenizer"], in: base), "pre_tokenizer.pretokenizers[0].pattern is not the GPT-2 split regex"),
            (TokenizerGoldens.setting(["type": "Sequence", "pretokenizers": [
                ["type": "Split", "pattern": ["Regex": TokenizerDefinition.gpt2Pattern], "behavior": "Removed", "invert": false],
                ["type": "ByteLevel", "add_prefix_space": false, "use_regex": false],
            ]], at: ["pre_tokenizer"], in: base), "pre_tokenizer.pretokenizers[0].behavior 'Removed' is not supported"),
            (TokenizerGoldens.setting(["type": "Sequence", "pretokenizers": [["type": "Digits"], ["type": "ByteLevel"]]],
                                      at: ["pre_tokenizer"], in: base), "pre_tokenizer.pretokenizers types"),
            (TokenizerGoldens.setting(["type": "WordPiece"], at: ["decoder"], in: base), "decoder.type 'WordPiece' is not supported"),
            (TokenizerGoldens.setting(NSNull(), at: ["decoder"], in: base), "decoder is missing"),
            (TokenizerGoldens.setting(["type": "BertProcessing"], at: ["post_processor"], in: base),
             "post_processor.type 'BertProcessing' is not supported"),
            (TokenizerGoldens.setting(["type": "Sequence", "processors": [["type": "RobertaProcessing"]]],
                                      at: ["post_processor"], in: base), "post_processor.processors[0].type 'RobertaProcessing'"),
            (TokenizerGoldens.setting(["max_length": 8], at: ["truncation"], in: base), "truncation is set"),
            (TokenizerGoldens.setting(["strategy": "BatchLongest"], at: ["padding"], in: base), "padding is set"),
            (TokenizerGoldens.setting([["id": 2001, "content": "<x>", "special": true]], at: ["added_tokens"], in: base),
             "added_tokens[0].id 2001 of '<x>' is not the id tokenizers assigns it (2000)"),
            (TokenizerGoldens.setting([["id": 2000, "content": "<x>"], ["id": 2001, "content": "<x>"]], at: ["added_tokens"], in: base),
             "added_tokens[1].content '<x>' appears twice"),
            (TokenizerGoldens.setting([["id": 2000, "content": ""]], at: ["added_tokens"], in: base), "added_tokens[0].content is empty"),
            (TokenizerGoldens.setting([["id": 2000, "content": "<x>", "lstrip": "yes"]], at: ["added_tokens"], in: base),
             "added_tokens[0].lstrip is not true or false"),
        ]
        for (json, fragment) in cases {
            let data = try JSONSerialization.data(withJSONObject: json)
            XCTAssertThrowsError(try BPETokenizer(jsonData: data, source: "broken/tokenizer.json"), fragment) { error in
                let message = (error as? TokenizerLoadError)?.message ?? "\(error)"
                XCTAssertTrue(message.hasPrefix("broken/tokenizer.json: "), message)
                XCTAssertTrue(message.contains(fragment), "expected “\(fragment)” in “\(message)”")
            }
        }
        var noModel = base
        noModel["model"] = nil
        XCTAssertThrowsError(try BPETokenizer(jsonData: JSONSerialization.data(withJSONObject: noModel), source: "t.json")) {
            XCTAssertEqual(($0 as? TokenizerLoadError)?.message, "t.json: model is missing")
        }
    }

    func testLoadingReportsUnreadableAndMalformedFiles() throws {
        let missing = URL(fileURLWithPath: "/nonexistent/dir/tokenizer.json")
        XCTAssertThrowsError(try BPETokenizer(contentsOf: missing)) { error in
            XCTAssertTrue("\(error)".hasPrefix("/nonexistent/dir/tokenizer.json: cannot be read"), "\(error)")
        }
        XCTAssertThrowsError(try BPETokenizer(jsonData: Data("{\"model\": ".utf8), source: "cut.json")) { error in
            XCTAssertTrue("\(error)".hasPrefix("cut.json: is not valid JSON"), "\(error)")
        }
        XCTAssertThrowsError(try BPETokenizer(jsonData: Data("[1, 2]".utf8), source: "list.json")) { error in
            XCTAssertEqual("\(error)", "list.json: the top level is not a JSON object")
        }
        let loaded = try BPETokenizer(contentsOf: Fixtures.url("tokenizer/fixture-tokenizer.json"))
        XCTAssertEqual(loaded.vocabSize, 2001)
    }

    /// A template id that is no token used to load, and every encoded text then held an id at or past vocabSize,
    /// which the model has no embedding row for (the check of tokenizer against config.json vocab_size did not
    /// see it). The fuzz target for tokenizer.json checks that every encoded id is a token.
    func testTemplateIDsThatAreNoTokenAreRefused() throws {
        let base = try base().json
        func template(ids: [Int]) throws -> Data {
            try JSONSerialization.data(withJSONObject: TokenizerGoldens.setting([
                "type": "TemplateProcessing",
                "single": [["SpecialToken": ["id": "<s>", "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]]],
                "pair": [["Sequence": ["id": "A", "type_id": 0]], ["Sequence": ["id": "B", "type_id": 1]]],
                "special_tokens": ["<s>": ["id": "<s>", "ids": ids, "tokens": ["<s>"]]],
            ], at: ["post_processor"], in: base))
        }
        for id in [2001, 1 << 24] {
            XCTAssertThrowsError(try BPETokenizer(jsonData: template(ids: [id]), source: "t.json")) { error in
                XCTAssertEqual((error as? TokenizerLoadError)?.message,
                               "t.json: post_processor.special_tokens['<s>'].ids: \(id) is not a token of model.vocab or added_tokens")
            }
        }
        let loaded = try BPETokenizer(jsonData: template(ids: [2000]), source: "t.json")  // <|cursor|>, the last added token
        let ids = loaded.encode("def f(): pass")
        XCTAssertEqual(ids.first, 2000)
        XCTAssertTrue(ids.allSatisfy { $0 < loaded.vocabSize }, "\(ids)")
    }
}

/// Collects indices from concurrent workers.
final class Mismatches: @unchecked Sendable {
    private let lock = NSLock()
    private var indices: [Int] = []
    func add(_ index: Int) { lock.lock(); indices.append(index); lock.unlock() }
    var all: [Int] { lock.lock(); defer { lock.unlock() }; return indices }
}
