import Foundation
import XCTest
import InferenceCore
import SpeculativeDecoding
@testable import InferenceServer

/// Small models for the API tests: random weights sized to the committed fixture tokenizer.
enum APIToyModel {
    static func tokenizer() throws -> BPETokenizer {
        try BPETokenizer(contentsOf: Fixtures.url("tokenizer/fixture-tokenizer.json"))
    }

    static func config(vocab: Int, hidden: Int = 32, layers: Int = 2, context: Int = 640) -> LlamaConfig {
        LlamaConfig(hiddenSize: hidden, intermediateSize: 2 * hidden, numHiddenLayers: layers, numAttentionHeads: 4,
                    numKeyValueHeads: 2, rmsNormEps: 1e-5, vocabSize: vocab, maxPositionEmbeddings: context, tieWordEmbeddings: true)
    }

    /// A target and, as its draft, the same weights (every draft token is accepted: the speculation counters move).
    static func family(hidden: Int = 32, layers: Int = 2, context: Int = 640) throws -> ModelFamily {
        let tokenizer = try tokenizer()
        let target = LlamaModel(weights: .random(config: config(vocab: tokenizer.vocabSize, hidden: hidden, layers: layers, context: context),
                                                 seed: 21, scale: 2))
        return ModelFamily(target: target, tokenizer: tokenizer, stopTokens: [], draft: target, targetDirectory: Fixtures.directory)
    }
}

/// Collects log lines.
final class LogSink: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []
    var lines: [String] { lock.withLock { stored } }
    var log: @Sendable (String) -> Void { { [self] line in lock.withLock { stored.append(line) } } }
}

/// A router with one toy model behind a loopback HTTPServer on a free port.
final class APITestServer: @unchecked Sendable {
    let model: ServedModel
    let router: APIRouter
    let http: HTTPServer
    let logs = LogSink()

    init(family: ModelFamily? = nil, engine settings: EngineSettings = EngineSettings(maxQueue: 32, maxActive: 8),
         apiKey: String? = nil, heartbeat: Double = 2, startEngine: Bool = true, defaultMethod: SpeculativeMethod = .none,
         ready: Bool = true, configure: (inout SpeculationConfig) -> Void = { _ in }) throws {
        let family = try family ?? APIToyModel.family()
        var speculation = SpeculationConfig()
        speculation.defaultMethod = defaultMethod
        configure(&speculation)
        model = ServedModel(id: "toy", family: family, engine: Engine(family: family, settings: settings), speculation: speculation)
        router = APIRouter(options: .init(apiKey: apiKey, heartbeatSeconds: heartbeat, log: logs.log))
        let configuration = HTTPServerConfiguration(host: "127.0.0.1", port: 0, maxConnections: 64, headTimeout: 5, bodyTimeout: 5,
                                                    idleTimeout: 5, writeTimeout: 5, lingerTimeout: 0.2, log: nil)
        http = HTTPServer(configuration: configuration, handler: router.handler)
        try http.start()
        if startEngine { model.engine.start() }
        if ready { router.setReady(models: [model]) }
    }

    func stop() {
        router.setStopping()
        http.shutdown(gracePeriod: 1)
        model.engine.stop()
    }

    func connect() throws -> HTTPTestClient { try HTTPTestClient(port: http.port) }

    static func requestText(_ method: String, _ path: String, body: String? = nil, headers: [String: String] = [:]) -> String {
        var text = "\(method) \(path) HTTP/1.1\r\nHost: test\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        if let body { text += "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n" }
        return text + "\r\n" + (body ?? "")
    }

    func request(_ method: String, _ path: String, body: String? = nil, headers: [String: String] = [:],
                 timeout: Double = 20) throws -> HTTPTestClient.Response {
        let client = try connect()
        client.send(Self.requestText(method, path, body: body, headers: headers))
        return try client.readResponse(timeout: timeout)
    }

    func post(_ path: String, _ body: String, headers: [String: String] = [:]) throws -> HTTPTestClient.Response {
        try request("POST", path, body: body, headers: headers)
    }

    /// A completion's JSON object (non-streaming), failing the test on another status.
    func complete(_ body: String, file: StaticString = #filePath, line: UInt = #line) throws -> [String: JSONValue] {
        let response = try post("/v1/completions", body)
        XCTAssertEqual(response.status, 200, response.text, file: file, line: line)
        return try JSONTesting.object(response.body)
    }

    /// A streamed completion: its data events (parsed, without [DONE]), whether [DONE] came, and comments.
    func stream(_ body: String) throws -> (events: [[String: JSONValue]], done: Bool, comments: [String]) {
        let response = try post("/v1/completions", body)
        XCTAssertEqual(response.status, 200, response.text)
        XCTAssertEqual(response.header("Content-Type"), "text/event-stream")
        return try SSE.parse(response.text)
    }
}

enum SSE {
    static func parse(_ text: String) throws -> (events: [[String: JSONValue]], done: Bool, comments: [String]) {
        var events: [[String: JSONValue]] = []
        var done = false
        var comments: [String] = []
        for block in text.components(separatedBy: "\n\n") where !block.isEmpty {
            if block.hasPrefix(": ") { comments.append(String(block.dropFirst(2))); continue }
            guard block.hasPrefix("data: ") else { throw JSONFieldError(path: "", message: "not an SSE event: \(block)") }
            let data = String(block.dropFirst(6))
            XCTAssertFalse(done, "an event after [DONE]")
            if data == "[DONE]" { done = true; continue }
            events.append(try JSONTesting.object(Array(data.utf8)))
        }
        return (events, done, comments)
    }

    /// The text of a stream's events, concatenated.
    static func text(_ events: [[String: JSONValue]]) -> String {
        events.compactMap { JSONTesting.choice($0)?["text"] }.compactMap { if case let .string(s) = $0 { s } else { nil } }.joined()
    }
}

enum JSONTesting {
    static func object(_ bytes: [UInt8]) throws -> [String: JSONValue] {
        guard case let .object(o) = try JSONValue.parse(bytes) else {
            throw JSONFieldError(path: "", message: "not an object: \(String(decoding: bytes, as: UTF8.self))")
        }
        return o
    }

    static func choice(_ o: [String: JSONValue]) -> [String: JSONValue]? {
        guard case let .array(choices)? = o["choices"], case let .object(c)? = choices.first else { return nil }
        return c
    }

    static func text(_ o: [String: JSONValue]) -> String? {
        if case let .string(s)? = choice(o)?["text"] { return s }
        return nil
    }

    static func finishReason(_ o: [String: JSONValue]) -> JSONValue? { choice(o)?["finish_reason"] }

    static func int(_ v: JSONValue?) -> Int? {
        switch v {
        case let .integer(n)?: return Int(n)
        case let .number(d)?: return Int(exactly: d)
        default: return nil
        }
    }

    static func path(_ o: [String: JSONValue], _ keys: String...) -> JSONValue? {
        var current: JSONValue = .object(o)
        for key in keys {
            guard case let .object(fields) = current, let next = fields[key] else { return nil }
            current = next
        }
        return current
    }

    static func error(_ response: HTTPTestClient.Response) throws -> (message: String, type: String, param: JSONValue?, code: Int?) {
        let o = try object(response.body)
        guard case let .object(e)? = o["error"], case let .string(message)? = e["message"], case let .string(type)? = e["type"] else {
            throw JSONFieldError(path: "error", message: "not an OpenAI error: \(response.text)")
        }
        return (message, type, e["param"], int(e["code"]))
    }
}

/// The greedy output of `prompt` run alone, outside the server, as text.
func soloText(_ family: ModelFamily, _ prompt: String, maxTokens: Int) -> String {
    let g = Generation(target: family.target, prompt: family.tokenizer.encode(prompt), maxTokens: maxTokens)
    g.run()
    return family.tokenizer.decode(Array(g.generated))
}

/// Polls `condition` until it holds or `timeout` passes.
func eventually(timeout: Double = 10, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        usleep(5_000)
    }
    return condition()
}

/// A test case that starts API servers over loopback and stops them all after each test.
class APIServerTestCase: XCTestCase {
    private var servers: [APITestServer] = []

    override func tearDown() {
        for s in servers { s.stop() }
        servers = []
        super.tearDown()
    }

    func start(_ make: () throws -> APITestServer = { try APITestServer() }) throws -> APITestServer {
        let s = try make()
        servers.append(s)
        return s
    }
}
