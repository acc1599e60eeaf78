import FuzzSupport
@testable import InferenceServer

// Input: [split selector][limits selector][bytes after a chunked request head]. The bytes are fed to
// ChunkedDecoder in the slices the first byte picks, as a connection would (only what the decoder did not
// consume is offered again). Checked: no trap; it never takes more than it is given nor decodes more than it
// took or than its limit; once complete it takes nothing more; and the split makes no difference.

struct Outcome: Equatable {
    var body: [UInt8]
    var consumed: Int
    var complete: Bool
    var error: HTTPParseError?
}

func decode(_ slices: [ArraySlice<UInt8>], small: Bool) -> Outcome {
    var decoder = small ? ChunkedDecoder(maxBodyBytes: 48, maxLineBytes: 10, maxTrailerBytes: 20)
                        : ChunkedDecoder(limits: HTTPLimits())
    var consumed = 0
    for slice in slices {
        let wasComplete = decoder.isComplete
        let took: Int
        do {
            took = try decoder.feed(slice)
        } catch {
            require(!wasComplete, "a complete decoder threw \(error)")
            // How much earlier slices took depends on the split; what was decoded before the error does not.
            return Outcome(body: decoder.body, consumed: -1, complete: false, error: error)
        }
        require(took >= 0 && took <= slice.count, "took \(took) of \(slice.count)")
        if wasComplete { require(took == 0, "took \(took) bytes after the end of the body") }
        if !decoder.isComplete { require(took == slice.count, "stopped at \(took) of \(slice.count) before the end") }
        consumed += took
        require(decoder.body.count <= consumed, "decoded \(decoder.body.count) bytes from \(consumed)")
        require(decoder.body.count <= decoder.maxBodyBytes, "decoded \(decoder.body.count) bytes, limit \(decoder.maxBodyBytes)")
    }
    return Outcome(body: decoder.body, consumed: consumed, complete: decoder.isComplete, error: nil)
}

func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    guard size >= 2 else { return 0 }
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    let pattern = SplitPattern(selector: input[0])
    let small = input[1] & 1 == 1
    let payload = Array(input[2...])
    let split = decode(pattern.slices(of: payload), small: small)
    note("\(pattern): \(split)")
    if pattern != .whole {
        let whole = decode(SplitPattern.whole.slices(of: payload), small: small)
        require(split == whole, "split \(pattern) gave \(split), whole gave \(whole)")
    }
    return 0
}
