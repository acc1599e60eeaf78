import Foundation
import XCTest
import SpeculativeDecoding
@testable import InferenceServer

final class ServerConfigTests: XCTestCase {
    private let base = URL(fileURLWithPath: "/srv/specserve")

    private func decode(_ text: String) throws -> ServerConfig {
        try ServerConfig.decode(Array(text.utf8), file: "test.json", baseDirectory: base)
    }

    /// The error for `text`, which must fail to decode.
    private func error(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> ConfigError? {
        do {
            _ = try decode(text)
            XCTFail("decoded without an error", file: file, line: line)
            return nil
        } catch let error as ConfigError {
            return error
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: line)
            return nil
        }
    }

    private let minimal = #"{"models": [{"id": "m", "path": "models/m"}]}"#

    func testDefaultJSONWritesOutEveryDefault() throws {
        let url = Fixtures.repositoryRoot.appendingPathComponent("config/default.json")
        let shipped = try ServerConfig.decode([UInt8](Data(contentsOf: url)), file: "config/default.json", baseDirectory: base)
        XCTAssertEqual(shipped.models.map(\.id), ["specserve-code"])
        XCTAssertEqual(shipped.models[0].path, "models/specserve-code")
        XCTAssertEqual(shipped.models[0].speculation.draft.path, "models/specserve-code-draft")
        XCTAssertEqual(shipped.models[0].speculation.defaultMethod, .draft)

        // Every key left out of a config takes the value default.json writes out (models aside).
        var expected = try decode(#"{"models": [{"id": "specserve-code", "path": "models/specserve-code"}]}"#)
        expected.file = shipped.file
        expected.models[0].speculation.draft.path = "models/specserve-code-draft"
        expected.models[0].speculation.defaultMethod = .draft
        expected.models[0].speculation.draft.vocabulary = 2048
        expected.models[0].speculation.mtp.vocabulary = 2048
        expected.models[0].speculation.medusa.vocabulary = 2048
        XCTAssertEqual(shipped, expected)

        // And every key of each section is present in the file.
        let json = try JSONValue.parse([UInt8](Data(contentsOf: url)))
        guard case let .object(root) = json, case let .object(server)? = root["server"], case let .object(engine)? = root["engine"],
              case let .array(models)? = root["models"], case let .object(model)? = models.first,
              case let .object(speculation)? = model["speculation"] else { return XCTFail("unexpected shape") }
        XCTAssertEqual(Set(server.keys), ["host", "port", "api_key_env", "max_connections", "limits", "timeouts", "shutdown_grace_seconds"])
        XCTAssertEqual(Set(engine.keys), ["threads", "max_queue", "max_active", "max_context"])
        XCTAssertEqual(Set(model.keys), ["id", "path", "dtype", "speculation"])
        XCTAssertEqual(Set(speculation.keys), ["default_method", "num_tokens", "adaptive", "auto_disable", "draft", "medusa", "mtp", "ngram"])
    }

    func testRelativePathsStartAtTheParentOfTheConfigFolder() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("specserve-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("config"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("config/test.json").path
        try Data(minimal.utf8).write(to: URL(fileURLWithPath: file))
        XCTAssertThrowsError(try ServerConfig.load(file: file)) { error in
            let message = "\(error)"
            XCTAssertTrue(message.hasPrefix("\(file): models[0].path: no model folder at \(dir.standardizedFileURL.path)/models/m"), message)
        }
        let config = try decode(minimal)
        XCTAssertEqual(config.resolve("models/m").path, "/srv/specserve/models/m")
        XCTAssertEqual(config.resolve("/abs/m").path, "/abs/m")
    }

    func testAMissingModelFolderOrConfigJSONIsReportedWithItsKey() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("specserve-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("models/m"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("config"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var config = try decode(minimal)
        config.baseDirectory = dir
        config.benchmark.prompts = "config/prompts.json"
        XCTAssertThrowsError(try config.checkFiles()) { XCTAssertTrue("\($0)".contains("test.json: models[0].path: ") && "\($0)".contains("has no config.json"), "\($0)") }
        try Data("{}".utf8).write(to: dir.appendingPathComponent("models/m/config.json"))
        config.models[0].speculation.draft.path = "models/draft"
        XCTAssertThrowsError(try config.checkFiles()) { XCTAssertTrue("\($0)".contains("models[0].speculation.draft.path: no model folder"), "\($0)") }
        config.models[0].speculation.draft.path = nil
        XCTAssertThrowsError(try config.checkFiles()) { XCTAssertTrue("\($0)".contains("benchmark.prompts: no file at"), "\($0)") }
        try Data("{}".utf8).write(to: dir.appendingPathComponent("config/prompts.json"))
        XCTAssertNoThrow(try config.checkFiles())
    }

    func testAWrongTypeNamesTheKeyPathAndBothTypes() {
        let text = #"{"models": [{"id": "m", "path": "p", "speculation": {"draft": {"p_min": "high"}}}]}"#
        XCTAssertEqual(error(text)?.description, "test.json: models[0].speculation.draft.p_min: expected a number, found string")
        XCTAssertEqual(error(#"{"server": {"port": "80"}, "models": []}"#)?.description, "test.json: server.port: expected an integer, found string")
        XCTAssertEqual(error(#"{"server": {"port": 80.5}, "models": []}"#)?.path, "server.port")
        XCTAssertEqual(error(#"{"server": {"host": null}, "models": []}"#)?.description, "test.json: server.host: expected a string, found null")
        XCTAssertEqual(error(#"{"engine": [], "models": []}"#)?.description, "test.json: engine: expected an object, found array")
    }

    func testAnUnknownKeyIsRefusedWithItsPath() {
        let e = error(#"{"models": [{"id": "m", "path": "p", "speculation": {"ngram": {"max": 3}}}]}"#)
        XCTAssertEqual(e?.path, "models[0].speculation.ngram.max")
        XCTAssertTrue(e?.message.hasPrefix("unknown key (known keys: max_n, min_n)") ?? false, e?.message ?? "")
        XCTAssertEqual(error(#"{"sever": {}, "models": []}"#)?.path, "sever")
    }

    func testMissingRequiredKeysAreNamed() {
        XCTAssertEqual(error("{}")?.description, "test.json: models: missing (required)")
        XCTAssertEqual(error(#"{"models": []}"#)?.description, "test.json: models: lists no model (at least one is needed)")
        XCTAssertEqual(error(#"{"models": [{"id": "m"}]}"#)?.description, "test.json: models[0].path: missing (required)")
        XCTAssertEqual(error(#"{"models": [{"id": "a", "path": "p"}, {"path": "p"}]}"#)?.path, "models[1].id")
    }

    func testValuesOutOfRangeOrNotAmongTheChoicesAreRefused() {
        func model(_ speculation: String) -> String { #"{"models": [{"id": "m", "path": "p", "speculation": \#(speculation)}]}"# }
        XCTAssertEqual(error(model(#"{"default_method": "eagle"}"#))?.description,
                       "test.json: models[0].speculation.default_method: 'eagle' is not one of none, draft, medusa, mtp, ngram")
        XCTAssertEqual(error(model(#"{"num_tokens": 0}"#))?.description,
                       "test.json: models[0].speculation.num_tokens: 0 is out of range (must be in 1...16)")
        XCTAssertEqual(error(model(#"{"medusa": {"acceptance": "greedy"}}"#))?.path, "models[0].speculation.medusa.acceptance")
        XCTAssertEqual(error(model(#"{"medusa": {"tree": "big"}}"#))?.path, "models[0].speculation.medusa.tree")
        XCTAssertEqual(error(model(#"{"medusa": {"tree": [[0], [-1]]}}"#))?.path, "models[0].speculation.medusa.tree[1][0]")
        XCTAssertEqual(error(model(#"{"ngram": {"min_n": 3, "max_n": 2}}"#))?.path, "models[0].speculation.ngram.max_n")
        XCTAssertEqual(error(model(#"{"auto_disable": {"retry_after": -1}}"#))?.path, "models[0].speculation.auto_disable.retry_after")
        XCTAssertEqual(error(model(#"{"mtp": {"vocabulary": 0}}"#))?.description,
                       "test.json: models[0].speculation.mtp.vocabulary: 0 is out of range (must be in 1...16777216)")
        XCTAssertEqual(error(model(#"{"draft": {"vocabulary": "all"}}"#))?.path, "models[0].speculation.draft.vocabulary")
        XCTAssertEqual(error(model(#"{"medusa": {"vocabulary": -3}}"#))?.path, "models[0].speculation.medusa.vocabulary")
        XCTAssertEqual(error(#"{"server": {"port": 70000}, "models": []}"#)?.path, "server.port")
        XCTAssertEqual(error(#"{"models": [{"id": "m", "path": "p", "dtype": "f16"}]}"#)?.path, "models[0].dtype")
        XCTAssertEqual(error(#"{"models": [{"id": "m", "path": "p"}, {"id": "m", "path": "q"}]}"#)?.description,
                       "test.json: models[1].id: 'm' is already the id of models[0]")
    }

    func testMalformedJSONGivesLineAndColumn() {
        let e = error("{\n  \"models\": [\n    {\"id\": \"m\",}\n  ]\n}")
        XCTAssertEqual(e?.path, "")
        XCTAssertEqual(e?.description, "test.json: not valid JSON at line 3, column 16: expected a key in quotes")
    }

    func testExplicitValuesAndNullsDecode() throws {
        let config = try decode("""
        {"server": {"host": "0.0.0.0", "port": 0, "api_key_env": "KEY", "timeouts": {"head": 1.5}},
         "engine": {"threads": 2, "max_queue": 3, "max_context": 512},
         "models": [{"id": "m", "path": "/abs/m", "speculation": {"default_method": "medusa", "auto_disable": {"retry_after": 0}, "draft": {"path": null, "num_tokens": 7, "vocabulary": 2048},
                     "medusa": {"tree": [[0], [0, 0], [1]], "sizes": [4, 8], "vocabulary": 512}, "mtp": {"num_tokens": 2, "vocabulary": null}}}]}
        """)
        XCTAssertEqual(config.server.host, "0.0.0.0")
        XCTAssertEqual(config.server.apiKeyEnv, "KEY")
        XCTAssertEqual(config.server.timeouts.head, 1.5)
        XCTAssertEqual(config.server.timeouts.idle, 10)
        XCTAssertEqual(config.engine.threads, 2)
        XCTAssertEqual(config.engine.maxContext, 512)
        let s = config.models[0].speculation
        XCTAssertEqual(s.defaultMethod, .medusa)
        XCTAssertNil(s.draft.path)
        XCTAssertEqual(s.medusa.tree, .choices([[0], [0, 0], [1]]))
        XCTAssertEqual(s.medusa.options.choices, [[0], [0, 0], [1]])
        XCTAssertEqual(s.medusa.vocabulary, 512)
        XCTAssertEqual(s.numTokens(for: .draft), 7)
        XCTAssertEqual(s.numTokens(for: .mtp), 2)
        XCTAssertEqual(s.numTokens(for: .ngram), SpeculationSettings.defaultNumDraft)
        XCTAssertEqual(s.draft.vocabulary, 2048)
        XCTAssertEqual(s.autoDisable.retryAfter, 0)
        XCTAssertEqual(s.autoDisable.warmupSteps, 8)
        XCTAssertNil(s.mtp.vocabulary)
        let http = config.server.httpConfiguration(log: nil)
        XCTAssertEqual(http.limits.maxBodyBytes, 16 * 1024 * 1024)
        XCTAssertEqual(http.headTimeout, 1.5)
    }


    func testAnAPIKeyVariableThatIsNotSetStopsTheStart() throws {
        var config = try decode(minimal)
        config.baseDirectory = Fixtures.repositoryRoot
        config.server.apiKeyEnv = "SPECSERVE_TEST_KEY_THAT_IS_NOT_SET"
        XCTAssertThrowsError(try Server(config: config, log: { _ in })) {
            XCTAssertTrue("\($0)".hasPrefix("test.json: server.api_key_env: the environment variable SPECSERVE_TEST_KEY_THAT_IS_NOT_SET is not set"), "\($0)")
        }
    }
}
