import FuzzSupport
@testable import InferenceServer

// Input: a POST /v1/completions body. Checked: no trap; a body that decodes holds only values in the documented
// ranges; a body that does not gets a 400 whose error object is itself valid JSON carrying the message; and any
// JSON document the parser accepts is written back by the response writer (JSONOutput) into a document that
// parses to the same value.

func output(_ value: JSONValue) -> JSONOutput {
    switch value {
    case .null: return .null
    case .bool(let b): return .bool(b)
    case .integer(let n): return .int(Int(n))
    case .number(let d): return .double(d)
    case .string(let s): return .string(s)
    case .array(let items): return .array(items.map(output))
    case .object(let fields): return .fields(fields.map { ($0.key, output($0.value)) })
    }
}

/// Equal up to how a number is spelt: the writer prints a whole-valued double without a fraction, so it reads
/// back as an integer.
func sameValue(_ a: JSONValue, _ b: JSONValue) -> Bool {
    switch (a, b) {
    case (.number(let x), .integer(let n)), (.integer(let n), .number(let x)): return Double(n) == x
    case (.array(let x), .array(let y)): return x.count == y.count && zip(x, y).allSatisfy(sameValue)
    case (.object(let x), .object(let y)):
        return x.count == y.count && x.allSatisfy { key, value in y[key].map { sameValue(value, $0) } ?? false }
    default: return a == b
    }
}

func checkRoundTrip(_ body: [UInt8]) {
    guard let value = try? JSONValue.parse(body) else { return }
    let written = output(value).bytes
    do {
        let reread = try JSONValue.parse(written, maxDepth: 65)
        require(sameValue(value, reread), "\(value) was written as \(String(decoding: written, as: UTF8.self))")
    } catch {
        require(false, "\(value) was written as invalid JSON \(String(decoding: written, as: UTF8.self)): \(error)")
    }
}

func check(_ q: CompletionRequest) {
    require((1...1_000_000).contains(q.maxTokens), "max_tokens \(q.maxTokens)")
    require(q.temperature >= 0 && q.temperature <= 2, "temperature \(q.temperature)")
    require(q.topP > 0 && q.topP <= 1, "top_p \(q.topP)")
    require(q.topK >= 0, "top_k \(q.topK)")
    require(q.minP >= 0 && q.minP <= 1, "min_p \(q.minP)")
    require(q.stop.count <= 4 && !q.stop.contains(""), "stop \(q.stop)")
    require(!q.includeUsage || q.stream, "include_usage without stream")
    if case .tokens(let ids) = q.prompt { require(!ids.isEmpty && ids.allSatisfy { $0 >= 0 }, "prompt ids \(ids)") }
    if let n = q.speculative?.numTokens { require((1...16).contains(n), "num_tokens \(n)") }
    _ = q.sampling
}

func checkError(_ error: APIError) {
    require(error.status.code == 400, "status \(error.status.code) for \(error)")
    let response = error.response
    guard case .object(let root)? = try? JSONValue.parse(response.body), case .object(let fields)? = root["error"] else {
        require(false, "error body is not a JSON error object: \(String(decoding: response.body, as: UTF8.self))")
        return
    }
    require(fields["message"] == .string(error.message), "error message written as \(String(describing: fields["message"]))")
}

func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let body = Array(UnsafeBufferPointer(start: data, count: size))
    checkRoundTrip(body)
    do {
        let request = try CompletionRequest.decode(body)
        note("decoded: \(request)")
        check(request)
    } catch {
        note("refused: \(error)")
        checkError(error)
    }
    return 0
}
