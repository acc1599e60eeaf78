import Foundation
import InferenceCore
import Synchronization

/// The HTTP API (DESIGN §6): routes requests to handlers, checks the bearer key, answers 404/405, and writes one
/// access-log line per request. It exists before the models are loaded (every route but /health and /metrics
/// answers 503 until `setReady`), so the port is bound and health checks see "loading".
public final class APIRouter: Sendable {
    public struct Options: Sendable {
        /// The bearer key every route but /health requires; nil serves without authentication.
        public var apiKey: String?
        /// Seconds without a write after which a stream gets a `: ping` comment.
        public var heartbeatSeconds = 2.0
        /// The prompts POST /v1/benchmark races when a request brings none.
        public var benchmarkPrompts: [String] = []
        /// Access-log lines (one per request) and other events; nil discards them.
        public var log: (@Sendable (String) -> Void)?
        public init(apiKey: String? = nil, heartbeatSeconds: Double = 2, benchmarkPrompts: [String] = [],
                    log: (@Sendable (String) -> Void)? = APIRouter.standardErrorLog) {
            self.apiKey = apiKey
            self.heartbeatSeconds = heartbeatSeconds
            self.benchmarkPrompts = benchmarkPrompts
            self.log = log
        }
    }

    public enum Phase: Sendable { case loading, ready, stopping }

    public static let standardErrorLog: @Sendable (String) -> Void = { line in
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    public let options: Options
    let requestCounts = RequestCounters()
    private let state = Mutex<(phase: Phase, models: [ServedModel])>((.loading, []))

    public init(options: Options = Options()) {
        self.options = options
    }

    /// Starts serving `models` (in the order /v1/models lists them).
    public func setReady(models: [ServedModel]) { state.withLock { $0 = (.ready, models) } }

    /// /health answers 503 from now on; requests are refused with 503.
    public func setStopping() { state.withLock { $0.phase = .stopping } }

    public var phase: Phase { state.withLock { $0.phase } }
    public var models: [ServedModel] { state.withLock { $0.models } }

    /// The HTTPServer handler.
    public var handler: HTTPServer.Handler { { [self] request, writer in handle(request, writer) } }

    /// Paths and the methods they answer (HEAD wherever GET).
    static let routes: [(path: String, methods: [String])] = [
        ("/v1/completions", ["POST"]), ("/v1/models", ["GET", "HEAD"]), ("/health", ["GET", "HEAD"]),
        ("/metrics", ["GET", "HEAD"]), ("/tokenize", ["POST"]), ("/detokenize", ["POST"]), ("/v1/benchmark", ["POST"]),
    ]

    public func handle(_ request: HTTPRequest, _ writer: ResponseWriter) {
        let start = monotonicSeconds()
        var record = AccessRecord()
        let path = request.path
        let route = Self.routes.first { $0.path == path }?.path ?? (path.hasPrefix("/v1/models/") ? "/v1/models/{id}" : nil)
        do {
            try dispatch(request, route: route, writer, &record)
        } catch {
            record.note = record.note ?? error.message
            writer.send(error)
        }
        // 499 (nginx's "client closed request") when the client left before any response could be sent.
        let status = writer.responseStatus?.code ?? (record.note == "client gone" ? 499 : 0)
        requestCounts.add(route: route ?? "other", method: request.method, status: status)
        guard let log = options.log else { return }
        var line = String(format: "%@ %@ %@ %d %.1fms", writer.remoteAddress, request.method, Self.logSafe(request.target), status,
                          (monotonicSeconds() - start) * 1e3)
        if let model = record.model { line += " model=\(Self.logSafe(model))" }
        if let p = record.promptTokens { line += " prompt=\(p)" }
        if let c = record.completionTokens { line += " completion=\(c)" }
        if let s = record.speculation { line += " " + s }
        if let note = record.note { line += " (\(Self.logSafe(note)))" }
        log(line)
    }

    private func dispatch(_ request: HTTPRequest, route: String?, _ writer: ResponseWriter,
                          _ record: inout AccessRecord) throws(APIError) {
        // Authentication first: without the key, not even which routes exist is told.
        if route != "/health" { try authorize(request) }
        guard let route else { throw APIError(.notFound, "no route \(request.path)") }
        let methods = Self.routes.first { $0.path == route }?.methods ?? ["GET", "HEAD"]
        guard methods.contains(request.method) else {
            throw APIError(.methodNotAllowed, "\(route) answers \(methods.joined(separator: ", ")), not \(request.method)",
                           headers: ["Allow": methods.joined(separator: ", ")])
        }
        let (phase, models) = state.withLock { ($0.phase, $0.models) }
        switch route {
        case "/health":
            let status = writer.serverIsShuttingDown || phase == .stopping ? "shutting_down" : phase == .loading ? "loading" : "ok"
            writer.send(.json(status == "ok" ? .ok : .serviceUnavailable, Array("{\"status\":\"\(status)\"}".utf8)))
            return
        case "/metrics":
            writer.send(HTTPResponse(status: .ok, headers: ["Content-Type": "text/plain; version=0.0.4; charset=utf-8"],
                                     body: Array(metricsText(models).utf8)))
            return
        default:
            break
        }
        guard phase == .ready && !writer.serverIsShuttingDown else {
            throw APIError(.serviceUnavailable, phase == .loading ? "the server is loading its models" : "the server is shutting down",
                           headers: ["Retry-After": "1"])
        }
        switch route {
        case "/v1/completions":
            let q = try CompletionRequest.decode(request.body)
            let model = try lookup(q.model, in: models, &record)
            try CompletionRoute(model: model, request: q, writer: writer, heartbeat: options.heartbeatSeconds).run(&record)
        case "/v1/models":
            writer.send(.json(.ok, ModelList.list(models).bytes))
        case "/v1/models/{id}":
            let id = String(request.path.dropFirst("/v1/models/".count)).removingPercentEncoding ?? ""
            writer.send(.json(.ok, ModelList.entry(try lookup(id, in: models, &record)).bytes))
        case "/tokenize":
            try tokenize(request.body, models, writer, &record)
        case "/detokenize":
            try detokenize(request.body, models, writer, &record)
        case "/v1/benchmark":
            try benchmark(request.body, models, writer, &record)
        default:
            throw APIError(.notFound, "no route \(request.path)")
        }
    }

    func lookup(_ id: String, in models: [ServedModel], _ record: inout AccessRecord) throws(APIError) -> ServedModel {
        record.model = id
        guard let model = models.first(where: { $0.id == id }) else {
            throw APIError(.notFound, "the model '\(id)' does not exist (served: \(models.map(\.id).joined(separator: ", ")))",
                           param: "model", type: "invalid_request_error")
        }
        return model
    }

    /// `Authorization: Bearer <key>` when a key is configured; compared in constant time.
    private func authorize(_ request: HTTPRequest) throws(APIError) {
        guard let key = options.apiKey else { return }
        let given = request.headers["Authorization"].flatMap { value -> String? in
            let parts = value.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
            guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
            return parts[1].trimmingCharacters(in: .whitespaces)
        }
        guard let given, Self.constantTimeEqual(Array(given.utf8), Array(key.utf8)) else {
            throw APIError(.unauthorized, given == nil ? "missing API key: send Authorization: Bearer <key>" : "invalid API key",
                           type: "authentication_error", headers: ["WWW-Authenticate": "Bearer"])
        }
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(a.count == b.count ? 0 : 1)
        for i in 0..<max(a.count, b.count) {
            difference |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)
        }
        return difference == 0
    }

    /// Request targets and model names are client text: keep them on one printable line.
    static func logSafe(_ text: String) -> String {
        String(text.prefix(200).unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) })
    }
}
