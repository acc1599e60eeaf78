import Foundation
import SpeculativeDecoding

// The server's configuration (DESIGN §8): what it listens on, how the engine is sized, and which models it serves
// with which speculation settings. Every default below is also written out in config/default.json (a test keeps
// the two equal). Relative paths resolve against the parent of the config file's directory, so that
// config/default.json names models as `models/...` from the repository root.

public struct ServerConfig: Sendable, Equatable {
    public var server = ListenSettings()
    public var engine = EngineConfig()
    public var models: [ModelEntry] = []
    public var benchmark = BenchmarkConfig()
    /// The config file as named on the command line (for messages).
    public var file = "config.json"
    /// Where relative paths resolve: the parent of the config file's directory.
    public var baseDirectory = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)

    public init() {}

    /// `path` made absolute against `baseDirectory` (absolute paths are kept).
    public func resolve(_ path: String) -> URL {
        path.hasPrefix("/") ? URL(fileURLWithPath: path).standardizedFileURL
            : baseDirectory.appendingPathComponent(path).standardizedFileURL
    }
}

public struct ListenSettings: Sendable, Equatable {
    public var host = "127.0.0.1"
    public var port = 8080
    /// Name of the environment variable holding the bearer API key; nil serves without authentication.
    public var apiKeyEnv: String?
    public var maxConnections = 64
    public var limits = RequestLimits()
    public var timeouts = Timeouts()
    /// How long requests in flight may finish after SIGINT/SIGTERM before they are cancelled.
    public var shutdownGraceSeconds = 10.0

    public init() {}

    public struct RequestLimits: Sendable, Equatable {
        public var requestLineBytes = 8 * 1024
        public var headerBytes = 16 * 1024
        public var headerCount = 100
        public var bodyBytes = 16 * 1024 * 1024
        public init() {}
    }

    public struct Timeouts: Sendable, Equatable {
        /// Seconds: the request head must arrive within `head`; a body may pause `body` between bytes; a
        /// keep-alive connection is closed after `idle`; a client that does not read for `write` is dropped.
        public var head = 10.0
        public var body = 30.0
        public var idle = 10.0
        public var write = 30.0
        public init() {}
    }

    /// The HTTP layer's configuration.
    public func httpConfiguration(log: (@Sendable (String) -> Void)?) -> HTTPServerConfiguration {
        var http = HTTPServerConfiguration(host: host, port: port, maxConnections: maxConnections,
                                           headTimeout: timeouts.head, bodyTimeout: timeouts.body,
                                           idleTimeout: timeouts.idle, writeTimeout: timeouts.write, log: log)
        http.limits.maxRequestLineBytes = limits.requestLineBytes
        http.limits.maxHeaderBytes = limits.headerBytes
        http.limits.maxHeaderCount = limits.headerCount
        http.limits.maxBodyBytes = limits.bodyBytes
        return http
    }
}

public struct EngineConfig: Sendable, Equatable {
    /// Kernel threads; nil uses every core (or SPECSERVE_THREADS).
    public var threads: Int?
    /// Requests waiting per model beyond which a request is refused with 429.
    public var maxQueue = 64
    /// Requests decoded together per model (continuous batching).
    public var maxActive = 16
    /// Most tokens of prompt plus completion; nil uses each model's max_position_embeddings.
    public var maxContext: Int?
    public init() {}
}

public struct BenchmarkConfig: Sendable, Equatable {
    /// The prompt set POST /v1/benchmark races on when a request brings none.
    public var prompts = "config/bench_prompts.json"
    public init() {}
}

public struct ModelEntry: Sendable, Equatable {
    /// The name clients send as `model`.
    public var id: String
    /// The model folder (Hugging Face layout), as written in the config.
    public var path: String
    /// How the target's weights are streamed by decode and verify: "f32", or "bf16" (a BF16 copy of its matrices,
    /// for checkpoints whose values are all BF16: bitwise the same outputs, half the bytes per step; the F32 values
    /// stay for prefill's sgemm, so the target takes 1.5× the memory).
    public var dtype = "f32"
    public var speculation = SpeculationConfig()

    public init(id: String, path: String) {
        self.id = id
        self.path = path
    }
}

public struct SpeculationConfig: Sendable, Equatable {
    /// The method used when a request does not choose one.
    public var defaultMethod = SpeculativeMethod.none
    /// Draft tokens per step for the methods without their own setting (ngram; medusa up to its tree's depth).
    public var numTokens = SpeculationSettings.defaultNumDraft
    /// Let the draft length follow recent acceptance.
    public var adaptive = true
    public var autoDisable = AutoDisable()
    public var draft = Draft()
    public var medusa = Medusa()
    public var mtp = MTP()
    public var ngram = NGram()

    public init() {}

    public struct AutoDisable: Sendable, Equatable {
        /// Switch speculation off for a request whose expected speedup stays below `breakEven`.
        public var enabled = true
        public var breakEven = SpeculationSettings().breakEven
        /// Speculative steps measured before deciding.
        public var warmupSteps = SpeculationSettings().warmupSteps
        /// Plain steps before a request tries speculation again (doubling after each failed try); 0: never.
        public var retryAfter = SpeculationSettings().retryAfter
        public init() {}
    }

    public struct Draft: Sendable, Equatable {
        /// The draft model folder; nil disables the draft method.
        public var path: String?
        public var numTokens = SpeculationSettings.defaultNumDraft
        /// Stop a draft chain early when the draft's top probability falls below this.
        public var pMin = 0.0
        /// Score only this many most frequent tokens when drafting (token_frequency.json); nil: every token.
        public var vocabulary: Int?
        public init() {}
    }

    public struct Medusa: Sendable, Equatable {
        public enum Tree: Sendable, Equatable {
            /// Sized at start-up from the measured verify cost.
            case auto
            /// Explicit paths of top-k ranks per head.
            case choices([[Int]])
        }
        public enum Acceptance: String, Sendable, Equatable {
            /// Typical acceptance at T > 0 (lossy, labelled so).
            case typical
            /// Lossless multi-branch rejection sampling.
            case rejection
        }
        public var tree = Tree.auto
        /// Tree sizes (nodes) the start-up sizing chooses among.
        public var sizes = [4, 8, 16, 24, 32, 48, 64]
        public var posteriorThreshold = 0.09
        public var posteriorAlpha = 0.3
        public var acceptance = Acceptance.typical
        /// Score only this many most frequent tokens when drafting (v2 heads; token_frequency.json); nil: every token.
        public var vocabulary: Int?
        public init() {}

        public var options: MedusaOptions {
            var options = MedusaOptions()
            if case let .choices(c) = tree { options.choices = c }
            options.sizes = sizes
            options.typical = acceptance == .typical ? (Float(posteriorThreshold), Float(posteriorAlpha)) : nil
            return options
        }
    }

    public struct MTP: Sendable, Equatable {
        public var numTokens = SpeculationSettings.defaultNumDraft
        /// Score only this many most frequent tokens when drafting (token_frequency.json); nil: every token.
        public var vocabulary: Int?
        public init() {}
    }

    public struct NGram: Sendable, Equatable {
        public var minN = 1
        public var maxN = 3
        public init() {}
    }

    /// The draft length a method uses unless a request sets one.
    public func numTokens(for method: SpeculativeMethod) -> Int {
        switch method {
        case .draft: return draft.numTokens
        case .mtp: return mtp.numTokens
        case .none, .ngram, .medusa: return numTokens
        }
    }
}

/// A configuration problem: the file, the key path and what is wrong, e.g.
/// `config/default.json: models[0].speculation.draft.p_min: expected a number, found string`.
public struct ConfigError: Error, Equatable, CustomStringConvertible {
    public let file: String
    /// The key path ("" for the document itself).
    public let path: String
    public let message: String

    public init(file: String, path: String, message: String) {
        self.file = file
        self.path = path
        self.message = message
    }

    public var description: String { path.isEmpty ? "\(file): \(message)" : "\(file): \(path): \(message)" }
}
