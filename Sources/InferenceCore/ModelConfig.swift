import Foundation

// A Hugging Face LLaMA `config.json` as the engine uses it (DESIGN §3).
//
// Both the transformers 4 layout (`torch_dtype`, `rope_theta`, `rope_scaling: null`) and the transformers 5
// layout (`dtype`, `rope_parameters: {rope_theta, rope_type: "default"}`) decode. Whatever the engine does not
// implement (rope scaling, biases, activations other than SiLU, other architectures) is refused here with the
// key that asks for it, rather than computed wrongly later.

public struct LlamaConfig: Sendable, Equatable {
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int
    /// `head_dim` if present, else `hidden_size / num_attention_heads`.
    public var headDim: Int
    public var rmsNormEps: Float
    /// `rope_theta` (or `rope_parameters.rope_theta`); 10000 if absent.
    public var ropeTheta: Double
    public var vocabSize: Int
    public var maxPositionEmbeddings: Int
    /// false if absent, as in HF `LlamaConfig`.
    public var tieWordEmbeddings: Bool
    /// `torch_dtype` (transformers 4) or `dtype` (transformers 5), e.g. "bfloat16".
    public var torchDtype: String?
    public var bosTokenId: Int?
    /// `eos_token_id` may be an integer or a list of them; empty if absent.
    public var eosTokenIds: [Int]
    /// Medusa heads (DESIGN §3): `medusa_num_heads`, `medusa_num_layers`.
    public var medusaNumHeads: Int?
    public var medusaNumLayers: Int?
    /// DeepSeek-V3 multi-token prediction modules, stored as layers `num_hidden_layers + k`.
    public var numNextnPredictLayers: Int

    public init(
        hiddenSize: Int, intermediateSize: Int, numHiddenLayers: Int, numAttentionHeads: Int,
        numKeyValueHeads: Int? = nil, headDim: Int? = nil, rmsNormEps: Float = 1e-6, ropeTheta: Double = 10000,
        vocabSize: Int, maxPositionEmbeddings: Int = 2048, tieWordEmbeddings: Bool = false,
        torchDtype: String? = nil, bosTokenId: Int? = nil, eosTokenIds: [Int] = [],
        medusaNumHeads: Int? = nil, medusaNumLayers: Int? = nil, numNextnPredictLayers: Int = 0
    ) {
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads
        self.numKeyValueHeads = numKeyValueHeads ?? numAttentionHeads
        self.headDim = headDim ?? (numAttentionHeads > 0 ? hiddenSize / numAttentionHeads : 0)
        self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta
        self.vocabSize = vocabSize
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.tieWordEmbeddings = tieWordEmbeddings
        self.torchDtype = torchDtype
        self.bosTokenId = bosTokenId
        self.eosTokenIds = eosTokenIds
        self.medusaNumHeads = medusaNumHeads
        self.medusaNumLayers = medusaNumLayers
        self.numNextnPredictLayers = numNextnPredictLayers
    }

    /// Reads and checks `url` (the config.json file itself).
    public static func load(from url: URL) throws -> LlamaConfig {
        let file = url.path
        guard FileManager.default.fileExists(atPath: file) else { throw ModelLoadError.file(file, "file not found") }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw ModelLoadError.file(file, "cannot read (\(error.localizedDescription))")
        }
        return try parse(data, fileName: file)
    }

    /// Decodes and checks the bytes of a config.json; errors name `fileName` and the key path.
    public static func parse(_ data: Data, fileName file: String) throws -> LlamaConfig {
        let root = try data.withUnsafeBytes { try JSONValue.parse($0, file: file, maxDepth: 64) }
        guard case .object(let object) = root else {
            throw ModelLoadError.file(file, "expected a JSON object at the top level, found \(root.kindName)")
        }
        let json = JSONObjectReader(file: file, path: "", object: object)

        try checkArchitecture(json)
        try checkUnsupportedFeatures(json)

        let hiddenSize = try json.positiveInt("hidden_size")
        let numAttentionHeads = try json.positiveInt("num_attention_heads")
        let numKeyValueHeads = try json.optionalPositiveInt("num_key_value_heads") ?? numAttentionHeads
        let headDim = try json.optionalPositiveInt("head_dim")
        if headDim == nil, hiddenSize % numAttentionHeads != 0 {
            throw json.error("hidden_size", "\(hiddenSize) is not divisible by num_attention_heads \(numAttentionHeads)")
        }
        if numAttentionHeads % numKeyValueHeads != 0 {
            throw json.error("num_key_value_heads",
                             "num_attention_heads \(numAttentionHeads) is not divisible by \(numKeyValueHeads)")
        }
        let vocabSize = try json.positiveInt("vocab_size")
        let rmsNormEps = try json.number("rms_norm_eps")
        guard rmsNormEps > 0, rmsNormEps.isFinite else {
            throw json.error("rms_norm_eps", "must be a positive number, found \(rmsNormEps)")
        }
        let ropeTheta = try readRopeTheta(json)

        let bosTokenId = try json.optionalInt("bos_token_id")
        let eosTokenIds = try json.optionalIntOrIntList("eos_token_id") ?? []
        for (key, ids) in [("bos_token_id", bosTokenId.map { [$0] } ?? []), ("eos_token_id", eosTokenIds)] {
            if let bad = ids.first(where: { $0 < 0 || $0 >= vocabSize }) {
                throw json.error(key, "token id \(bad) is outside the vocabulary (vocab_size \(vocabSize))")
            }
        }

        return LlamaConfig(
            hiddenSize: hiddenSize,
            intermediateSize: try json.positiveInt("intermediate_size"),
            numHiddenLayers: try json.positiveInt("num_hidden_layers"),
            numAttentionHeads: numAttentionHeads,
            numKeyValueHeads: numKeyValueHeads,
            headDim: headDim,
            rmsNormEps: Float(rmsNormEps),
            ropeTheta: ropeTheta,
            vocabSize: vocabSize,
            maxPositionEmbeddings: try json.positiveInt("max_position_embeddings"),
            tieWordEmbeddings: try json.optionalBool("tie_word_embeddings") ?? false,
            torchDtype: try json.optionalString("torch_dtype") ?? json.optionalString("dtype"),
            bosTokenId: bosTokenId,
            eosTokenIds: eosTokenIds,
            medusaNumHeads: try json.optionalNonNegativeInt("medusa_num_heads"),
            medusaNumLayers: try json.optionalNonNegativeInt("medusa_num_layers"),
            numNextnPredictLayers: try json.optionalNonNegativeInt("num_nextn_predict_layers") ?? 0
        )
    }

    /// `architectures` must list LlamaForCausalLM, or `model_type` must be "llama".
    private static func checkArchitecture(_ json: JSONObjectReader) throws {
        let architectures = try json.optionalStringList("architectures")
        let modelType = try json.optionalString("model_type")
        if architectures?.contains("LlamaForCausalLM") == true || modelType == "llama" { return }
        let found = architectures.map { "architecture \($0)" } ?? "no architectures"
        let type = modelType.map { "model_type '\($0)'" } ?? "no model_type"
        throw json.error("architectures",
                         "unsupported model (\(found), \(type)); only LlamaForCausalLM (model_type 'llama') is implemented")
    }

    private static func checkUnsupportedFeatures(_ json: JSONObjectReader) throws {
        if let scaling = try json.optionalObject("rope_scaling") {
            let type = try scaling.optionalString("rope_type") ?? scaling.optionalString("type")
            if type != "default" {
                throw json.error("rope_scaling", "rope scaling \(type.map { "'\($0)' " } ?? "")is not implemented")
            }
        }
        if try json.optionalBool("attention_bias") == true {
            throw json.error("attention_bias", "attention projection biases are not implemented")
        }
        if try json.optionalBool("mlp_bias") == true {
            throw json.error("mlp_bias", "MLP biases are not implemented")
        }
        if let act = try json.optionalString("hidden_act"), act != "silu" {
            throw json.error("hidden_act", "activation '\(act)' is not implemented (only 'silu')")
        }
    }

    /// transformers 4 writes `rope_theta`; transformers 5 writes `rope_parameters: {rope_theta, rope_type}`.
    private static func readRopeTheta(_ json: JSONObjectReader) throws -> Double {
        var theta = try json.optionalNumber("rope_theta")
        if let parameters = try json.optionalObject("rope_parameters") {
            if let type = try parameters.optionalString("rope_type"), type != "default" {
                throw parameters.error("rope_type", "rope type '\(type)' is not implemented (only 'default')")
            }
            theta = try parameters.optionalNumber("rope_theta") ?? theta
        }
        let value = theta ?? 10000
        guard value > 0, value.isFinite else {
            throw json.error("rope_theta", "must be a positive number, found \(value)")
        }
        return value
    }
}

// MARK: - JSON values for the model files

/// A decoded JSON document. Integers stay integers (`1` is `.int`, `1.5` is `.double`, `true` is `.bool`),
/// so a wrong type can be named exactly.
enum JSONValue: Decodable, Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Int.self) { self = .int(value) }
        else if let value = try? container.decode(Double.self) { self = .double(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([JSONValue].self) { self = .array(value) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }

    var kindName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .int: "integer"
        case .double: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    /// Parses `bytes` as one JSON document. Nesting deeper than `maxDepth` is refused by a flat scan first,
    /// because the recursive decoder could exhaust a thread's stack on hostile input.
    static func parse(_ bytes: UnsafeRawBufferPointer, file: String, maxDepth: Int) throws -> JSONValue {
        var depth = 0, inString = false, escaped = false
        for byte in bytes {
            if inString {
                if escaped { escaped = false }
                else if byte == UInt8(ascii: "\\") { escaped = true }
                else if byte == UInt8(ascii: "\"") { inString = false }
            } else if byte == UInt8(ascii: "\"") {
                inString = true
            } else if byte == UInt8(ascii: "{") || byte == UInt8(ascii: "[") {
                depth += 1
                if depth > maxDepth { throw ModelLoadError.file(file, "JSON nested deeper than \(maxDepth) levels") }
            } else if byte == UInt8(ascii: "}") || byte == UInt8(ascii: "]") {
                depth -= 1
            }
        }
        do {
            return try JSONDecoder().decode(JSONValue.self, from: Data(bytes))
        } catch {
            throw ModelLoadError.file(file, "not valid JSON")
        }
    }
}

/// Typed access to one JSON object; every error names the file and the dotted key path.
struct JSONObjectReader {
    let file: String
    /// Dotted path of this object inside the document ("" for the top level).
    let path: String
    let object: [String: JSONValue]

    func keyPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func error(_ key: String, _ message: String) -> ModelLoadError { .key(file, keyPath(key), message) }

    private func mismatch(_ key: String, _ expected: String, _ found: JSONValue) -> ModelLoadError {
        error(key, "expected \(expected), found \(found.kindName)")
    }

    /// The value at `key`, or nil when the key is absent or null.
    func present(_ key: String) -> JSONValue? {
        guard let value = object[key], value != .null else { return nil }
        return value
    }

    func optionalInt(_ key: String) throws -> Int? {
        guard let value = present(key) else { return nil }
        guard case .int(let int) = value else { throw mismatch(key, "an integer", value) }
        return int
    }

    func optionalNonNegativeInt(_ key: String) throws -> Int? {
        guard let value = try optionalInt(key) else { return nil }
        guard value >= 0 else { throw error(key, "must not be negative, found \(value)") }
        return value
    }

    func optionalPositiveInt(_ key: String) throws -> Int? {
        guard let value = try optionalInt(key) else { return nil }
        guard value > 0 else { throw error(key, "must be positive, found \(value)") }
        return value
    }

    func positiveInt(_ key: String) throws -> Int {
        guard let value = try optionalPositiveInt(key) else { throw missing(key) }
        return value
    }

    func optionalNumber(_ key: String) throws -> Double? {
        guard let value = present(key) else { return nil }
        switch value {
        case .int(let int): return Double(int)
        case .double(let double): return double
        default: throw mismatch(key, "a number", value)
        }
    }

    func number(_ key: String) throws -> Double {
        guard let value = try optionalNumber(key) else { throw missing(key) }
        return value
    }

    func optionalBool(_ key: String) throws -> Bool? {
        guard let value = present(key) else { return nil }
        guard case .bool(let bool) = value else { throw mismatch(key, "a boolean", value) }
        return bool
    }

    func optionalString(_ key: String) throws -> String? {
        guard let value = present(key) else { return nil }
        guard case .string(let string) = value else { throw mismatch(key, "a string", value) }
        return string
    }

    func optionalObject(_ key: String) throws -> JSONObjectReader? {
        guard let value = present(key) else { return nil }
        guard case .object(let object) = value else { throw mismatch(key, "an object", value) }
        return JSONObjectReader(file: file, path: keyPath(key), object: object)
    }

    func optionalStringList(_ key: String) throws -> [String]? {
        guard let value = present(key) else { return nil }
        guard case .array(let items) = value else { throw mismatch(key, "a list of strings", value) }
        return try items.map { item in
            guard case .string(let string) = item else { throw mismatch(key, "a list of strings", item) }
            return string
        }
    }

    /// An integer or a list of integers (as `eos_token_id`).
    func optionalIntOrIntList(_ key: String) throws -> [Int]? {
        guard let value = present(key) else { return nil }
        switch value {
        case .int(let int): return [int]
        case .array(let items):
            return try items.map { item in
                guard case .int(let int) = item else { throw mismatch(key, "an integer or a list of integers", item) }
                return int
            }
        default: throw mismatch(key, "an integer or a list of integers", value)
        }
    }

    private func missing(_ key: String) -> ModelLoadError { error(key, "required key is missing") }
}
