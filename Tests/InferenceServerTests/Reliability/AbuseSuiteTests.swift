import Foundation
import Glibc
import XCTest
@testable import InferenceServer

/// Hostile and broken clients against the whole API on a toy model. Every case is a table row with a name: it gets
/// its status and, where a body is sent, an OpenAI error object; a framing error closes the connection while a
/// request error leaves it open for the next request; and after every case the server still answers /health and
/// serves a completion with nothing left over (ReliabilityServer.assertHealthy).
final class AbuseSuiteTests: XCTestCase {
    private var servers: [ReliabilityServer] = []

    override func tearDown() {
        for s in servers { s.stop() }
        servers = []
        super.tearDown()
    }

    private func start(headTimeout: Double = 3, bodyTimeout: Double = 3) throws -> ReliabilityServer {
        let s = try ReliabilityServer(headTimeout: headTimeout, bodyTimeout: bodyTimeout)
        servers.append(s)
        return s
    }

    struct Case {
        var name: String
        var bytes: [UInt8]
        var status: Int
        /// `.none`: any param; `.some(nil)`: null; `.some(name)`: that field.
        var param: String?? = .none
        var fragment: String?
        /// A framing error: `Connection: close`, then the server closes. Otherwise the connection stays usable.
        var closes = false
        var header: (name: String, value: String)?
        var isHead = false
    }

    // MARK: Request builders

    static func request(_ method: String = "POST", _ path: String = "/v1/completions", body: [UInt8]? = nil,
                        headers: String = "") -> [UInt8] {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: test\r\n" + headers
        if let body { head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n" }
        return Array((head + "\r\n").utf8) + (body ?? [])
    }

    /// A completion body: a valid short request with some fields replaced or added (values as JSON text).
    static func body(_ overrides: [(String, String)] = []) -> String {
        var fields = [("model", #""toy""#), ("prompt", #""a""#), ("max_tokens", "2"), ("temperature", "0")]
        for (key, value) in overrides {
            if let i = fields.firstIndex(where: { $0.0 == key }) { fields[i].1 = value } else { fields.append((key, value)) }
        }
        return "{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}"
    }

    static func completion(_ overrides: [(String, String)] = []) -> [UInt8] { request(body: Array(body(overrides).utf8)) }

    static func chunked(_ chunks: String) -> [UInt8] {
        Array(("POST /v1/completions HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks).utf8)
    }

    static let health = Array(APITestServer.requestText("GET", "/health").utf8)

    // MARK: Running a table

    private func run(_ cases: [Case], on s: ReliabilityServer, file: StaticString = #filePath, line: UInt = #line) {
        for c in cases {
            do {
                let client = try s.connect()
                client.send(c.bytes)
                let r = try client.readResponse(timeout: 10, isHead: c.isHead)
                if c.status >= 400 && !c.isHead {
                    OpenAIErrorCheck.assert(r, status: c.status, param: c.param, fragment: c.fragment, c.name, file: file, line: line)
                } else {
                    XCTAssertEqual(r.status, c.status, "\(c.name): \(r.text)", file: file, line: line)
                }
                if let header = c.header {
                    XCTAssertEqual(r.header(header.name), header.value, "\(c.name): \(header.name)", file: file, line: line)
                }
                if c.closes {
                    XCTAssertEqual(r.header("Connection"), "close", "\(c.name)", file: file, line: line)
                    XCTAssertTrue(client.waitForClose(timeout: 3), "\(c.name): the connection stayed open", file: file, line: line)
                } else {
                    XCTAssertNil(r.header("Connection"), "\(c.name)", file: file, line: line)
                    client.send(Self.health)
                    XCTAssertEqual(try client.readResponse(timeout: 5).status, 200, "\(c.name): the connection cannot be reused",
                                   file: file, line: line)
                }
                client.close()
            } catch {
                XCTFail("\(c.name): \(error)", file: file, line: line)
            }
            s.assertHealthy(after: c.name, file: file, line: line)
        }
    }

    // MARK: HTTP framing

    func testOversizedHeadsAndBodiesAreRefusedBeforeTheyAreRead() throws {
        let s = try start()
        run([
            Case(name: "a 20 KB header field (limit 16 KB)", bytes: Self.request("GET", "/health", headers: "X-Big: " + String(repeating: "b", count: 20_000) + "\r\n"),
                 status: 431, param: .some(nil), closes: true),
            Case(name: "101 header fields (limit 100)", bytes: Self.request("GET", "/health", headers: (0...100).map { "X-H\($0): 1\r\n" }.joined()),
                 status: 431, param: .some(nil), closes: true),
            Case(name: "a 9 KB request line (limit 8 KB)", bytes: Self.request("GET", "/" + String(repeating: "a", count: 9_000)),
                 status: 414, param: .some(nil), closes: true),
            Case(name: "Content-Length of 20 MB, body not sent (limit 16 MB)",
                 bytes: Array("POST /v1/completions HTTP/1.1\r\nHost: test\r\nContent-Length: 20000000\r\n\r\n".utf8),
                 status: 413, param: .some(nil), fragment: "too large", closes: true),
            Case(name: "a chunk of 16 MB + 1 announced", bytes: Self.chunked("1000001\r\n"), status: 413, param: .some(nil), closes: true),
        ], on: s)
    }

    func testBadChunkSizesAndChunkFramingAre400AndClose() throws {
        let s = try start()
        let body = Self.body()
        let hex = String(body.utf8.count, radix: 16)
        run([
            Case(name: "a valid chunked body, split in two chunks", bytes: Self.chunked("5\r\n" + body.prefix(5) + "\r\n"
                    + String(body.utf8.count - 5, radix: 16) + "\r\n" + body.dropFirst(5) + "\r\n0\r\n\r\n"), status: 200),
            Case(name: "chunk size not hexadecimal", bytes: Self.chunked("zz\r\n" + body + "\r\n0\r\n\r\n"), status: 400,
                 param: .some(nil), fragment: "not hexadecimal", closes: true),
            Case(name: "negative chunk size", bytes: Self.chunked("-\(hex)\r\n" + body + "\r\n0\r\n\r\n"), status: 400, closes: true),
            Case(name: "chunk size with a 0x prefix", bytes: Self.chunked("0x\(hex)\r\n" + body + "\r\n0\r\n\r\n"), status: 400, closes: true),
            Case(name: "chunk size with a sign", bytes: Self.chunked("+\(hex)\r\n" + body + "\r\n0\r\n\r\n"), status: 400, closes: true),
            // Over Int64: refused as too large (413), never wrapped around to a small size.
            Case(name: "chunk size overflowing 64 bits", bytes: Self.chunked("1" + String(repeating: "0", count: 20) + "\r\n"),
                 status: 413, param: .some(nil), closes: true),
            Case(name: "chunk size line ended by a bare LF", bytes: Self.chunked("\(hex)\n" + body + "\r\n0\r\n\r\n"), status: 400,
                 fragment: "CRLF", closes: true),
            Case(name: "chunk data longer than its size (no CRLF after it)", bytes: Self.chunked("3\r\n" + body + "\r\n0\r\n\r\n"),
                 status: 400, fragment: "CRLF", closes: true),
            Case(name: "chunk data followed by a bare LF", bytes: Self.chunked("\(hex)\r\n" + body + "\n0\r\n\r\n"), status: 400, closes: true),
            Case(name: "chunk size line over 1 KB of extensions", bytes: Self.chunked("\(hex);" + String(repeating: "e", count: 2000) + "\r\n"),
                 status: 400, closes: true),
        ], on: s)
    }

    func testOtherMalformedHeadsGetTheirStatusAndClose() throws {
        let s = try start()
        run([
            Case(name: "garbage request line", bytes: Array("HELLO\r\n\r\n".utf8), status: 400, param: .some(nil), closes: true),
            Case(name: "no Host", bytes: Array("GET /health HTTP/1.1\r\n\r\n".utf8), status: 400, closes: true),
            Case(name: "HTTP/2.0 request line", bytes: Array("GET /health HTTP/2.0\r\nHost: test\r\n\r\n".utf8), status: 505, closes: true),
            Case(name: "space before a header colon", bytes: Self.request("GET", "/health", headers: "X-A : 1\r\n"), status: 400, closes: true),
            Case(name: "NUL in a header value", bytes: Self.request("GET", "/health", headers: "X-A: a\u{0}b\r\n"), status: 400, closes: true),
            Case(name: "header value not UTF-8", bytes: Array("GET /health HTTP/1.1\r\nHost: test\r\nX-A: ".utf8) + [0xFF, 0xFE] + Array("\r\n\r\n".utf8),
                 status: 400, closes: true),
            Case(name: "Content-Length and Transfer-Encoding", bytes: Self.request(headers: "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n"),
                 status: 400, closes: true),
            Case(name: "conflicting Content-Lengths", bytes: Self.request(headers: "Content-Length: 2\r\nContent-Length: 3\r\n"), status: 400, closes: true),
            Case(name: "Content-Length not a number", bytes: Self.request(headers: "Content-Length: -1\r\n"), status: 400, closes: true),
            Case(name: "Transfer-Encoding gzip", bytes: Self.request(headers: "Transfer-Encoding: gzip, chunked\r\n"), status: 501, closes: true),
            Case(name: "unknown expectation", bytes: Self.request(headers: "Expect: 200-ok\r\nContent-Length: 1\r\n"), status: 417, closes: true),
        ], on: s)
    }

    // MARK: Bodies

    func testInvalidUTF8InTheBodyOrThePromptIs400() throws {
        let s = try start()
        func raw(_ parts: [UInt8]...) -> [UInt8] { Self.request(body: parts.flatMap { $0 }) }
        let open = Array(#"{"model": "toy", "max_tokens": 2, "prompt": "a"#.utf8), close = Array(#"b"}"#.utf8)
        run([
            Case(name: "byte FF inside the prompt", bytes: raw(open, [0xFF], close), status: 400, param: .some(nil), fragment: "not valid UTF-8"),
            Case(name: "overlong encoding C0 AF inside the prompt", bytes: raw(open, [0xC0, 0xAF], close), status: 400, fragment: "not valid UTF-8"),
            Case(name: "UTF-8 encoded surrogate ED A0 80 inside the prompt", bytes: raw(open, [0xED, 0xA0, 0x80], close), status: 400,
                 fragment: "not valid UTF-8"),
            Case(name: "truncated 3-byte sequence at the end of the prompt", bytes: raw(open, [0xE2, 0x82], close), status: 400,
                 fragment: "not valid UTF-8"),
            Case(name: "escaped lone surrogate in the prompt", bytes: raw(open, Array(#"\ud800"#.utf8), close), status: 400, fragment: "surrogate"),
            Case(name: "invalid UTF-8 in a key", bytes: raw(Array(#"{"mo"#.utf8), [0xC3, 0x28], Array(#"del": "toy", "prompt": "a"}"#.utf8)),
                 status: 400, param: .some(nil)),
            Case(name: "byte FF between members", bytes: raw(Array(#"{"model": "toy","#.utf8), [0xFF], Array(#""prompt": "a"}"#.utf8)),
                 status: 400, param: .some(nil)),
            Case(name: "a byte-order mark before the object", bytes: raw([0xEF, 0xBB, 0xBF], Array(Self.body().utf8)), status: 400),
            Case(name: "an empty body", bytes: Self.request(body: []), status: 400, param: .some(nil), fragment: "empty"),
            Case(name: "a body that is not JSON", bytes: Self.request(body: Array("model=toy&prompt=a".utf8)), status: 400, fragment: "not valid JSON"),
            Case(name: "a JSON array", bytes: Self.request(body: Array("[]".utf8)), status: 400, param: .some(nil), fragment: "JSON object"),
            Case(name: "a duplicate key", bytes: Self.request(body: Array(#"{"model": "toy", "prompt": "a", "prompt": "b"}"#.utf8)), status: 400,
                 fragment: "duplicate key"),
            Case(name: "arrays nested 10,000 deep", bytes: Self.request(body: Array((String(repeating: "[", count: 10_000)).utf8)), status: 400,
                 fragment: "nested deeper"),
            Case(name: "multi-byte UTF-8 in the prompt (served)", bytes: Self.completion([("prompt", #""naïve 日本 😀""#)]), status: 200),
            Case(name: "escaped NUL in the prompt (served)", bytes: Self.completion([("prompt", #""a\u0000b""#)]), status: 200),
        ], on: s)
    }

    /// Each field of POST /v1/completions with a value of the wrong type (or out of its range): 400 naming the field.
    func testEveryCompletionFieldWithAWrongValueIs400NamingIt() throws {
        let s = try start()
        let rows: [([(String, String)], String)] = [
            ([("model", "5")], "model"), ([("model", "null")], "model"), ([("model", #"["toy"]"#)], "model"),
            ([("prompt", "{}")], "prompt"), ([("prompt", "true")], "prompt"), ([("prompt", "null")], "prompt"),
            ([("prompt", "[]")], "prompt"), ([("prompt", #"["a", "b"]"#)], "prompt"), ([("prompt", "[1.5]")], "prompt[0]"),
            ([("prompt", #"[1, "a"]"#)], "prompt[1]"), ([("prompt", #"[[1, "a"]]"#)], "prompt[0][1]"), ([("prompt", "[[]]")], "prompt[0]"),
            ([("prompt", "[-1]")], "prompt[0]"), ([("prompt", "[null]")], "prompt[0]"), ([("prompt", "[99999]")], "prompt"),
            ([("max_tokens", #""2""#)], "max_tokens"), ([("max_tokens", "2.5")], "max_tokens"), ([("max_tokens", "true")], "max_tokens"),
            ([("max_tokens", "[2]")], "max_tokens"), ([("max_tokens", "{}")], "max_tokens"),
            ([("temperature", #""0""#)], "temperature"), ([("temperature", "false")], "temperature"), ([("temperature", "2.5")], "temperature"),
            ([("top_p", #""1""#)], "top_p"), ([("top_p", "0")], "top_p"), ([("top_p", "1.5")], "top_p"),
            ([("top_k", "1.5")], "top_k"), ([("top_k", #""4""#)], "top_k"), ([("top_k", "-2")], "top_k"),
            ([("min_p", #""0""#)], "min_p"), ([("min_p", "[]")], "min_p"), ([("min_p", "1.5")], "min_p"),
            ([("stop", "5")], "stop"), ([("stop", "[5]")], "stop[0]"), ([("stop", "{}")], "stop"), ([("stop", #"[["a"]]"#)], "stop[0]"),
            ([("stop", #"["a", "b", "c", "d", "e"]"#)], "stop"), ([("stop", #"[""]"#)], "stop"),
            ([("seed", #""1""#)], "seed"), ([("seed", "1.5")], "seed"), ([("seed", "true")], "seed"),
            ([("stream", #""true""#)], "stream"), ([("stream", "1")], "stream"),
            ([("stream_options", #"{"include_usage": true}"#)], "stream_options"),
            ([("stream", "true"), ("stream_options", "[]")], "stream_options"),
            ([("stream", "true"), ("stream_options", #"{"include_usage": "yes"}"#)], "stream_options.include_usage"),
            ([("stream", "true"), ("stream_options", #"{"usage": true}"#)], "stream_options.usage"),
            ([("echo", #""yes""#)], "echo"), ([("echo", "0")], "echo"),
            ([("n", #""1""#)], "n"), ([("n", "2")], "n"), ([("best_of", "1.5")], "best_of"), ([("best_of", "3")], "best_of"),
            ([("logprobs", "1")], "logprobs"), ([("suffix", "5")], "suffix"),
            ([("frequency_penalty", #""0""#)], "frequency_penalty"), ([("frequency_penalty", "0.5")], "frequency_penalty"),
            ([("presence_penalty", "[]")], "presence_penalty"),
            ([("logit_bias", "[]")], "logit_bias"), ([("logit_bias", #"{"5": 1}"#)], "logit_bias"),
            ([("user", "5")], "user"), ([("user", "{}")], "user"),
            ([("speculative", #""draft""#)], "speculative"), ([("speculative", "[]")], "speculative"),
            ([("speculative", #"{"method": 1}"#)], "speculative.method"), ([("speculative", #"{"method": "fast"}"#)], "speculative.method"),
            ([("speculative", #"{"method": "medusa"}"#)], "speculative.method"),
            ([("speculative", #"{"num_tokens": "3"}"#)], "speculative.num_tokens"), ([("speculative", #"{"num_tokens": 0}"#)], "speculative.num_tokens"),
            ([("speculative", #"{"num_tokens": 17}"#)], "speculative.num_tokens"), ([("speculative", #"{"tree": []}"#)], "speculative.tree"),
            ([("max_token", "5")], "max_token"),
        ]
        run(rows.map { overrides, param in
            Case(name: overrides.map { "\($0.0)=\($0.1)" }.joined(separator: " "), bytes: Self.completion(overrides), status: 400,
                 param: .some(param))
        }, on: s)
    }

    func testMaxTokensOutOfRangeAndPromptsOverTheContextAre400() throws {
        let s = try start()  // the toy model's context is 640 tokens
        func ids(_ n: Int) -> String { "[" + Array(repeating: "7", count: n).joined(separator: ",") + "]" }
        var cases = ["-1", "0", "1000001", "9223372036854775807", "-9223372036854775808"].map {
            Case(name: "max_tokens \($0)", bytes: Self.completion([("max_tokens", $0)]), status: 400, param: .some("max_tokens"), fragment: "out of range")
        }
        cases += ["99999999999999999999", "1e300"].map {
            Case(name: "max_tokens \($0) (beyond 64 bits)", bytes: Self.completion([("max_tokens", $0)]), status: 400, param: .some("max_tokens"),
                 fragment: "out of range")
        }
        cases += [
            Case(name: "max_tokens 1000000 (in range, over the context)", bytes: Self.completion([("max_tokens", "1000000")]), status: 400,
                 param: .some("max_tokens"), fragment: "over the context of 640 tokens"),
            Case(name: "639 prompt tokens + max_tokens 1 (exactly the context: served)",
                 bytes: Self.completion([("prompt", ids(639)), ("max_tokens", "1")]), status: 200),
            Case(name: "639 prompt tokens + max_tokens 2", bytes: Self.completion([("prompt", ids(639)), ("max_tokens", "2")]), status: 400,
                 param: .some("max_tokens"), fragment: "641 tokens in total"),
            Case(name: "640 prompt tokens + max_tokens 1 (the prompt alone fills the context)",
                 bytes: Self.completion([("prompt", ids(640)), ("max_tokens", "1")]), status: 400, param: .some("prompt"),
                 fragment: "the prompt has 640 tokens"),
            Case(name: "a text prompt of 801 tokens", bytes: Self.completion([("prompt", "\"" + String(repeating: "word ", count: 800) + "\"")]),
                 status: 400, param: .some("prompt"), fragment: "the prompt has 801 tokens"),
            Case(name: "a prompt of 100,000 token ids", bytes: Self.completion([("prompt", ids(100_000))]), status: 400, param: .some("prompt"),
                 fragment: "over the context"),
        ]
        run(cases, on: s)
    }

    // MARK: Routing

    func testUnknownModelsAndRoutesAre404AndWrongMethods405() throws {
        let s = try start()
        run([
            Case(name: "unknown model", bytes: Self.completion([("model", #""gpt-4""#)]), status: 404, param: .some("model"),
                 fragment: "'gpt-4' does not exist"),
            Case(name: "empty model name", bytes: Self.completion([("model", #""""#)]), status: 404, param: .some("model")),
            Case(name: "unknown model in a stream", bytes: Self.completion([("model", #""nope""#), ("stream", "true")]), status: 404,
                 param: .some("model")),
            Case(name: "GET /v1/models/gpt-4", bytes: Self.request("GET", "/v1/models/gpt-4"), status: 404, param: .some("model")),
            Case(name: "a model id with an encoded path", bytes: Self.request("GET", "/v1/models/..%2F..%2Fetc%2Fpasswd"), status: 404,
                 param: .some("model")),
            Case(name: "a model id with an encoded name (served)", bytes: Self.request("GET", "/v1/models/%74oy"), status: 200),
            Case(name: "unknown route", bytes: Self.request("GET", "/v2/completions"), status: 404, param: .some(nil), fragment: "no route"),
            Case(name: "trailing slash", bytes: Self.request("POST", "/v1/completions/", body: Array(Self.body().utf8)), status: 404),
            Case(name: "asterisk target", bytes: Self.request("OPTIONS", "*"), status: 404),
            Case(name: "a query string (served)", bytes: Self.request("GET", "/health?verbose=1"), status: 200),
            Case(name: "GET /v1/completions", bytes: Self.request("GET", "/v1/completions"), status: 405, param: .some(nil), header: ("Allow", "POST")),
            Case(name: "PUT /v1/completions", bytes: Self.request("PUT", "/v1/completions", body: Array(Self.body().utf8)), status: 405,
                 header: ("Allow", "POST")),
            Case(name: "HEAD /v1/completions", bytes: Self.request("HEAD", "/v1/completions"), status: 405, header: ("Allow", "POST"), isHead: true),
            Case(name: "DELETE /health", bytes: Self.request("DELETE", "/health"), status: 405, header: ("Allow", "GET, HEAD")),
            Case(name: "POST /v1/models", bytes: Self.request("POST", "/v1/models", body: Array("{}".utf8)), status: 405, header: ("Allow", "GET, HEAD")),
            Case(name: "GET /tokenize", bytes: Self.request("GET", "/tokenize"), status: 405, header: ("Allow", "POST")),
            Case(name: "lowercase method", bytes: Self.request("post", "/v1/completions", body: Array(Self.body().utf8)), status: 405),
        ], on: s)
    }

    // MARK: Slow clients

    func testAClientSendingOneByteAtATimeIsServedWhenItFinishesInTime() throws {
        let s = try start(headTimeout: 3, bodyTimeout: 3)
        let bytes = Self.completion([("prompt", #""def f(x):""#), ("max_tokens", "4")])
        let client = try s.connect()
        let began = Monotonic.now()
        for byte in bytes {  // the pacing is the behaviour under test: each byte is its own segment
            client.send([byte])
            usleep(1_000)
        }
        let r = try client.readResponse(timeout: 10)
        XCTAssertEqual(r.status, 200, r.text)
        XCTAssertGreaterThan(Monotonic.now() - began, Double(bytes.count) * 0.001)
        XCTAssertEqual(JSONTesting.text(try JSONTesting.object(r.body)), soloText(s.model.family, "def f(x):", maxTokens: 4))
        client.close()
        s.assertHealthy(after: "a byte-at-a-time request")
    }

    func testAHeadOrBodyThatStallsGets408AndCloses() throws {
        let s = try start(headTimeout: 0.3, bodyTimeout: 0.3)
        let body = Self.body()
        run([
            Case(name: "head stops after the request line", bytes: Array("POST /v1/completions HTTP/1.1\r\n".utf8), status: 408,
                 param: .some(nil), closes: true),
            Case(name: "head stops inside a header", bytes: Array("GET /health HTTP/1.1\r\nHost: te".utf8), status: 408, closes: true),
            Case(name: "body stops after 10 of its bytes", bytes: Array("POST /v1/completions HTTP/1.1\r\nHost: test\r\nContent-Length: \(body.utf8.count)\r\n\r\n".utf8)
                    + Array(body.utf8.prefix(10)), status: 408, closes: true),
            Case(name: "chunked body stops inside a chunk", bytes: Self.chunked(String(body.utf8.count, radix: 16) + "\r\n" + body.prefix(10)),
                 status: 408, closes: true),
        ], on: s)

        // A head that keeps trickling (one byte every 20 ms) is cut off at its deadline all the same.
        let client = try s.connect()
        let trickle = Array(("GET /health HTTP/1.1\r\nHost: test\r\nX-Slow: " + String(repeating: "s", count: 200) + "\r\n\r\n").utf8)
        var p = pollfd(fd: client.fd, events: Int16(POLLIN), revents: 0)
        var sent = 0
        while sent < trickle.count && poll(&p, 1, 20) == 0 {
            client.send([trickle[sent]])
            sent += 1
        }
        OpenAIErrorCheck.assert(try client.readResponse(timeout: 3), status: 408, param: .some(nil), "trickling head")
        XCTAssertLessThan(sent, trickle.count, "the head was read to its end")
        XCTAssertTrue(client.waitForClose(timeout: 3))
        client.close()
        s.assertHealthy(after: "a trickling head")
    }

    // MARK: Pipelining

    /// Requests pipelined before a malformed one are answered in order (request errors do not break the pipeline);
    /// the malformed one gets 400 and the connection closes, so nothing after it is answered.
    func testPipelinedRequestsBeforeAMalformedOneAreAnsweredAndItGets400() throws {
        let s = try start()
        let prompt = "def f(x):"
        let solo = soloText(s.model.family, prompt, maxTokens: 5)
        let good = Self.completion([("prompt", JSONText.quoted(prompt)), ("max_tokens", "5")])
        let stream = Self.completion([("prompt", JSONText.quoted(prompt)), ("max_tokens", "5"), ("stream", "true")])
        let malformed: [(String, [UInt8])] = [
            ("a space in a header name", Array("GET /health HTTP/1.1\r\nHost: test\r\nBad Header: 1\r\n\r\n".utf8)),
            ("a chunk size that is not hexadecimal", Self.chunked("zz\r\n{}\r\n0\r\n\r\n")),
            ("a Content-Length that is not a number", Array("POST /v1/completions HTTP/1.1\r\nHost: test\r\nContent-Length: 1x\r\n\r\n".utf8)),
            ("a garbage request line", Array("GARBAGE\r\n\r\n".utf8)),
        ]
        for (name, bad) in malformed {
            let client = try s.connect()
            client.send(good + Self.health + Self.request(body: Array("{".utf8)) + stream + bad + Self.health + good)
            let first = try client.readResponse(timeout: 20)
            XCTAssertEqual(first.status, 200, "\(name): \(first.text)")
            XCTAssertEqual(JSONTesting.text(try JSONTesting.object(first.body)), solo, name)
            XCTAssertEqual(try client.readResponse(timeout: 5).status, 200, "\(name): /health")
            OpenAIErrorCheck.assert(try client.readResponse(timeout: 5), status: 400, param: .some(nil), fragment: "not valid JSON", "\(name): bad JSON")
            let streamed = try client.readResponse(timeout: 20)
            XCTAssertEqual(streamed.status, 200, name)
            let events = try SSE.parse(streamed.text)
            XCTAssertTrue(events.done, name)
            XCTAssertEqual(SSE.text(events.events), solo, name)
            let rejected = try client.readResponse(timeout: 5)
            OpenAIErrorCheck.assert(rejected, status: 400, param: .some(nil), name)
            XCTAssertEqual(rejected.header("Connection"), "close", name)
            XCTAssertTrue(client.waitForClose(timeout: 3), "\(name): something was answered after the malformed request")
            client.close()
            s.assertHealthy(after: "pipelined: \(name)")
        }
    }
}
