import Foundation
import Glibc
import XCTest
import InferenceCore
@testable import InferenceServer

/// `specserve serve` as a process (the binary built beside this test bundle): a broken config or model exits
/// non-zero with a message naming the file and the key, before anything is served; SIGTERM with streams in flight
/// ends every stream with a final event and exits 0.
final class ServeProcessTests: XCTestCase {
    private var roots: [URL] = []
    private var processes: [ServeProcess] = []

    override func tearDown() {
        for p in processes { p.kill() }
        processes = []
        for root in roots { try? FileManager.default.removeItem(at: root) }
        roots = []
        super.tearDown()
    }

    private func run(config: String) throws -> ServeProcess {
        let p = try ServeProcess(config: config)
        processes.append(p)
        return p
    }

    private func folder() throws -> (root: URL, config: String) {
        let made = try ToyModelFolder.make()
        roots.append(made.root)
        return made
    }

    func testABrokenConfigOrModelExitsNonZeroNamingTheFileAndKeyAndServesNothing() throws {
        let (root, config) = try folder()
        let original = try String(contentsOfFile: config, encoding: .utf8)
        let modelFile = root.appendingPathComponent("models/toy/model.safetensors")
        let weights = try Data(contentsOf: modelFile)
        let cases: [(name: String, prepare: () throws -> Void, expected: [String])] = [
            ("a wrong type in the config", {
                try original.replacingOccurrences(of: #""max_queue": 8"#, with: #""max_queue": "eight""#).write(toFile: config, atomically: true, encoding: .utf8)
            }, ["\(config): engine.max_queue: expected an integer, found string"]),
            ("a config cut short", {
                try String(original.prefix(original.count / 2)).write(toFile: config, atomically: true, encoding: .utf8)
            }, ["\(config): ", "not valid JSON"]),
            ("a model file cut in half", {
                try original.write(toFile: config, atomically: true, encoding: .utf8)
                try weights.prefix(weights.count / 2).write(to: modelFile)
            }, ["\(config): models[0].path: \(modelFile.path): tensor '", "run past the end of the data section"]),
            ("a model file that is not safetensors", {
                try Data("not a safetensors file".utf8).write(to: modelFile)
            }, ["\(config): models[0].path: \(modelFile.path): "]),
        ]
        for c in cases {
            try c.prepare()
            let p = try run(config: config)
            guard let status = p.waitForExit(timeout: 20) else { return XCTFail("\(c.name): still running: \(p.standardError)") }
            XCTAssertNotEqual(status, 0, c.name)
            let stderr = p.standardError
            for fragment in c.expected { XCTAssertTrue(stderr.contains(fragment), "\(c.name): '\(stderr)' lacks '\(fragment)'") }
            XCTAssertFalse(stderr.contains("ready: serving"), "\(c.name): \(stderr)")
            XCTAssertFalse(stderr.contains("Fatal error") || stderr.contains("Stack dump"), "\(c.name) crashed: \(stderr)")
        }
    }

    /// Three streams that cannot finish within the 0.5 s grace (3,000 tokens at about a millisecond a step) are in
    /// flight when SIGTERM comes: each ends with a final event (its error event once the engine stopped, or [DONE]
    /// on a machine fast enough) and the end of its chunked body, never a cut connection; the process exits 0.
    func testSIGTERMWithStreamsInFlightEndsEachWithAFinalEventAndExitsZero() throws {
        let (root, config) = try folder()
        let tokenizer = try BPETokenizer(contentsOf: Fixtures.url("tokenizer/fixture-tokenizer.json"))
        try ToyModelFolder.write(config: APIToyModel.config(vocab: tokenizer.vocabSize, hidden: 256, layers: 4, context: 4096), seed: 5,
                                 to: root.appendingPathComponent("models/toy"))
        let text = try String(contentsOfFile: config, encoding: .utf8)
        try text.replacingOccurrences(of: #""shutdown_grace_seconds": 1"#, with: #""shutdown_grace_seconds": 0.5"#)
            .write(toFile: config, atomically: true, encoding: .utf8)
        let p = try run(config: config)
        guard let line = p.waitForLine(containing: "ready: serving", timeout: 60),
              let port = p.standardError.firstMatch(of: /listening on 127\.0\.0\.1:(\d+)/).flatMap({ Int($0.1) }) else {
            return XCTFail("the server did not start: \(p.standardError)")
        }
        _ = line
        var clients: [HTTPTestClient] = []
        // Prompts whose greedy continuations on this model do not reach <|endoftext|> within 3,000 tokens.
        for prompt in ["for i in range(10):", "return", "# comment"] {
            let client = try HTTPTestClient(port: port)
            client.send(APITestServer.requestText("POST", "/v1/completions", body: """
                {"model": "toy", "prompt": \(JSONText.quoted(prompt)), "max_tokens": 3000, "temperature": 0, "stream": true}
                """))
            XCTAssertEqual(try client.readHead(timeout: 20).status, 200)
            clients.append(client)
        }
        XCTAssertEqual(Glibc.kill(p.process.processIdentifier, SIGTERM), 0)
        for (i, client) in clients.enumerated() {
            let outcome = StreamOutcome.read(client, status: 200, timeout: 20)
            XCTAssertTrue(outcome.endedCleanly, "stream \(i) was cut: \(outcome.events.suffix(2))")
            if let error = outcome.finalError {
                OpenAIErrorCheck.assertBody(error, status: 503, param: .some(nil), fragment: "shutting down", "stream \(i)")
            } else {
                XCTAssertTrue(outcome.done, "stream \(i) ended without a final event: \(outcome.events.suffix(2))")
            }
        }
        XCTAssertEqual(p.waitForExit(timeout: 20), 0, p.standardError)
        XCTAssertEqual(p.process.terminationReason, .exit)
        XCTAssertTrue(p.standardError.contains("stopped"), p.standardError)
    }
}

/// A `specserve serve --config <file>` child process whose standard error is collected as it arrives.
final class ServeProcess: @unchecked Sendable {
    let process = Process()
    private let output = Output()

    private final class Output: @unchecked Sendable {
        private let lock = NSLock()
        private var data = Data()
        let ended = DispatchSemaphore(value: 0)
        func append(_ bytes: ArraySlice<UInt8>) { lock.withLock { data.append(contentsOf: bytes) } }
        var text: String { lock.withLock { String(decoding: data, as: UTF8.self) } }
    }

    /// The `specserve` binary that the test build put beside the test bundle.
    static var binary: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("specserve")
    }

    init(config: String) throws {
        guard FileManager.default.isExecutableFile(atPath: Self.binary.path) else {
            throw ServeProcessError("no specserve binary at \(Self.binary.path): build the package (swift build --build-tests) first")
        }
        process.executableURL = Self.binary
        process.arguments = ["serve", "--config", config]
        let pipe = Pipe()
        process.standardError = pipe
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let readEnd = pipe.fileHandleForReading
        let output = self.output
        Thread.detachNewThread {
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = Glibc.read(readEnd.fileDescriptor, &buffer, buffer.count)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                output.append(buffer[..<n])
            }
            try? readEnd.close()
            output.ended.signal()
        }
    }

    var standardError: String { output.text }

    func waitForLine(containing text: String, timeout: Double) -> String? {
        guard eventually(timeout: timeout, { standardError.contains(text) || !process.isRunning }) else { return nil }
        return standardError.split(separator: "\n").first { $0.contains(text) }.map(String.init)
    }

    /// The exit status, or nil if the process is still running after `timeout` seconds. Once it returns a status,
    /// `standardError` holds everything the process wrote.
    func waitForExit(timeout: Double) -> Int32? {
        guard eventually(timeout: timeout, { !process.isRunning }) else { return nil }
        process.waitUntilExit()
        _ = output.ended.wait(timeout: .now() + 5)
        output.ended.signal()  // later calls return at once
        return process.terminationStatus
    }

    func kill() {
        if process.isRunning {
            Glibc.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

struct ServeProcessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs the `specserve` binary in the repository root (with `environment`, or this process's); returns its exit status
/// and standard error.
func runSpecserve(_ arguments: [String], environment: [String: String]? = nil) throws -> (status: Int32, errors: String) {
    let run = try runSpecserveWithOutput(arguments, environment: environment)
    return (run.status, run.errors)
}

/// As `runSpecserve`, keeping what the program printed to stdout too (read after stderr: small outputs only).
func runSpecserveWithOutput(_ arguments: [String], environment: [String: String]? = nil) throws -> (status: Int32, output: String, errors: String) {
    let process = Process()
    process.executableURL = ServeProcess.binary
    process.currentDirectoryURL = Fixtures.repositoryRoot
    process.arguments = arguments
    if let environment { process.environment = environment }
    let errors = Pipe(), output = Pipe()
    process.standardError = errors
    process.standardOutput = output
    try process.run()
    let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, printed, message)
}

/// `specserve bench --kind` races only the prompts of that kind; an unknown kind is refused with the kinds there are.
final class BenchCommandTests: XCTestCase {
    func testAnUnknownPromptKindIsRefusedNamingTheFileAndTheKindsThereAre() throws {
        let (status, message) = try runSpecserve(["bench", "--model", "models/specserve-code", "--kind", "nope", "--repeats", "1"])
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(message.contains("config/bench_prompts.json: no prompt of kind 'nope' (kinds: completion, edit)"), message)
    }
}

/// The CLI drafts from the 2,048 most frequent tokens when the model folder ranks them, as the shipped config does;
/// 0 scores every token; a size the vocabulary cannot hold names its flag.
final class DraftVocabularyFlagTests: XCTestCase {
    private let generate = ["generate", "--model", "models/specserve-code", "--draft-model", "models/specserve-code-draft",
                            "--prompt", "def f(x):", "--max-tokens", "2", "--speculative", "mtp"]

    func testTheCLIDraftsFromTheFrequentTokensByDefaultAndAllOfThemWithZero() throws {
        let byDefault = try runSpecserve(generate)
        XCTAssertEqual(byDefault.status, 0, byDefault.errors)
        XCTAssertTrue(byDefault.errors.contains("draft drafts from the 2048 most frequent tokens, mtp drafts from the 2048 most frequent tokens, "
                                                + "medusa drafts from the 2048 most frequent tokens"), byDefault.errors)
        let all = try runSpecserve(generate + ["--draft-vocabulary", "0", "--mtp-vocabulary", "1024", "--medusa-vocabulary", "0"])
        XCTAssertEqual(all.status, 0, all.errors)
        XCTAssertFalse(all.errors.contains("draft drafts from"), all.errors)
        XCTAssertFalse(all.errors.contains("medusa drafts from"), all.errors)
        XCTAssertTrue(all.errors.contains("mtp drafts from the 1024 most frequent tokens"), all.errors)
    }

    func testASizeBeyondTheVocabularyNamesItsFlag() throws {
        let (status, message) = try runSpecserve(generate + ["--mtp-vocabulary", "9000"])
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(message.contains("--mtp-vocabulary: a draft vocabulary of 9000 tokens: the vocabulary has 8192"), message)
    }
}

/// `generate` measures the costs `serve` and `bench` measure, so its chain length is capped to this machine too
/// (with nothing measured, every step drafted the full --num-draft).
final class GenerateCalibrationTests: XCTestCase {
    private let generate = ["generate", "--model", "models/specserve-code", "--prompt", "def f(x):", "--max-tokens", "2"]

    func testSpeculativeGenerateCalibratesToThisMachineAndPlainGenerateDoesNot() throws {
        let run = try runSpecserve(generate + ["--speculative", "mtp"])
        XCTAssertEqual(run.status, 0, run.errors)
        XCTAssertTrue(run.errors.contains("calibrated in "), run.errors)
        XCTAssertTrue(run.errors.contains("one token drafted by mtp "), run.errors)
        let plain = try runSpecserve(generate)
        XCTAssertEqual(plain.status, 0, plain.errors)
        XCTAssertFalse(plain.errors.contains("calibrated in "), plain.errors)
    }
}

/// `--dtype bf16` streams the shipped target (a BF16 checkpoint) from BF16 copies: half the bytes per step and
/// bitwise the same model, so the greedy text is the same; the load line says what is streamed.
final class WeightStreamingProcessTests: XCTestCase {
    private let generate = ["generate", "--model", "models/specserve-code", "--prompt", "def fibonacci(n):", "--max-tokens", "24"]

    func testTheShippedTargetStreamedAsBF16WritesTheSameTextWithHalfTheBytes() throws {
        let f32 = try runSpecserveWithOutput(generate), bf16 = try runSpecserveWithOutput(generate + ["--dtype", "bf16"])
        XCTAssertEqual(f32.status, 0, f32.errors)
        XCTAssertEqual(bf16.status, 0, bf16.errors)
        XCTAssertEqual(bf16.output, f32.output)
        XCTAssertTrue(f32.errors.contains("62.9 MB of weights streamed per token (f32)"), f32.errors)
        XCTAssertTrue(bf16.errors.contains("31.5 MB of weights streamed per token (bf16)"), bf16.errors)
        let (status, message) = try runSpecserve(generate + ["--dtype", "f16"])
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(message.contains("--dtype must be f32 or bf16"), message)
    }
}

/// `specserve` runs prefill on OpenBLAS kernels that use the CPU's vector units: where the library took the CPU for
/// an older one, the program starts itself again with OPENBLAS_CORETYPE set (and says so); a core the user set stays.
final class BLASKernelsProcessTests: XCTestCase {
    private let generate = ["generate", "--model", "models/specserve-code", "--prompt", "def f(x):", "--max-tokens", "1"]

    private func environment(coreType: String?) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_CORETYPE"] = coreType
        environment[BLASCoreChoice.detectedVariable] = nil
        return environment
    }

    private func core(in log: String) -> String? {
        guard let range = log.range(of: "OpenBLAS kernels ") else { return nil }
        return log[range.upperBound...].split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "," }).first.map(String.init)
    }

    func testTheKernelsUseAVX2OrAVX512WhereTheCPUHasThem() throws {
        let flags = BLASCoreChoice.cpuFlags()
        let (status, log) = try runSpecserve(generate, environment: environment(coreType: nil))
        XCTAssertEqual(status, 0, log)
        let used = try XCTUnwrap(core(in: log), log)
        if flags.isSuperset(of: ["avx2", "fma"]) {
            XCTAssertTrue(BLASCoreChoice.vectorCores.contains(used.lowercased()), log)
        }
        // Either OpenBLAS knew the CPU, or the log names the core it had taken it for.
        XCTAssertTrue(BLASCoreChoice.override(detected: used, cpuFlags: flags) == nil, log)
    }

    func testACoreTypeTheUserSetIsKept() throws {
        let (status, log) = try runSpecserve(generate, environment: environment(coreType: "Prescott"))
        XCTAssertEqual(status, 0, log)
        XCTAssertEqual(core(in: log), "Prescott", log)
        XCTAssertFalse(log.contains("the library took this CPU for"), log)
    }
}
