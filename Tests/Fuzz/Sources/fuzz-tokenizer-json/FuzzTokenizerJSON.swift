import Foundation
import FuzzSupport
import InferenceCore

// Input: tokenizer.json content, optionally followed by a 0 byte and a text to encode (a fixed text otherwise).
// Checked: no trap; a file that loads encodes the text into ids that are all tokens of its vocabulary and decode
// without a trap, each id's bytes and string can be looked up, and a file that does not load is refused with an error naming it.

let sampleText = "Hello, world! It's 2026: naïve café 🙂\n\t<|endoftext|>  x=1+2; // done"

func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let input = UnsafeBufferPointer(start: data, count: size)
    let separator = input.firstIndex(of: 0)
    let json = Data(input[..<(separator ?? size)])
    let text = separator.map { String(decoding: input[($0 + 1)...], as: UTF8.self) } ?? sampleText
    let tokenizer: BPETokenizer
    do {
        tokenizer = try BPETokenizer(jsonData: json, source: "fuzz/tokenizer.json")
    } catch let error as TokenizerLoadError {
        note("refused: \(error)")
        require(error.message.hasPrefix("fuzz/tokenizer.json: "), "error that does not name the file: \(error)")
        return 0
    } catch {
        require(false, "unexpected error type: \(error)")
        return 0
    }
    require(tokenizer.vocabSize >= 256, "vocabulary of \(tokenizer.vocabSize) without every byte")
    require(tokenizer.specialTokenIDs.allSatisfy { $0 >= 0 && $0 < tokenizer.vocabSize }, "special ids outside the vocabulary")
    let ids = tokenizer.encode(text)
    note("vocabulary \(tokenizer.vocabSize): \(text.debugDescription) -> \(ids)")
    // The model's embedding table has vocabSize rows (checked when a model family loads): every id must be a token.
    require(ids.allSatisfy { tokenizer.tokenString($0) != nil }, "id outside the vocabulary of \(tokenizer.vocabSize) in \(ids)")
    if !text.isEmpty { require(!ids.isEmpty, "no ids for \(text.debugDescription)") }
    _ = tokenizer.decode(ids)
    _ = tokenizer.decode(ids, skipSpecialTokens: true)
    _ = tokenizer.decode([-1, tokenizer.vocabSize, Int.max] + ids)
    for id in ids.prefix(64) {
        _ = tokenizer.tokenBytes(id)
        if let string = tokenizer.tokenString(id) { _ = tokenizer.tokenID(string) }
    }
    return 0
}
