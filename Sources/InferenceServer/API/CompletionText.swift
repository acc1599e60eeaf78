import InferenceCore

// Generated tokens → the completion's text, the same way for a stream and a whole response (so both give the
// same text): the incremental decoder holds back unfinished UTF-8 characters, the stop matcher holds back text
// that could begin a stop sequence and cuts at one.

struct CompletionText {
    private var decoder: IncrementalDecoder
    private var stops: StopSequenceMatcher
    /// Tokens consumed, up to and including the one that completed a stop sequence.
    private(set) var tokenCount = 0
    /// True once a stop sequence matched: the rest of the generation is to be dropped (and the job cancelled).
    var stopped: Bool { stops.matched }

    init(tokenizer: BPETokenizer, stop: [String]) {
        decoder = IncrementalDecoder(tokenizer: tokenizer)
        stops = StopSequenceMatcher(stop)
    }

    /// Adds generated tokens; returns the text they release. Tokens after a stop match are ignored.
    mutating func append(_ tokens: [Int]) -> String {
        var out = ""
        for token in tokens {
            if stops.matched { break }
            tokenCount += 1
            out += stops.push(decoder.append(token))
        }
        return out
    }

    /// The generation ended: releases what was held back (an unfinished character comes out as U+FFFD).
    mutating func finish() -> String {
        guard !stops.matched else { return "" }
        let tail = stops.push(decoder.finish())
        return tail + stops.flush()
    }
}
