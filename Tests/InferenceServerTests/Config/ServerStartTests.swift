import Foundation
import Glibc
import XCTest
import InferenceCore
import SpeculativeDecoding
@testable import InferenceServer

/// The whole start-up from a config file: load, calibrate, serve, stop — on a small model written to disk.
final class ServerStartTests: XCTestCase {
    private var roots: [URL] = []

    override func tearDown() {
        for root in roots { try? FileManager.default.removeItem(at: root) }
        roots = []
        super.tearDown()
    }

    private func folder(speculation: String = "{}", extraServer: String = "", extraModel: String = "") throws -> String {
        let (root, config) = try ToyModelFolder.make(speculation: speculation, extraServer: extraServer, extraModel: extraModel)
        roots.append(root)
        return config
    }

    func testAServerStartsFromItsConfigFileServesAndStops() throws {
        let file = try folder(speculation: #"{"default_method": "ngram", "num_tokens": 4}"#)
        let logs = LogSink()
        let server = try Server(config: try ServerConfig.load(file: file), log: logs.log)
        try server.start()
        XCTAssertGreaterThan(server.port, 0)
        let lines = logs.lines
        XCTAssertTrue(lines.contains { $0.hasPrefix("loaded toy from ") && $0.contains("MB of weights") && $0.contains("methods none/ngram") }, "\(lines)")
        XCTAssertTrue(lines.contains { $0.hasPrefix("calibrated verify cost") }, "\(lines)")
        XCTAssertTrue(lines.contains { $0.hasPrefix("kernels: ") && $0.contains("1 kernel threads") }, "\(lines)")
        XCTAssertTrue(lines.contains { $0.hasPrefix("ready: serving toy") }, "\(lines)")

        let client = try HTTPTestClient(port: server.port)
        client.send(APITestServer.requestText("POST", "/v1/completions", body: #"{"model": "toy", "prompt": "def f(x):", "max_tokens": 6, "temperature": 0}"#))
        let response = try client.readResponse(timeout: 10)
        XCTAssertEqual(response.status, 200, response.text)
        let o = try JSONTesting.object(response.body)
        XCTAssertEqual(JSONTesting.path(o, "metrics", "speculative_decoding", "method"), .string("ngram"))
        XCTAssertEqual(JSONTesting.int(JSONTesting.path(o, "usage", "completion_tokens")), 6)
        let models = server.router.models
        XCTAssertEqual(models.first?.costs[.none]?.verify.count, 18, "verify costs for 1…17 rows were measured")
        // The benchmark's default prompts come from the config.
        client.send(APITestServer.requestText("POST", "/v1/benchmark", body: #"{"model": "toy", "max_tokens": 4, "repeats": 1}"#))
        let bench = try client.readResponse(timeout: 20)
        XCTAssertEqual(bench.status, 200, bench.text)
        XCTAssertEqual(JSONTesting.int(try JSONTesting.object(bench.body)["prompts"]), 2)

        server.shutdown()
        XCTAssertFalse(server.http.isRunning)
        XCTAssertEqual(server.router.phase, .stopping)
    }

    func testAModelThatFailsToLoadNamesTheConfigKeyAndNothingIsServed() throws {
        let file = try folder()
        let modelFile = URL(fileURLWithPath: file).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("models/toy/model.safetensors")
        try Data("not a safetensors file".utf8).write(to: modelFile)
        let server = try Server(config: try ServerConfig.load(file: file), log: { _ in })
        XCTAssertThrowsError(try server.start(calibrate: false)) { error in
            XCTAssertTrue("\(error)".hasPrefix("\(file): models[0].path: "), "\(error)")
            XCTAssertTrue("\(error)".contains("model.safetensors"), "\(error)")
        }
        XCTAssertFalse(server.http.isRunning)
    }

    /// `dtype: bf16` streams the target as BF16 only where that changes nothing: the toy model's random F32 weights
    /// are not BF16 values, so it is refused, naming the key.
    func testBF16StreamingOfWeightsThatAreNotBF16IsRefusedNamingTheKey() throws {
        let file = try folder(extraModel: #", "dtype": "bf16""#)
        let server = try Server(config: try ServerConfig.load(file: file), log: { _ in })
        XCTAssertThrowsError(try server.start(calibrate: false)) { error in
            XCTAssertTrue("\(error)".hasPrefix("\(file): models[0].dtype: 'bf16' streams the target's weights as BF16"), "\(error)")
            XCTAssertTrue("\(error)".contains("use 'f32'"), "\(error)")
        }
        XCTAssertFalse(server.http.isRunning)
    }

    func testADefaultMethodTheModelCannotRunIsRefusedAtStart() throws {
        let file = try folder(speculation: #"{"default_method": "medusa"}"#)
        let server = try Server(config: try ServerConfig.load(file: file), log: { _ in })
        XCTAssertThrowsError(try server.start(calibrate: false)) { error in
            XCTAssertTrue("\(error)".contains("models[0].speculation.default_method: 'medusa' is not available"), "\(error)")
            XCTAssertTrue("\(error)".contains("medusa_lm_head.safetensors"), "\(error)")
        }
    }

    func testADraftVocabularyNeedsTheTokenCountsFileAndThenDraftsFromTheMostFrequentTokens() throws {
        let file = try folder(speculation: #"{"draft": {"path": "models/toy", "vocabulary": 50}}"#)
        let model = URL(fileURLWithPath: file).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("models/toy")
        XCTAssertThrowsError(try Server(config: try ServerConfig.load(file: file), log: { _ in }).start(calibrate: false)) { error in
            XCTAssertTrue("\(error)".hasPrefix("\(file): models[0].speculation.draft.vocabulary: "), "\(error)")
            XCTAssertTrue("\(error)".contains("token_frequency.json"), "\(error)")
        }
        let vocab = try BPETokenizer(contentsOf: model.appendingPathComponent("tokenizer.json")).vocabSize
        let counts = (0..<vocab).map { ($0 * 37) % 101 }
        try Data(#"{"counts": \#(counts)}"#.utf8).write(to: model.appendingPathComponent("token_frequency.json"))
        let logs = LogSink()
        let server = try Server(config: try ServerConfig.load(file: file), log: logs.log)
        try server.start(calibrate: false)
        defer { server.shutdown() }
        XCTAssertTrue(logs.lines.contains { $0.contains("draft drafts from the 50 most frequent tokens") }, "\(logs.lines)")
        XCTAssertEqual(server.router.models.first?.family.draftVocabulary?.ids.count, 50)
    }

    func testSIGTERMDrainsStopsTheEnginesAndReportsStopped() throws {
        let file = try folder()
        let server = try Server(config: try ServerConfig.load(file: file), log: { _ in })
        try server.start(calibrate: false)
        let stopped = DispatchSemaphore(value: 0)
        let handler = try server.installSignalHandlers { stopped.signal() }
        defer { handler.uninstall() }
        let client = try HTTPTestClient(port: server.port)
        client.send(APITestServer.requestText("GET", "/health"))
        XCTAssertEqual(try client.readResponse().status, 200)
        kill(getpid(), SIGTERM)
        XCTAssertEqual(stopped.wait(timeout: .now() + 10), .success)
        XCTAssertFalse(server.http.isRunning)
        XCTAssertEqual(server.router.phase, .stopping)
        XCTAssertThrowsError(try server.router.models[0].engine.submit(prompt: [1], parameters: JobParameters(maxTokens: 1)) { _ in }) {
            XCTAssertEqual($0 as? EngineError, .stopped)
        }
    }
}
