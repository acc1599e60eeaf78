import FuzzSupport
@testable import InferenceServer

// Input: [split selector][limits selector][bytes of a connection]. The bytes are fed to HTTPRequestParser in the
// slices the first byte picks and every event is drained after each slice; the same bytes are also fed whole.
// Checked: no trap; no request has more body bytes than it declared, than the limit allows or than were fed;
// an error repeats on every later call; and the split makes no difference to the requests or the error.

/// Small limits so that every limit is reached by short inputs; the defaults for everything else.
let smallLimits = HTTPLimits(maxRequestLineBytes: 48, maxHeaderBytes: 96, maxHeaderCount: 4, maxBodyBytes: 64,
                             maxChunkLineBytes: 12, maxTrailerBytes: 24)

struct Outcome: Equatable {
    var requests: [HTTPRequest] = []
    var error: HTTPParseError?
}

func parse(_ slices: [ArraySlice<UInt8>], limits: HTTPLimits) -> Outcome {
    var parser = HTTPRequestParser(limits: limits)
    var outcome = Outcome()
    var fed = 0
    var bodyBytes = 0
    var awaitingBodyAfterContinue = false
    feeding: for slice in slices {
        parser.feed(slice)
        fed += slice.count
        require(parser.bufferedByteCount >= 0 && parser.bufferedByteCount <= fed, "buffered \(parser.bufferedByteCount) of \(fed)")
        while true {
            let event: HTTPParserEvent?
            do {
                event = try parser.next()
            } catch {
                outcome.error = error
                do {
                    _ = try parser.next()
                    require(false, "the parser went on after \(error)")
                } catch let again {
                    require(again == error, "a second call threw \(again) after \(error)")
                }
                break feeding
            }
            guard let event else { break }
            switch event {
            case .sendContinue:
                require(parser.phase == .body, "100-continue outside the body phase")
                require(!awaitingBodyAfterContinue, "two 100-continue for one request")
                awaitingBodyAfterContinue = true
            case .request(let request):
                check(request, limits: limits)
                if awaitingBodyAfterContinue {
                    require(request.version == .http1_1 && !request.headers.tokens(for: "Expect").isEmpty,
                            "100-continue sent for a request that did not expect it")
                    awaitingBodyAfterContinue = false
                }
                bodyBytes += request.body.count
                require(bodyBytes <= fed, "\(bodyBytes) body bytes out of \(fed) fed")
                outcome.requests.append(request)
            }
        }
    }
    return outcome
}

func check(_ request: HTTPRequest, limits: HTTPLimits) {
    require(request.body.count <= limits.maxBodyBytes, "body of \(request.body.count) bytes over the limit")
    require(!request.method.isEmpty && request.method.utf8.allSatisfy(ASCII.isTokenCharacter), "method \(request.method)")
    require(!request.target.isEmpty && request.target.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }, "target \(request.target)")
    require(request.headers.count <= limits.maxHeaderCount, "\(request.headers.count) headers")
    require(request.version == .http1_0 || request.headers.values(for: "Host").count == 1, "HTTP/1.1 without one Host")
    let lengths = request.headers.values(for: "Content-Length")
    if request.headers.contains("Transfer-Encoding") {
        require(lengths.isEmpty, "Content-Length together with Transfer-Encoding")
        require(request.headers.tokens(for: "Transfer-Encoding") == ["chunked"], "framing other than chunked")
    } else if !lengths.isEmpty {
        let declared = try? HTTPRequestParser.contentLength(lengths)
        require(declared == request.body.count, "body of \(request.body.count) bytes, Content-Length \(lengths)")
    } else {
        require(request.body.isEmpty, "a body without framing")
    }
}

func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    guard size >= 2 else { return 0 }
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    let pattern = SplitPattern(selector: input[0])
    let limits = input[1] & 1 == 1 ? smallLimits : HTTPLimits()
    let payload = Array(input[2...])
    let split = parse(pattern.slices(of: payload), limits: limits)
    note("\(pattern): \(split.requests.count) requests, error \(String(describing: split.error))")
    if pattern != .whole {
        let whole = parse(SplitPattern.whole.slices(of: payload), limits: limits)
        require(split == whole, "split \(pattern) gave \(split), whole gave \(whole)")
    }
    return 0
}
