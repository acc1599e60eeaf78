import Foundation
import XCTest
import TestSupport
@testable import InferenceCore

final class IncrementalDecoderTests: XCTestCase {
    func tokenizer() throws -> BPETokenizer {
        try BPETokenizer(contentsOf: Fixtures.url("tokenizer/fixture-tokenizer.json"))
    }

    /// Streams `ids` one at a time; returns every chunk, the final flush last.
    func stream(_ ids: [Int], _ tokenizer: BPETokenizer, skipSpecialTokens: Bool = false) -> [String] {
        var decoder = IncrementalDecoder(tokenizer: tokenizer, skipSpecialTokens: skipSpecialTokens)
        return ids.map { decoder.append($0) } + [decoder.finish()]
    }

    func testCharacterSplitAcrossTokensIsHeldUntilItIsComplete() throws {
        let tokenizer = try tokenizer()
        for text in ["😀", "日本", "👨\u{200d}👩\u{200d}👧", "é", "🇯🇵", "a\u{301}"] {
            let ids = tokenizer.encode(text)
            XCTAssertGreaterThan(ids.count, text.unicodeScalars.count, "\(text): some character spans tokens")
            var decoder = IncrementalDecoder(tokenizer: tokenizer)
            var emitted = ""
            var byteCount = 0
            for id in ids {
                let chunk = decoder.append(id)
                XCTAssertFalse(chunk.unicodeScalars.contains("\u{FFFD}"), "\(text): broken sequence emitted")
                emitted += chunk
                byteCount += tokenizer.tokenBytes(id).count
                // Exactly the scalars whose bytes have all arrived are out.
                var complete = String.UnicodeScalarView()
                var length = 0
                for scalar in text.unicodeScalars {
                    length += String(scalar).utf8.count
                    if length > byteCount { break }
                    complete.append(scalar)
                }
                XCTAssertEqual(Array(emitted.unicodeScalars), Array(complete), text)
            }
            XCTAssertFalse(decoder.hasPendingBytes)
            XCTAssertEqual(decoder.finish(), "")
            XCTAssertEqual(emitted, text)
        }
    }

    func testStreamEqualsDecodeForEveryReferenceEncoding() throws {
        let goldens = try TokenizerGoldens.load("fixture-goldens.json")
        for variant in goldens.variants {
            for (index, ids) in variant.encodings.enumerated() {
                for skip in [false, true] {
                    let chunks = stream(ids, variant.tokenizer, skipSpecialTokens: skip)
                    let whole = variant.tokenizer.decode(ids, skipSpecialTokens: skip)
                    XCTAssertEqual(chunks.joined(), whole, "\(variant.name)/\(goldens.texts[index].name)")
                    if !whole.unicodeScalars.contains("\u{FFFD}") {
                        XCTAssertFalse(chunks.contains { $0.unicodeScalars.contains("\u{FFFD}") },
                                       "\(variant.name)/\(goldens.texts[index].name): broken sequence emitted")
                    }
                }
            }
        }
    }

    func testInvalidBytesComeOutAsReplacementCharactersLikeTheReference() throws {
        // The random id sequences of the goldens include lone lead bytes, stray continuation bytes and
        // unknown ids; the reference text is `tokenizers`' decode of them.
        let goldens = try TokenizerGoldens.load("fixture-goldens.json")
        let base = goldens.variants[0]
        var withReplacement = 0
        for entry in base.decodes {
            guard let ids = entry["ids"] as? [Int] else { continue }
            let expected = entry["text"] as! String
            XCTAssertEqual(stream(ids, base.tokenizer).joined(), expected, "\(ids)")
            if expected.unicodeScalars.contains("\u{FFFD}") { withReplacement += 1 }
        }
        XCTAssertGreaterThan(withReplacement, 5)
    }

    func testFinishWritesAnUnfinishedCharacterAsOneReplacementCharacter() throws {
        let tokenizer = try tokenizer()
        let ids = tokenizer.encode("x😀")
        var decoder = IncrementalDecoder(tokenizer: tokenizer)
        XCTAssertEqual(decoder.append(ids[0]), "x")
        XCTAssertEqual(decoder.append(ids[1]), "")
        XCTAssertEqual(decoder.append(ids[2]), "")
        XCTAssertTrue(decoder.hasPendingBytes)
        XCTAssertEqual(decoder.finish(), "\u{FFFD}")
        XCTAssertEqual(tokenizer.decode(Array(ids.prefix(3))), "x\u{FFFD}")
        // The decoder starts afresh after finish.
        XCTAssertEqual(decoder.append(tokenizer.encode("a")[0]), "a")
    }

    func testAByteThatCannotContinueEndsTheHeldSequenceAtOnce() throws {
        let tokenizer = try tokenizer()
        let lead = tokenizer.tokenID("ð")!       // 0xF0: starts a 4-byte sequence
        let letter = tokenizer.tokenID("a")!
        var decoder = IncrementalDecoder(tokenizer: tokenizer)
        XCTAssertEqual(decoder.append(lead), "")
        XCTAssertEqual(decoder.append(letter), "\u{FFFD}a")
        XCTAssertEqual(decoder.finish(), "")
    }

    func testSpecialTokensAreSkippedOnlyWhenAsked() throws {
        let tokenizer = try tokenizer()
        let ids = tokenizer.encode("a<|endoftext|>b<|cursor|>")
        XCTAssertEqual(stream(ids, tokenizer).joined(), "a<|endoftext|>b<|cursor|>")
        XCTAssertEqual(stream(ids, tokenizer, skipSpecialTokens: true).joined(), "ab<|cursor|>")
        XCTAssertEqual(stream([999_999, -1] + ids, tokenizer).joined(), "a<|endoftext|>b<|cursor|>")
    }

    func testRepairOfArbitraryBytesInArbitraryChunksMatchesSwiftsDecoding() {
        // Swift's String(decoding:as:) also substitutes maximal subparts: a second, independent oracle.
        var generator = SplitMix64(seed: 42)
        let interesting: [UInt8] = [0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF,
                                    0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF]
        for _ in 0..<3000 {
            let length = Int(generator.next() % 12)
            let bytes = (0..<length).map { _ in interesting[Int(generator.next() % UInt64(interesting.count))] }
            var repair = UTF8Repair()
            var output = ""
            var index = 0
            while index < bytes.count {
                let chunk = 1 + Int(generator.next() % 3)
                output += repair.take(Array(bytes[index..<min(index + chunk, bytes.count)]), final: false)
                index += chunk
            }
            output += repair.take([], final: true)
            XCTAssertEqual(output, String(decoding: bytes, as: UTF8.self), "\(bytes)")
        }
    }
}
