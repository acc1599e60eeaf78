import Foundation
import SpeculativeDecoding

// Strict decoding of the config file: unknown keys, wrong types, values out of range, missing required keys
// (`models`, and each model's `id` and `path`) and missing model folders all fail with the key path. Keys that are
// left out take the defaults of ServerConfig.swift; `null` is only accepted where it means something
// (`api_key_env`, `threads`, `max_context`, `draft.path`).

extension ServerConfig {
    /// Reads, decodes and checks `file`: every path it names must exist.
    public static func load(file: String) throws(ConfigError) -> ServerConfig {
        let url = URL(fileURLWithPath: file)
        let bytes: [UInt8]
        do {
            bytes = try [UInt8](Data(contentsOf: url))
        } catch {
            throw ConfigError(file: file, path: "", message: "cannot be read (\((error as NSError).localizedDescription))")
        }
        let base = url.standardizedFileURL.deletingLastPathComponent().deletingLastPathComponent()
        let config = try decode(bytes, file: file, baseDirectory: base)
        try config.checkFiles()
        return config
    }

    /// Decodes a config document without touching the file system.
    public static func decode(_ bytes: [UInt8], file: String, baseDirectory: URL) throws(ConfigError) -> ServerConfig {
        let json: JSONValue
        do {
            json = try JSONValue.parse(bytes)
        } catch {
            throw ConfigError(file: file, path: "", message: error.description)
        }
        do {
            var config = try decode(json)
            config.file = file
            config.baseDirectory = baseDirectory
            return config
        } catch {
            throw ConfigError(file: file, path: error.path, message: error.message)
        }
    }

    static func decode(_ json: JSONValue) throws(JSONFieldError) -> ServerConfig {
        let root = try JSONObjectReader(json, at: "", keys: ["server", "engine", "models", "benchmark"], nullIsAbsent: false)
        var config = ServerConfig()
        if let v = root.value("server") { config.server = try decodeServer(v, at: root.path("server")) }
        if let v = root.value("engine") { config.engine = try decodeEngine(v, at: root.path("engine")) }
        if let v = root.value("benchmark") {
            let r = try JSONObjectReader(v, at: "benchmark", keys: ["prompts"], nullIsAbsent: false)
            config.benchmark.prompts = try r.string("prompts", default: config.benchmark.prompts)
        }
        let models = try root.required("models") { (v, p) throws(JSONFieldError) in try v.array(at: p) }
        guard !models.isEmpty else { throw JSONFieldError(path: "models", message: "lists no model (at least one is needed)") }
        for (i, m) in models.enumerated() {
            let entry = try decodeModel(m, at: "models[\(i)]")
            if let first = config.models.firstIndex(where: { $0.id == entry.id }) {
                throw JSONFieldError(path: "models[\(i)].id", message: "'\(entry.id)' is already the id of models[\(first)]")
            }
            config.models.append(entry)
        }
        return config
    }

    static func decodeServer(_ v: JSONValue, at path: String) throws(JSONFieldError) -> ListenSettings {
        let r = try JSONObjectReader(v, at: path, keys: ["host", "port", "api_key_env", "max_connections", "limits",
                                                         "timeouts", "shutdown_grace_seconds"], nullIsAbsent: false)
        var s = ListenSettings()
        s.host = try r.string("host", default: s.host)
        guard !s.host.isEmpty else { throw JSONFieldError(path: r.path("host"), message: "is empty") }
        s.port = try r.int("port", default: s.port, in: 0...65535)
        s.apiKeyEnv = try r.nullable("api_key_env") { (v, p) throws(JSONFieldError) in
            let name = try v.string(at: p)
            guard !name.isEmpty else { throw JSONFieldError(path: p, message: "is empty (use null for no API key)") }
            return name
        }
        s.maxConnections = try r.int("max_connections", default: s.maxConnections, in: 1...100_000)
        if let v = r.value("limits") {
            let l = try JSONObjectReader(v, at: r.path("limits"),
                                         keys: ["request_line_bytes", "header_bytes", "header_count", "body_bytes"], nullIsAbsent: false)
            s.limits.requestLineBytes = try l.int("request_line_bytes", default: s.limits.requestLineBytes, in: 64...Int.max)
            s.limits.headerBytes = try l.int("header_bytes", default: s.limits.headerBytes, in: 64...Int.max)
            s.limits.headerCount = try l.int("header_count", default: s.limits.headerCount, in: 1...Int.max)
            s.limits.bodyBytes = try l.int("body_bytes", default: s.limits.bodyBytes, in: 1...Int.max)
        }
        if let v = r.value("timeouts") {
            let t = try JSONObjectReader(v, at: r.path("timeouts"), keys: ["head", "body", "idle", "write"], nullIsAbsent: false)
            let positive = 0.001...Double.infinity
            s.timeouts.head = try t.double("head", default: s.timeouts.head, in: positive)
            s.timeouts.body = try t.double("body", default: s.timeouts.body, in: positive)
            s.timeouts.idle = try t.double("idle", default: s.timeouts.idle, in: positive)
            s.timeouts.write = try t.double("write", default: s.timeouts.write, in: positive)
        }
        s.shutdownGraceSeconds = try r.double("shutdown_grace_seconds", default: s.shutdownGraceSeconds, in: 0...Double.infinity)
        return s
    }

    static func decodeEngine(_ v: JSONValue, at path: String) throws(JSONFieldError) -> EngineConfig {
        let r = try JSONObjectReader(v, at: path, keys: ["threads", "max_queue", "max_active", "max_context"], nullIsAbsent: false)
        var e = EngineConfig()
        e.threads = try r.nullable("threads") { (v, p) throws(JSONFieldError) in try positive(v, p, max: 1024) }
        e.maxQueue = try r.int("max_queue", default: e.maxQueue, in: 1...1_000_000)
        e.maxActive = try r.int("max_active", default: e.maxActive, in: 1...4096)
        e.maxContext = try r.nullable("max_context") { (v, p) throws(JSONFieldError) in try positive(v, p, max: Int.max, min: 2) }
        return e
    }

    static func positive(_ v: JSONValue, _ p: String, max: Int, min: Int = 1) throws(JSONFieldError) -> Int {
        let n = try v.int(at: p)
        guard n >= min && n <= max else {
            throw JSONFieldError(path: p, message: "\(n) is out of range (must be " + (max == Int.max ? "≥ \(min))" : "in \(min)...\(max))"))
        }
        return n
    }

    static func decodeModel(_ v: JSONValue, at path: String) throws(JSONFieldError) -> ModelEntry {
        let r = try JSONObjectReader(v, at: path, keys: ["id", "path", "dtype", "speculation"], nullIsAbsent: false)
        let id = try r.required("id") { (v, p) throws(JSONFieldError) in try v.string(at: p) }
        guard !id.isEmpty else { throw JSONFieldError(path: r.path("id"), message: "is empty") }
        let folder = try r.required("path") { (v, p) throws(JSONFieldError) in try v.string(at: p) }
        guard !folder.isEmpty else { throw JSONFieldError(path: r.path("path"), message: "is empty") }
        var entry = ModelEntry(id: id, path: folder)
        entry.dtype = try r.string("dtype", default: entry.dtype)
        guard entry.dtype == "f32" || entry.dtype == "bf16" else {
            throw JSONFieldError(path: r.path("dtype"), message: "'\(entry.dtype)' is not supported: f32 (weights held and streamed as F32) or bf16 (the target's matrices streamed as BF16: a BF16 checkpoint only)")
        }
        if let s = r.value("speculation") { entry.speculation = try decodeSpeculation(s, at: r.path("speculation")) }
        return entry
    }

    static func decodeSpeculation(_ v: JSONValue, at path: String) throws(JSONFieldError) -> SpeculationConfig {
        let r = try JSONObjectReader(v, at: path, keys: ["default_method", "num_tokens", "adaptive", "auto_disable", "draft",
                                                         "medusa", "mtp", "ngram"], nullIsAbsent: false)
        var s = SpeculationConfig()
        let method = try r.choice("default_method", default: s.defaultMethod.rawValue, of: SpeculativeMethod.allCases.map(\.rawValue))
        s.defaultMethod = SpeculativeMethod(rawValue: method)!
        let draftLength = 1...16
        s.numTokens = try r.int("num_tokens", default: s.numTokens, in: draftLength)
        s.adaptive = try r.bool("adaptive", default: s.adaptive)
        if let v = r.value("auto_disable") {
            let a = try JSONObjectReader(v, at: r.path("auto_disable"), keys: ["enabled", "break_even", "warmup_steps", "retry_after"], nullIsAbsent: false)
            s.autoDisable.enabled = try a.bool("enabled", default: s.autoDisable.enabled)
            s.autoDisable.breakEven = try a.double("break_even", default: s.autoDisable.breakEven, in: 0...100)
            s.autoDisable.warmupSteps = try a.int("warmup_steps", default: s.autoDisable.warmupSteps, in: 1...100_000)
            s.autoDisable.retryAfter = try a.int("retry_after", default: s.autoDisable.retryAfter, in: 0...100_000)
        }
        if let v = r.value("draft") {
            let d = try JSONObjectReader(v, at: r.path("draft"), keys: ["path", "num_tokens", "p_min", "vocabulary"], nullIsAbsent: false)
            s.draft.path = try d.nullable("path") { (v, p) throws(JSONFieldError) in
                let folder = try v.string(at: p)
                guard !folder.isEmpty else { throw JSONFieldError(path: p, message: "is empty (use null for no draft model)") }
                return folder
            }
            s.draft.numTokens = try d.int("num_tokens", default: s.draft.numTokens, in: draftLength)
            s.draft.pMin = try d.double("p_min", default: s.draft.pMin, in: 0...1)
            s.draft.vocabulary = try draftVocabulary(d)
        }
        if let v = r.value("medusa") {
            s.medusa = try decodeMedusa(v, at: r.path("medusa"))
        }
        if let v = r.value("mtp") {
            let m = try JSONObjectReader(v, at: r.path("mtp"), keys: ["num_tokens", "vocabulary"], nullIsAbsent: false)
            s.mtp.numTokens = try m.int("num_tokens", default: s.mtp.numTokens, in: draftLength)
            s.mtp.vocabulary = try draftVocabulary(m)
        }
        if let v = r.value("ngram") {
            let n = try JSONObjectReader(v, at: r.path("ngram"), keys: ["min_n", "max_n"], nullIsAbsent: false)
            s.ngram.minN = try n.int("min_n", default: s.ngram.minN, in: 1...64)
            s.ngram.maxN = try n.int("max_n", default: s.ngram.maxN, in: 1...64)
            guard s.ngram.maxN >= s.ngram.minN else {
                throw JSONFieldError(path: n.path("max_n"), message: "\(s.ngram.maxN) is below min_n (\(s.ngram.minN))")
            }
        }
        return s
    }

    /// `vocabulary`: how many of the most frequent tokens a drafter scores; null or absent: every token. (Checked
    /// against the model's vocabulary when it loads.)
    static func draftVocabulary(_ r: JSONObjectReader) throws(JSONFieldError) -> Int? {
        try r.nullable("vocabulary") { (v, p) throws(JSONFieldError) in try positive(v, p, max: 1 << 24) }
    }

    static func decodeMedusa(_ v: JSONValue, at path: String) throws(JSONFieldError) -> SpeculationConfig.Medusa {
        let r = try JSONObjectReader(v, at: path, keys: ["tree", "sizes", "posterior_threshold", "posterior_alpha", "acceptance",
                                                         "vocabulary"], nullIsAbsent: false)
        var m = SpeculationConfig.Medusa()
        if let tree = r.value("tree") {
            let p = r.path("tree")
            switch tree {
            case .string("auto"):
                m.tree = .auto
            case .array(let paths):
                guard !paths.isEmpty else { throw JSONFieldError(path: p, message: "is empty (use \"auto\" to size the tree at start-up)") }
                var choices: [[Int]] = []
                for (i, node) in paths.enumerated() {
                    let ranks = try node.array(at: "\(p)[\(i)]")
                    guard !ranks.isEmpty else { throw JSONFieldError(path: "\(p)[\(i)]", message: "is an empty path") }
                    choices.append(try ranks.enumerated().map { (j, rank) throws(JSONFieldError) in
                        try positive(rank, "\(p)[\(i)][\(j)]", max: 1023, min: 0)
                    })
                }
                m.tree = .choices(choices)
            default:
                throw JSONFieldError(path: p, message: "expected \"auto\" or a list of paths such as [[0], [0, 0], [1]], found \(tree.typeName)")
            }
        }
        if let sizes = r.value("sizes") {
            let items = try sizes.array(at: r.path("sizes"))
            guard !items.isEmpty else { throw JSONFieldError(path: r.path("sizes"), message: "is empty") }
            m.sizes = try items.enumerated().map { (i, n) throws(JSONFieldError) in try positive(n, "\(r.path("sizes"))[\(i)]", max: 256) }
        }
        m.posteriorThreshold = try r.double("posterior_threshold", default: m.posteriorThreshold, in: 0...1)
        m.posteriorAlpha = try r.double("posterior_alpha", default: m.posteriorAlpha, in: 0...1)
        let acceptance = try r.choice("acceptance", default: m.acceptance.rawValue, of: ["typical", "rejection"])
        m.acceptance = SpeculationConfig.Medusa.Acceptance(rawValue: acceptance)!
        m.vocabulary = try draftVocabulary(r)
        return m
    }

    /// Every model folder (and draft folder) must hold a config.json, and the benchmark prompts must exist.
    public func checkFiles() throws(ConfigError) {
        func folder(_ path: String, key: String) throws(ConfigError) {
            let url = resolve(path)
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw ConfigError(file: file, path: key, message: "no model folder at \(url.path) (relative paths start at \(baseDirectory.path))")
            }
            guard FileManager.default.fileExists(atPath: url.appendingPathComponent("config.json").path) else {
                throw ConfigError(file: file, path: key, message: "\(url.path) has no config.json (not a Hugging Face model folder)")
            }
        }
        for (i, model) in models.enumerated() {
            try folder(model.path, key: "models[\(i)].path")
            if let draft = model.speculation.draft.path { try folder(draft, key: "models[\(i)].speculation.draft.path") }
        }
        let prompts = resolve(benchmark.prompts)
        guard FileManager.default.fileExists(atPath: prompts.path) else {
            throw ConfigError(file: file, path: "benchmark.prompts", message: "no file at \(prompts.path)")
        }
    }
}
