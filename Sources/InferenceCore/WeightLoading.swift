import Foundation

// The weights of a LLaMA-family model, loaded from a Hugging Face folder (DESIGN §3) and checked tensor by
// tensor against the config: every expected name must be present with exactly the shape the config implies.
// Weights keep the HF layout `[out, in]`. Extra tensors (MTP modules stored as layers past
// `num_hidden_layers`, rotary caches, …) are allowed and left for whoever needs them.

/// One transformer block, `model.layers.N.*` in HF naming.
public struct LayerWeights: Sendable {
    public let inputNorm: Tensor          // [H]                    input_layernorm.weight
    public let q: Tensor                  // [nHeads*headDim, H]    self_attn.q_proj.weight
    public let k: Tensor                  // [nKV*headDim, H]       self_attn.k_proj.weight
    public let v: Tensor                  // [nKV*headDim, H]       self_attn.v_proj.weight
    public let o: Tensor                  // [H, nHeads*headDim]    self_attn.o_proj.weight
    public let postAttentionNorm: Tensor  // [H]                    post_attention_layernorm.weight
    public let gate: Tensor               // [I, H]                 mlp.gate_proj.weight
    public let up: Tensor                 // [I, H]                 mlp.up_proj.weight
    public let down: Tensor               // [H, I]                 mlp.down_proj.weight

    public init(inputNorm: Tensor, q: Tensor, k: Tensor, v: Tensor, o: Tensor, postAttentionNorm: Tensor,
                gate: Tensor, up: Tensor, down: Tensor) {
        self.inputNorm = inputNorm
        self.q = q
        self.k = k
        self.v = v
        self.o = o
        self.postAttentionNorm = postAttentionNorm
        self.gate = gate
        self.up = up
        self.down = down
    }

    /// The tensor names of a block under `prefix` (e.g. "model.layers.3.") with the shapes `config` implies,
    /// in the order of the stored properties.
    public static func expectedShapes(prefix: String, config: LlamaConfig) -> [(name: String, shape: [Int])] {
        let h = config.hiddenSize, i = config.intermediateSize
        let qDim = config.numAttentionHeads * config.headDim, kvDim = config.numKeyValueHeads * config.headDim
        return [
            ("\(prefix)input_layernorm.weight", [h]),
            ("\(prefix)self_attn.q_proj.weight", [qDim, h]),
            ("\(prefix)self_attn.k_proj.weight", [kvDim, h]),
            ("\(prefix)self_attn.v_proj.weight", [kvDim, h]),
            ("\(prefix)self_attn.o_proj.weight", [h, qDim]),
            ("\(prefix)post_attention_layernorm.weight", [h]),
            ("\(prefix)mlp.gate_proj.weight", [i, h]),
            ("\(prefix)mlp.up_proj.weight", [i, h]),
            ("\(prefix)mlp.down_proj.weight", [h, i]),
        ]
    }

    /// Loads the block stored under `prefix`: "model.layers.N." for the main layers, and the same layout
    /// for an MTP module's block at layer `num_hidden_layers + k`.
    public static func load(from checkpoint: SafeTensorsCheckpoint, prefix: String, config: LlamaConfig) throws
        -> LayerWeights {
        let t = try expectedShapes(prefix: prefix, config: config).map { try checkpoint.tensor($0.name, shape: $0.shape) }
        return LayerWeights(inputNorm: t[0], q: t[1], k: t[2], v: t[3], o: t[4], postAttentionNorm: t[5],
                            gate: t[6], up: t[7], down: t[8])
    }

    var tensors: [Tensor] { [inputNorm, q, k, v, o, postAttentionNorm, gate, up, down] }
}

public struct LlamaWeights: Sendable {
    public let config: LlamaConfig
    public let embedTokens: Tensor        // [V, H]   model.embed_tokens.weight
    public let layers: [LayerWeights]
    public let norm: Tensor               // [H]      model.norm.weight
    /// [V, H] lm_head.weight; the very same object as `embedTokens` when the embeddings are tied.
    public let lmHead: Tensor

    public init(config: LlamaConfig, embedTokens: Tensor, layers: [LayerWeights], norm: Tensor, lmHead: Tensor) {
        self.config = config
        self.embedTokens = embedTokens
        self.layers = layers
        self.norm = norm
        self.lmHead = lmHead
    }

    /// Reads `directory/config.json`, then the weights.
    public static func load(directory: URL) throws -> LlamaWeights {
        let config = try LlamaConfig.load(from: directory.appendingPathComponent("config.json"))
        return try load(directory: directory, config: config)
    }

    /// Reads `directory/model.safetensors` (or `model.safetensors.index.json` and its shards), checking every
    /// name and shape against `config`. With `tie_word_embeddings` the output projection is the embedding
    /// (a stored `lm_head.weight` is ignored, as in HF); without it `lm_head.weight` must be present.
    public static func load(directory: URL, config: LlamaConfig) throws -> LlamaWeights {
        let checkpoint = try SafeTensorsCheckpoint(directory: directory)
        let h = config.hiddenSize, vocab = config.vocabSize
        let embedTokens = try checkpoint.tensor("model.embed_tokens.weight", shape: [vocab, h])
        let layers = try (0..<config.numHiddenLayers).map {
            try LayerWeights.load(from: checkpoint, prefix: "model.layers.\($0).", config: config)
        }
        let norm = try checkpoint.tensor("model.norm.weight", shape: [h])
        let lmHead: Tensor
        if config.tieWordEmbeddings {
            lmHead = embedTokens
        } else if checkpoint.contains("lm_head.weight") {
            lmHead = try checkpoint.tensor("lm_head.weight", shape: [vocab, h])
        } else {
            throw ModelLoadError.tensor(checkpoint.fileName, "lm_head.weight",
                                        "missing, and tie_word_embeddings is false in config.json")
        }
        return LlamaWeights(config: config, embedTokens: embedTokens, layers: layers, norm: norm, lmHead: lmHead)
    }

    /// Each distinct tensor once (a tied `lmHead` is the embedding).
    var distinctTensors: [Tensor] {
        var tensors = [embedTokens] + layers.flatMap(\.tensors) + [norm]
        if lmHead !== embedTokens { tensors.append(lmHead) }
        return tensors
    }

    /// Number of parameters, tied tensors counted once.
    public var parameterCount: Int { distinctTensors.reduce(0) { $0 + $1.count } }

    /// Bytes the weights occupy in memory (F32), tied tensors counted once.
    public var byteCount: Int { distinctTensors.reduce(0) { $0 + $1.byteCount } }
}

/// The safetensors files of one model folder: `model.safetensors`, or the shards that
/// `model.safetensors.index.json` maps each tensor name to.
public struct SafeTensorsCheckpoint: Sendable {
    public let directory: URL
    /// The single file, or the index of a sharded checkpoint: where a tensor that is not there is reported.
    public let fileName: String
    private let files: [SafeTensorsFile]
    private let fileOfTensor: [String: Int]

    public init(directory: URL) throws {
        self.directory = directory
        let single = directory.appendingPathComponent("model.safetensors")
        let index = directory.appendingPathComponent("model.safetensors.index.json")
        if FileManager.default.fileExists(atPath: single.path) {
            let file = try SafeTensorsFile(url: single)
            fileName = single.path
            files = [file]
            fileOfTensor = Dictionary(uniqueKeysWithValues: file.header.entries.keys.map { ($0, 0) })
        } else if FileManager.default.fileExists(atPath: index.path) {
            fileName = index.path
            (files, fileOfTensor) = try Self.openShards(index: index, directory: directory)
        } else {
            throw ModelLoadError.file(single.path, "not found (nor model.safetensors.index.json) in \(directory.path)")
        }
    }

    private static func openShards(index: URL, directory: URL) throws -> ([SafeTensorsFile], [String: Int]) {
        let indexFile = index.path
        let data: Data
        do { data = try Data(contentsOf: index) } catch {
            throw ModelLoadError.file(indexFile, "cannot read (\(error.localizedDescription))")
        }
        let root = try data.withUnsafeBytes { try JSONValue.parse($0, file: indexFile, maxDepth: 16) }
        guard case .object(let object) = root else {
            throw ModelLoadError.file(indexFile, "expected a JSON object at the top level, found \(root.kindName)")
        }
        guard let weightMapValue = object["weight_map"] else {
            throw ModelLoadError.key(indexFile, "weight_map", "required key is missing")
        }
        guard case .object(let weightMap) = weightMapValue else {
            throw ModelLoadError.key(indexFile, "weight_map", "expected an object, found \(weightMapValue.kindName)")
        }
        var shardNames: [String: String] = [:]
        for (tensor, value) in weightMap {
            guard case .string(let shard) = value else {
                throw ModelLoadError.key(indexFile, "weight_map.\(tensor)", "expected a string, found \(value.kindName)")
            }
            // Shards are plain file names beside the index; never a path that leaves the model folder.
            guard !shard.isEmpty, !shard.contains("/"), shard != ".", shard != ".." else {
                throw ModelLoadError.key(indexFile, "weight_map.\(tensor)", "shard '\(shard)' is not a plain file name")
            }
            shardNames[tensor] = shard
        }
        let shards = Set(shardNames.values).sorted()
        let files = try shards.map { try SafeTensorsFile(url: directory.appendingPathComponent($0)) }
        let position = Dictionary(uniqueKeysWithValues: shards.enumerated().map { ($1, $0) })
        return (files, shardNames.mapValues { position[$0]! })
    }

    /// All tensor names (of the index's weight map when sharded), sorted.
    public var tensorNames: [String] { fileOfTensor.keys.sorted() }

    public func contains(_ name: String) -> Bool { fileOfTensor[name] != nil }

    public func info(_ name: String) -> (dtype: String, shape: [Int])? {
        fileOfTensor[name].flatMap { files[$0].info(name) }
    }

    /// Reads tensor `name` as F32 and checks its shape.
    public func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        guard let position = fileOfTensor[name] else { throw ModelLoadError.tensor(fileName, name, "missing") }
        let file = files[position]
        guard file.header.entries[name] != nil else {
            throw ModelLoadError.tensor(file.fileName, name, "missing, though model.safetensors.index.json maps it here")
        }
        return try file.tensor(name, shape: shape)
    }
}
