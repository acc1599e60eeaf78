import Foundation
import Glibc
import InferenceCore
import SpeculativeDecoding

/// The whole server, wired from a config: the HTTP listener is bound first (so /health answers "loading" with 503
/// and a port in use fails at once), then each model is loaded and calibrated and its engine started, then the
/// API serves. `shutdown` drains: /health turns 503, requests in flight get the grace period, engines stop.
///
/// `@unchecked Sendable`: `models` is written only by `start` and read after it (under `lock`).
public final class Server: @unchecked Sendable {
    public let config: ServerConfig
    public let router: APIRouter
    public let http: HTTPServer
    private let log: @Sendable (String) -> Void
    private let lock = NSLock()
    private var models: [ServedModel] = []

    /// Checks what the config needs from the environment (the API key variable, the benchmark prompts); nothing
    /// is bound or loaded yet.
    public init(config: ServerConfig, heartbeatSeconds: Double = 2,
                log: @escaping @Sendable (String) -> Void = APIRouter.standardErrorLog) throws(ConfigError) {
        self.config = config
        self.log = log
        var apiKey: String?
        if let name = config.server.apiKeyEnv {
            guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else {
                throw ConfigError(file: config.file, path: "server.api_key_env",
                                  message: "the environment variable \(name) is not set (it must hold the API key; use null to serve without one)")
            }
            apiKey = value
        }
        let prompts = try Self.loadBenchmarkPrompts(config)
        router = APIRouter(options: .init(apiKey: apiKey, heartbeatSeconds: heartbeatSeconds, benchmarkPrompts: prompts, log: log))
        http = HTTPServer(configuration: config.server.httpConfiguration(log: { log("http: " + $0) }), handler: router.handler)
    }

    /// Binds, then loads every model; returns when the API is ready. On a load error the listener is closed
    /// again and the error (naming the config key) is thrown.
    public func start(calibrate: Bool = true) throws {
        try http.start()
        log("listening on \(config.server.host):\(http.port)" + (router.options.apiKey != nil ? " (API key required)" : "")
            + "; loading \(config.models.count) model\(config.models.count == 1 ? "" : "s")…")
        let pool = config.engine.threads.map { WorkerPool(threadCount: $0) } ?? .shared
        var loaded: [ServedModel] = []
        do {
            for i in config.models.indices {
                loaded.append(try ModelLoader.load(i, config: config, pool: pool, calibrate: calibrate, log: log))
            }
        } catch {
            http.shutdown(gracePeriod: 0)
            throw error
        }
        for model in loaded { model.engine.start() }
        lock.withLock { models = loaded }
        router.setReady(models: loaded)
        log("ready: serving \(loaded.map(\.id).joined(separator: ", ")) on http://\(config.server.host):\(http.port)")
    }

    /// The bound port (the one chosen by the system for port 0).
    public var port: Int { http.port }

    /// Graceful stop: /health answers 503, requests in flight get `shutdown_grace_seconds`, then engines stop (what
    /// still runs is cancelled: a stream ends with an error event), then connections close.
    public func shutdown() {
        router.setStopping()
        http.shutdown(gracePeriod: config.server.shutdownGraceSeconds) { [self] in stopEngines() }
        stopEngines()
    }

    /// SIGINT/SIGTERM run a graceful shutdown, then `onStopped` (exit 0 by default).
    public func installSignalHandlers(onStopped: @escaping @Sendable () -> Void = { exit(0) }) throws -> ShutdownSignalHandler {
        try ShutdownSignalHandler.install(server: http, gracePeriod: config.server.shutdownGraceSeconds, onStopped: { [self] in
            router.setStopping()
            stopEngines()
            log("stopped")
            onStopped()
        }, whenGraceExpires: { [self] in stopEngines() })
    }

    private func stopEngines() {
        for model in lock.withLock({ models }) { model.engine.stop() }
    }

    /// The texts of the benchmark prompt file (`{"prompts": [{"text": ...}, ...]}`).
    static func loadBenchmarkPrompts(_ config: ServerConfig) throws(ConfigError) -> [String] {
        let url = config.resolve(config.benchmark.prompts)
        func fail(_ message: String) -> ConfigError { ConfigError(file: config.file, path: "benchmark.prompts", message: "\(url.path): \(message)") }
        guard let data = FileManager.default.contents(atPath: url.path) else { throw fail("cannot be read") }
        do {
            guard case let .object(root) = try JSONValue.parse([UInt8](data)), case let .array(items)? = root["prompts"], !items.isEmpty else {
                throw fail("expected an object with a non-empty \"prompts\" array")
            }
            return try items.enumerated().map { (i, item) throws(ConfigError) in
                guard case let .object(prompt) = item, case let .string(text)? = prompt["text"] else {
                    throw fail("prompts[\(i)]: expected an object with a \"text\" string")
                }
                return text
            }
        } catch let error as JSONSyntaxError {
            throw fail(error.description)
        } catch let error as ConfigError {
            throw error
        } catch {
            throw fail("\(error)")
        }
    }
}
