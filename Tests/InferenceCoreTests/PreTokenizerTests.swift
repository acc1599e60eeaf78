import Foundation
import XCTest
@testable import InferenceCore

final class PreTokenizerTests: XCTestCase {
    func pieces(_ text: String) -> [String] {
        var text = text
        var result: [String] = []
        text.withUTF8 { bytes in
            GPT2Split.split(bytes) { range in result.append(String(decoding: bytes[range], as: UTF8.self)) }
        }
        return result
    }

    func words(_ text: String, _ preTokenizer: ByteLevelPreTokenizer) -> [String] {
        var text = text
        var result: [String] = []
        text.withUTF8 { bytes in
            preTokenizer.forEachWord(in: bytes) { result.append(ByteLevelAlphabet.encode($0)) }
        }
        return result
    }

    // Expected pieces below are what HF tokenizers' Split(GPT-2 pattern, "isolated") returns.

    func testSplitSeparatesLettersNumbersPunctuationAndWhitespaceRuns() {
        XCTAssertEqual(pieces("Hello  world's\t\tX  "), ["Hello", " ", " world", "'s", "\t", "\t", "X", "  "])
        XCTAssertEqual(pieces("a\t\tb  \n\n  c"), ["a", "\t", "\t", "b", "  \n\n ", " c"])
        XCTAssertEqual(pieces("x = 1   \n"), ["x", " =", " 1", "   \n"])
        XCTAssertEqual(pieces(" 123abc!!? \u{a0}é日本  "), [" 123", "abc", "!!?", " ", "\u{a0}", "é日本", "  "])
        XCTAssertEqual(pieces("\u{3000}\u{3000}x"), ["\u{3000}", "\u{3000}", "x"])
        XCTAssertEqual(pieces("  "), ["  "])
        XCTAssertEqual(pieces("a "), ["a", " "])
        XCTAssertEqual(pieces(""), [])
    }

    func testSplitTakesOnlyLowerCaseContractionsAtAnApostrophe() {
        XCTAssertEqual(pieces("don't DON'T 'll'd ''s"), ["don", "'t", " DON", "'", "T", " '", "ll", "'d", " ''", "s"])
        XCTAssertEqual(pieces("we're they've I'm"), ["we", "'re", " they", "'ve", " I", "'m"])
        XCTAssertEqual(pieces("'r 'l' '"), ["'", "r", " '", "l", "'", " '"])
    }

    func testSplitKeepsCombiningMarksApartFromLetters() {
        // A combining mark is neither \p{L} nor \p{N}; mathematical digits are \p{N}.
        XCTAssertEqual(pieces("a\u{301}b 𝟘x"), ["a", "\u{301}", "b", " 𝟘", "x"])
    }

    func testSplitClassOfEveryScalarMatchesTheReference() throws {
        let ranges = try JSONSerialization.jsonObject(
            with: Data(contentsOf: Fixtures.url("tokenizer/gpt2-split-classes.json"))) as! [[Any]]
        var expected = [SplitClass](repeating: .other, count: 0x110000)
        for range in ranges {
            let first = range[0] as! Int, last = range[1] as! Int
            let kind: SplitClass = switch range[2] as! String {
            case "L": .letter
            case "N": .number
            default: .whitespace
            }
            for value in first...last { expected[value] = kind }
        }
        var mismatches: [String] = []
        for value in 0..<0x110000 where !(0xD800...0xDFFF).contains(value) {
            let actual = ScalarClasses.splitClass(UInt32(value))
            if actual != expected[value] { mismatches.append("U+\(String(value, radix: 16)): \(actual) != \(expected[value])") }
        }
        XCTAssertEqual(mismatches.count, 0, mismatches.prefix(20).joined(separator: ", "))
        XCTAssertGreaterThan(ranges.count, 800)
    }

    func testWordCharactersAreRustRegexWordCharacters() {
        for scalar in "aZ09_é日\u{301}\u{200d}Ⅻ" .unicodeScalars {
            XCTAssertTrue(ScalarClasses.isWordCharacter(scalar.value), "\(scalar)")
        }
        for scalar in " .-,!\u{a0}👍½" .unicodeScalars {
            XCTAssertFalse(ScalarClasses.isWordCharacter(scalar.value), "\(scalar)")
        }
    }

    func testByteLevelAlphabetIsGPT2sTable() {
        let table = ByteLevelAlphabet.scalarForByte
        XCTAssertEqual(Set(table).count, 256)
        XCTAssertEqual(table[Int(UInt8(ascii: "a"))], 0x61)
        XCTAssertEqual(table[0x20], 0x120)  // "Ġ"
        XCTAssertEqual(table[0x0A], 0x10A)  // "Ċ"
        XCTAssertEqual(table[0x00], 0x100)  // "Ā"
        XCTAssertEqual(table[0x7F], 0x121)
        XCTAssertEqual(table[0xAD], 0x143)  // the soft hyphen is the last remapped byte
        XCTAssertEqual(table[0xE9], 0xE9)
        let allBytes = (0...255).map { UInt8($0) }
        XCTAssertEqual(ByteLevelAlphabet.decode(ByteLevelAlphabet.encode(allBytes)), allBytes)
        XCTAssertEqual(ByteLevelAlphabet.encode(Array(" hé".utf8)), "ĠhÃ©")
        XCTAssertNil(ByteLevelAlphabet.decode("a b"))
        XCTAssertNil(ByteLevelAlphabet.decode("日"))
    }

    func testPrefixSpaceAndSplitStepsApplyPiecewiseLikeTheReference() {
        // Expected words are what HF tokenizers' Sequence([Split?, ByteLevel(add_prefix_space, use_regex)])
        // returns, in the byte-level alphabet.
        let plain = ByteLevelPreTokenizer(splitFirst: false, addPrefixSpace: true, useRegex: true)
        let splitThenPrefix = ByteLevelPreTokenizer(splitFirst: true, addPrefixSpace: true, useRegex: false)
        let prefixOnly = ByteLevelPreTokenizer(splitFirst: false, addPrefixSpace: true, useRegex: false)
        let nothing = ByteLevelPreTokenizer(splitFirst: false, addPrefixSpace: false, useRegex: false)
        XCTAssertEqual(words("!!a b", plain), ["Ġ!!", "a", "Ġb"])
        XCTAssertEqual(words("!!a b", splitThenPrefix), ["Ġ!!", "Ġa", "Ġb"])
        XCTAssertEqual(words("!!a b", prefixOnly), ["Ġ!!aĠb"])
        XCTAssertEqual(words("!!a b", nothing), ["!!aĠb"])
        XCTAssertEqual(words(" x", plain), ["Ġx"])
        XCTAssertEqual(words("hello", splitThenPrefix), ["Ġhello"])
        XCTAssertEqual(words("", plain), [])
    }
}
