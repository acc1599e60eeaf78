import Foundation
import Glibc
import XCTest
import InferenceCore
import SpeculativeDecoding
@testable import InferenceServer

/// The API on a toy model behind a loopback server whose timeouts a test chooses, with an optional fault injected
/// into the engine; and the checks every reliability test ends with: the server still answers /health and serves
/// a completion, and nothing it held for the test (connections, jobs) is left over.
final class ReliabilityServer: @unchecked Sendable {
    let model: ServedModel
    let router: APIRouter
    let http: HTTPServer
    let logs = LogSink()
    /// The greedy output of `probeBody`, computed alone.
    let probeText: String

    static let probePrompt = "x = 1"
    static let probeBody = #"{"model": "toy", "prompt": "x = 1", "max_tokens": 2, "temperature": 0}"#

    init(family: ModelFamily? = nil, engine settings: EngineSettings = EngineSettings(maxQueue: 16, maxActive: 8),
         headTimeout: Double = 3, bodyTimeout: Double = 3, startEngine: Bool = true,
         faultInjection: (@Sendable (Job, Int) -> String?)? = nil) throws {
        let family = try family ?? APIToyModel.family()
        let engine = Engine(family: family, settings: settings)
        engine.faultInjection = faultInjection
        model = ServedModel(id: "toy", family: family, engine: engine)
        router = APIRouter(options: .init(log: logs.log))
        let logs = self.logs
        let configuration = HTTPServerConfiguration(host: "127.0.0.1", port: 0, maxConnections: 64, headTimeout: headTimeout,
                                                    bodyTimeout: bodyTimeout, idleTimeout: 5, writeTimeout: 5, lingerTimeout: 0.2,
                                                    log: { logs.log("http: " + $0) })
        http = HTTPServer(configuration: configuration, handler: router.handler)
        probeText = soloText(family, Self.probePrompt, maxTokens: 2)
        try http.start()
        if startEngine { engine.start() }
        router.setReady(models: [model])
    }

    func stop() {
        router.setStopping()
        http.shutdown(gracePeriod: 1)
        model.engine.stop()
    }

    /// A new connection with Nagle off, so that each `send` leaves as its own segment.
    func connect() throws -> HTTPTestClient {
        let client = try HTTPTestClient(port: http.port)
        var one: Int32 = 1
        setsockopt(client.fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return client
    }

    func post(_ body: String) throws -> HTTPTestClient.Response {
        let client = try connect()
        defer { client.close() }
        client.send(APITestServer.requestText("POST", "/v1/completions", body: body))
        return try client.readResponse(timeout: 20)
    }

    /// The server after a case: a fresh connection gets 200 from /health and the probe completion's solo text;
    /// once every client has gone, no connection, job or queue entry is left behind.
    func assertHealthy(after name: String, file: StaticString = #filePath, line: UInt = #line) {
        do {
            let client = try connect()
            client.send(APITestServer.requestText("GET", "/health"))
            let health = try client.readResponse(timeout: 5)
            XCTAssertEqual(health.status, 200, "after \(name): /health \(health.text)", file: file, line: line)
            XCTAssertEqual(health.text, #"{"status":"ok"}"#, "after \(name)", file: file, line: line)
            client.send(APITestServer.requestText("POST", "/v1/completions", body: Self.probeBody))
            let completion = try client.readResponse(timeout: 20)
            XCTAssertEqual(completion.status, 200, "after \(name): completion \(completion.text)", file: file, line: line)
            XCTAssertEqual(JSONTesting.text(try JSONTesting.object(completion.body)), probeText, "after \(name)", file: file, line: line)
            client.close()
        } catch {
            XCTFail("after \(name): the server did not answer: \(error)", file: file, line: line)
        }
        XCTAssertTrue(eventually { http.connectionCount == 0 }, "after \(name): \(http.connectionCount) connections left open",
                      file: file, line: line)
        XCTAssertTrue(eventually { model.gate.inFlight == 0 && model.engine.waitingCount == 0 },
                      "after \(name): \(model.gate.inFlight) jobs in flight, \(model.engine.waitingCount) queued", file: file, line: line)
    }
}

enum OpenAIErrorCheck {
    /// `response` is `status` with a JSON body that is exactly `{"error": {"message", "type", "param", "code"}}`:
    /// a non-empty message, a string type, param a string or null (equal to `param` when given), code the status.
    static func assert(_ response: HTTPTestClient.Response, status: Int, param: String?? = .none, fragment: String? = nil,
                       _ name: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(response.status, status, "\(name): \(response.text)", file: file, line: line)
        XCTAssertEqual(response.header("Content-Type"), "application/json", "\(name)", file: file, line: line)
        assertBody(response.body, status: status, param: param, fragment: fragment, name, file: file, line: line)
    }

    /// The same for an error object carried elsewhere (an SSE event).
    static func assertBody(_ body: [UInt8], status: Int, param: String?? = .none, fragment: String? = nil,
                           _ name: String, file: StaticString = #filePath, line: UInt = #line) {
        guard let root = try? JSONTesting.object(body), root.count == 1, case let .object(error)? = root["error"] else {
            return XCTFail("\(name): not an OpenAI error object: \(String(decoding: body, as: UTF8.self))", file: file, line: line)
        }
        XCTAssertEqual(Set(error.keys), ["message", "type", "param", "code"], "\(name)", file: file, line: line)
        guard case let .string(message)? = error["message"], !message.isEmpty else {
            return XCTFail("\(name): no message in \(error)", file: file, line: line)
        }
        guard case .string? = error["type"] else { return XCTFail("\(name): no type in \(error)", file: file, line: line) }
        XCTAssertEqual(JSONTesting.int(error["code"]), status, "\(name)", file: file, line: line)
        switch error["param"] {
        case .string?, .null?: break
        default: XCTFail("\(name): param is neither a string nor null: \(String(describing: error["param"]))", file: file, line: line)
        }
        if case let .some(expected) = param {
            XCTAssertEqual(error["param"], expected.map { .string($0) } ?? .null, "\(name): \(message)", file: file, line: line)
        }
        if let fragment {
            XCTAssertTrue(message.contains(fragment), "\(name): '\(message)' lacks '\(fragment)'", file: file, line: line)
        }
    }
}

/// A streamed response read to its end: the events in order, raw, and how the stream ended.
struct StreamOutcome {
    var status: Int
    var events: [String] = []
    /// The chunked body ended with its last chunk (as opposed to the connection dropping).
    var endedCleanly = false

    var done: Bool { events.last == "[DONE]" }
    var text: String {
        events.compactMap { data -> String? in
            guard let o = try? JSONTesting.object(Array(data.utf8)) else { return nil }
            return JSONTesting.text(o)
        }.joined()
    }
    /// The last event when it is an OpenAI error object.
    var finalError: [UInt8]? {
        guard let last = events.last, last.hasPrefix(#"{"error":"#) else { return nil }
        return Array(last.utf8)
    }

    /// Reads the rest of a stream whose head (status `status`) has been read, chunk by chunk.
    static func read(_ client: HTTPTestClient, status: Int, timeout: Double = 20) -> StreamOutcome {
        var outcome = StreamOutcome(status: status)
        var pending = ""
        let deadline = Monotonic.now() + timeout
        while Monotonic.now() < deadline {
            let chunk: [UInt8]?
            do {
                chunk = try client.readChunk(timeout: deadline - Monotonic.now())
            } catch {
                return outcome  // the connection dropped or the stream stalled: no clean end
            }
            guard let chunk else {
                outcome.endedCleanly = true
                return outcome
            }
            pending += String(decoding: chunk, as: UTF8.self)
            while let end = pending.range(of: "\n\n") {
                let block = String(pending[..<end.lowerBound])
                pending = String(pending[end.upperBound...])
                if block.hasPrefix("data: ") { outcome.events.append(String(block.dropFirst(6))) }
            }
        }
        return outcome
    }
}
