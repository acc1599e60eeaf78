import Foundation
import Glibc
import XCTest
import InferenceCore
import SpeculativeDecoding
@testable import InferenceServer

/// Faults while serving: a client that leaves during prefill, an engine error in one request among several, a
/// broken model at start, SIGTERM with streams in flight, and a connection flood that exhausts descriptors.
final class FaultTests: XCTestCase {
    private var servers: [ReliabilityServer] = []
    private var roots: [URL] = []

    override func tearDown() {
        for s in servers { s.stop() }
        servers = []
        for root in roots { try? FileManager.default.removeItem(at: root) }
        roots = []
        super.tearDown()
    }

    private func start(_ make: () throws -> ReliabilityServer) rethrows -> ReliabilityServer {
        let s = try make()
        servers.append(s)
        return s
    }

    /// The value of the /metrics sample that starts with `prefix` (labels included), read over HTTP.
    private func metric(_ s: ReliabilityServer, _ prefix: String) throws -> String? {
        let client = try s.connect()
        defer { client.close() }
        client.send(APITestServer.requestText("GET", "/metrics"))
        let text = try client.readResponse(timeout: 5).text
        return text.split(separator: "\n").first { $0.hasPrefix(prefix + " ") }.map { String($0.dropFirst(prefix.count + 1)) }
    }

    // MARK: Client gone during prefill

    func testAClientThatLeavesDuringPrefillIsCancelledBeforeItsFirstToken() throws {
        let prompt = (0..<2000).map { 10 + $0 % 500 }  // 8 prefill chunks of 256 rows
        let calls = Counter()
        let inPrefill = DispatchSemaphore(value: 0)
        let resume = DispatchSemaphore(value: 0)
        // Before the job's second step, with one chunk of its prompt computed, hold the engine until the client left.
        let s = try start {
            try ReliabilityServer(family: APIToyModel.family(context: 4096), faultInjection: { job, _ in
                if job.prompt == prompt && calls.increment() == 2 {
                    inPrefill.signal()
                    _ = resume.wait(timeout: .now() + 10)
                }
                return nil
            })
        }
        let client = try s.connect()
        client.send(APITestServer.requestText("POST", "/v1/completions",
                                              body: #"{"model": "toy", "prompt": \#(prompt), "max_tokens": 50, "temperature": 0}"#))
        XCTAssertEqual(inPrefill.wait(timeout: .now() + 10), .success, "the prefill never started")
        XCTAssertTrue(s.model.engine.metrics.prometheusText().contains("specserve:forward_rows_total 256"))
        client.close()
        XCTAssertTrue(eventually { s.logs.lines.contains { $0.contains("POST /v1/completions 499") && $0.contains("client gone") } },
                      "\(s.logs.lines)")
        resume.signal()

        XCTAssertTrue(eventually { (try? self.metric(s, #"specserve:request_success_total{model_name="toy",finished_reason="cancelled"}"#)) == "1" })
        XCTAssertEqual(try metric(s, #"specserve:generation_tokens_total{model_name="toy"}"#), "0")
        // The chunk under way when the client left was the last: 512 of the 2,000 prompt rows were computed.
        XCTAssertEqual(try metric(s, #"specserve:forward_rows_total{model_name="toy"}"#), "512")
        XCTAssertEqual(try metric(s, #"specserve:http_requests_total{route="/v1/completions",method="POST",status="499"}"#), "1")
        s.assertHealthy(after: "a client leaving during prefill")
    }

    // MARK: An engine error in one request

    func testAnEngineErrorFailsOneRequestWhileTheOthersFinishWithTheirSoloOutputs() throws {
        let family = try APIToyModel.family()
        let prompts = ["stream": "def ok_stream(x):", "whole": "import os\n", "failingStream": "def broken_stream():",
                       "failingWhole": "def broken_whole():"]
        let failingStream = family.tokenizer.encode(prompts["failingStream"]!)
        let failingWhole = family.tokenizer.encode(prompts["failingWhole"]!)
        let s = try start {
            try ReliabilityServer(family: family, startEngine: false, faultInjection: { job, emitted in
                if job.prompt == failingStream && emitted >= 3 { return "injected fault after \(emitted) tokens" }
                if job.prompt == failingWhole { return "injected fault before the first token" }
                return nil
            })
        }
        func send(_ key: String, stream: Bool) throws -> HTTPTestClient {
            let client = try s.connect()
            client.send(APITestServer.requestText("POST", "/v1/completions", body: """
                {"model": "toy", "prompt": \(JSONText.quoted(prompts[key]!)), "max_tokens": 24, "temperature": 0, "stream": \(stream)}
                """))
            return client
        }
        // Queued together, so that all four run in the same batches.
        let clients = ["stream": try send("stream", stream: true), "whole": try send("whole", stream: false),
                       "failingStream": try send("failingStream", stream: true), "failingWhole": try send("failingWhole", stream: false)]
        XCTAssertTrue(eventually { s.model.engine.waitingCount == 4 })
        s.model.engine.start()

        let failedWhole = try clients["failingWhole"]!.readResponse(timeout: 20)
        OpenAIErrorCheck.assert(failedWhole, status: 500, param: .some(nil), fragment: "injected fault before the first token", "failing whole")
        XCTAssertEqual(try JSONTesting.error(failedWhole).type, "server_error")

        let failingStreamHead = try clients["failingStream"]!.readHead(timeout: 20)
        let failedStream = StreamOutcome.read(clients["failingStream"]!, status: failingStreamHead.status)
        XCTAssertEqual(failedStream.status, 200)
        XCTAssertTrue(failedStream.endedCleanly, "the failed stream was cut instead of ended")
        XCTAssertFalse(failedStream.done, "a failed stream must not end with [DONE]")
        guard let error = failedStream.finalError else { return XCTFail("no final error event: \(failedStream.events)") }
        OpenAIErrorCheck.assertBody(error, status: 500, param: .some(nil), fragment: "injected fault after 3 tokens", "failing stream")
        XCTAssertTrue(soloText(family, prompts["failingStream"]!, maxTokens: 24).hasPrefix(failedStream.text), failedStream.text)

        let streamHead = try clients["stream"]!.readHead(timeout: 20)
        let stream = StreamOutcome.read(clients["stream"]!, status: streamHead.status)
        XCTAssertTrue(stream.done && stream.endedCleanly, "\(stream.events)")
        XCTAssertEqual(stream.text, soloText(family, prompts["stream"]!, maxTokens: 24))
        let whole = try clients["whole"]!.readResponse(timeout: 20)
        XCTAssertEqual(whole.status, 200, whole.text)
        XCTAssertEqual(JSONTesting.text(try JSONTesting.object(whole.body)), soloText(family, prompts["whole"]!, maxTokens: 24))
        for client in clients.values { client.close() }
        s.assertHealthy(after: "an engine error")
    }

    // MARK: A broken model at start

    func testATruncatedModelFileFailsTheStartNamingTheFileAndTheTensor() throws {
        let (root, file) = try ToyModelFolder.make()
        roots.append(root)
        let modelFile = root.appendingPathComponent("models/toy/model.safetensors")
        let whole = try Data(contentsOf: modelFile)
        for (name, length) in [("data cut in half", whole.count / 2), ("header cut short", 100)] {
            try whole.prefix(length).write(to: modelFile)
            let server = try Server(config: try ServerConfig.load(file: file), log: { _ in })
            XCTAssertThrowsError(try server.start(calibrate: false), name) { error in
                let message = "\(error)"
                XCTAssertTrue(message.hasPrefix("\(file): models[0].path: \(modelFile.path): "), "\(name): \(message)")
                if length > 100 {
                    XCTAssertTrue(message.contains("tensor '") && message.contains("run past the end of the data section"), "\(name): \(message)")
                } else {
                    XCTAssertTrue(message.contains("header length"), "\(name): \(message)")
                }
            }
            XCTAssertFalse(server.http.isRunning, name)
            XCTAssertEqual(server.router.phase, .loading, name)
        }
    }

    // MARK: SIGTERM with streams in flight

    /// A stream that finishes inside the grace period ends with [DONE]; one that would outlast it is cancelled at the
    /// end of the grace and ends with an error event and the end of its chunked body, never by a cut connection.
    func testSIGTERMLetsAStreamFinishInTheGraceAndEndsTheOtherWithAnErrorEvent() throws {
        let family = try APIToyModel.family()
        let short = family.tokenizer.encode("def short():"), long = family.tokenizer.encode("def long():")
        let shuttingDown = Flag(), graceOver = Flag()
        let shortHeld = DispatchSemaphore(value: 0)
        let s = try start {
            try ReliabilityServer(family: family, startEngine: false, faultInjection: { job, emitted in
                if job.prompt == short && emitted == 2 {  // in flight when the signal comes; finishes after it
                    shortHeld.signal()
                    _ = shuttingDown.wait(timeout: 10)
                }
                if job.prompt == long && emitted >= 4 { _ = graceOver.wait(timeout: 10) }  // cannot finish in the grace
                return nil
            })
        }
        let stopped = DispatchSemaphore(value: 0)
        let engine = s.model.engine, http = s.http
        let handler = try ShutdownSignalHandler.install(server: http, gracePeriod: 1, signals: [SIGTERM],
                                                        onStopped: { stopped.signal() },
                                                        whenGraceExpires: { engine.stop(); graceOver.set() })
        defer { handler.uninstall() }
        func open(_ prompt: String, _ maxTokens: Int) throws -> HTTPTestClient {
            let client = try s.connect()
            client.send(APITestServer.requestText("POST", "/v1/completions", body: """
                {"model": "toy", "prompt": \(JSONText.quoted(prompt)), "max_tokens": \(maxTokens), "temperature": 0, "stream": true}
                """))
            return client
        }
        let shortClient = try open("def short():", 3), longClient = try open("def long():", 500)
        XCTAssertTrue(eventually { engine.waitingCount == 2 })
        engine.start()
        XCTAssertEqual(shortHeld.wait(timeout: .now() + 10), .success)
        kill(getpid(), SIGTERM)
        XCTAssertTrue(eventually { http.isShuttingDown })
        shuttingDown.set()

        let shortOutcome = StreamOutcome.read(shortClient, status: try shortClient.readHead(timeout: 10).status)
        XCTAssertTrue(shortOutcome.done && shortOutcome.endedCleanly, "\(shortOutcome.events)")
        XCTAssertEqual(shortOutcome.text, soloText(family, "def short():", maxTokens: 3))
        let longOutcome = StreamOutcome.read(longClient, status: try longClient.readHead(timeout: 10).status)
        XCTAssertTrue(longOutcome.endedCleanly, "the stream was cut at the end of the grace: \(longOutcome.events)")
        XCTAssertFalse(longOutcome.done)
        guard let error = longOutcome.finalError else { return XCTFail("no final error event: \(longOutcome.events)") }
        OpenAIErrorCheck.assertBody(error, status: 503, param: .some(nil), fragment: "shutting down", "long stream")
        XCTAssertTrue(soloText(family, "def long():", maxTokens: 500).hasPrefix(longOutcome.text))
        XCTAssertEqual(stopped.wait(timeout: .now() + 10), .success)
        XCTAssertFalse(http.isRunning)
    }

    // MARK: Descriptor exhaustion

    /// Connections flood in until accept fails for want of descriptors; once the clients leave, the server accepts
    /// and serves again — still under the lowered limit, without a restart.
    func testAConnectionFloodThatExhaustsDescriptorsIsSurvived() throws {
        let s = try start { try ReliabilityServer() }
        let flood = 48
        let sockets = (0..<flood).map { _ in socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0) }  // made while descriptors remain
        XCTAssertFalse(sockets.contains(-1))
        var saved = rlimit()
        XCTAssertEqual(getrlimit(Int32(RLIMIT_NOFILE.rawValue), &saved), 0)
        let lowestFree = open("/dev/null", O_RDONLY)
        close(lowestFree)
        var lowered = saved
        lowered.rlim_cur = rlim_t(lowestFree + 4)  // room for at most 4 accepted connections
        XCTAssertEqual(setrlimit(Int32(RLIMIT_NOFILE.rawValue), &lowered), 0)
        defer { setrlimit(Int32(RLIMIT_NOFILE.rawValue), &saved) }

        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(s.http.port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        for fd in sockets {
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            XCTAssertEqual(connected, 0)  // completed by the kernel, in the listen backlog
        }
        XCTAssertTrue(eventually { s.logs.lines.contains { $0.contains("accept failed") && $0.contains("errno \(EMFILE)") } }, "\(s.logs.lines)")
        XCTAssertLessThanOrEqual(s.http.connectionCount, 4)
        XCTAssertTrue(s.http.isRunning)

        for fd in sockets { close(fd) }
        XCTAssertTrue(eventually { s.http.connectionCount == 0 })
        s.assertHealthy(after: "a connection flood, under the lowered limit")
    }
}

/// A count shared with the engine thread.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func increment() -> Int { lock.withLock { value += 1; return value } }
}

/// A one-way latch: `wait` returns at once after `set`.
final class Flag: @unchecked Sendable {
    private let condition = NSCondition()
    private var isSet = false
    func set() { condition.withLock { isSet = true; condition.broadcast() } }
    func wait(timeout: Double) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout)
        condition.lock()
        defer { condition.unlock() }
        while !isSet { if !condition.wait(until: deadline) { return isSet } }
        return true
    }
}
