import Foundation

// A DeepSeek-V3-style multi-token-prediction module (DESIGN §3), stored as layer `num_hidden_layers + k` of the
// target's checkpoint and sharing its embedding and lm_head.
//
// At position i, with h_i the target's final hidden state (after the final norm) and t_{i+1} the next token:
//   x_i      = eh_proj · [enorm(embed(t_{i+1})); hnorm(h_i)]        (embedding first; eh_proj is [H, 2H])
//   y_i      = block(x_i)                                          (a full LLaMA block, its own KV cache,
//                                                                   RoPE position i, causal over positions)
//   h'_i     = shared_head.norm(y_i)
//   logits_i = lm_head(h'_i)                                       (predicts t_{i+2})
// Drafting further reuses the module: h'_i stands in for the target's h at position i + 1.

public final class MTPModule {
    public let target: LlamaModel
    public let index: Int
    let enorm: Tensor, hnorm: Tensor
    let ehProj: Tensor      // [H, 2H]
    let block: TransformerBlock
    let sharedNorm: Tensor

    public init(target: LlamaModel, index: Int, enorm: Tensor, hnorm: Tensor, ehProj: Tensor, block: LayerWeights, sharedNorm: Tensor) {
        self.target = target
        self.index = index
        self.enorm = enorm
        self.hnorm = hnorm
        self.ehProj = ehProj
        self.block = TransformerBlock(weights: block, config: target.config)
        self.sharedNorm = sharedNorm
    }

    /// Loads module `index` (0-based) from the target's folder; every name and shape is checked.
    public static func load(target: LlamaModel, directory: URL, index: Int = 0) throws -> MTPModule {
        let config = target.config
        guard index < config.numNextnPredictLayers else {
            throw ModelLoadError(file: directory.appendingPathComponent("config.json").path, key: "num_nextn_predict_layers",
                                 message: "key 'num_nextn_predict_layers': the config declares \(config.numNextnPredictLayers) MTP module(s); module \(index) was asked for")
        }
        let checkpoint = try SafeTensorsCheckpoint(directory: directory)
        let prefix = "model.layers.\(config.numHiddenLayers + index)."
        let h = config.hiddenSize
        return MTPModule(
            target: target, index: index,
            enorm: try checkpoint.tensor(prefix + "enorm.weight", shape: [h]),
            hnorm: try checkpoint.tensor(prefix + "hnorm.weight", shape: [h]),
            ehProj: try checkpoint.tensor(prefix + "eh_proj.weight", shape: [h, 2 * h]),
            block: try LayerWeights.load(from: checkpoint, prefix: prefix, config: config),
            sharedNorm: try checkpoint.tensor(prefix + "shared_head.norm.weight", shape: [h]))
    }

    /// The module's own KV cache (one layer).
    public func makeCache(capacity: Int) -> KVCache {
        KVCache(layers: 1, kvDim: target.config.numKeyValueHeads * target.config.headDim, capacity: capacity)
    }

    /// Bytes the module reads per step (for cost accounting).
    public var weightBytes: Int { ([enorm, hnorm, ehProj, sharedNorm] + block.weights).reduce(0) { $0 + $1.streamedByteCount } }

    /// Streams the module's matrices from BF16 copies when exact (see `LlamaModel.streamMatricesAsBF16`); the
    /// target's shared lm_head is not touched. Returns whether every matrix has its copy.
    @discardableResult
    public func streamMatricesAsBF16() -> Bool {
        ([ehProj] + block.matrices).map { $0.keepBF16Copy() }.allSatisfy { $0 }
    }

    /// Runs the module on rows (previous hidden `hidden[r]`, next token `tokens[r]`, position `positions[r]`),
    /// writing K/V into `cache` at slot = position. Returns h' `[M, H]` and, if asked, the logits of the last row:
    /// through the target's lm_head, or through `vocabulary` (a drafting head of the most frequent tokens).
    public func forward(hidden: [[Float]], tokens: [Int], positions: [Int], cache: KVCache, logitsOfLastRow: Bool,
                        vocabulary: VocabularySubset? = nil) -> (hidden: Tensor, logits: [Float]?)
    {
        let m = tokens.count, h = target.config.hiddenSize, eps = target.config.rmsNormEps
        precondition(m > 0 && hidden.count == m && positions.count == m)
        // concat(enorm(embed(t)), hnorm(h)) → [M, 2H]
        let cat = Tensor(shape: [m, 2 * h])
        for r in 0..<m {
            rmsNorm(target.embedTokens.row(tokens[r]), weight: enorm.data, epsilon: eps, rows: 1, dim: h, into: cat.row(r))
            hidden[r].withUnsafeBufferPointer {
                rmsNorm($0.baseAddress!, weight: hnorm.data, epsilon: eps, rows: 1, dim: h, into: cat.row(r) + h)
            }
        }
        let x = Tensor(shape: [m, h])
        matmul(cat.data, rows: m, weight: ehProj, into: x.data, path: .streaming, pool: target.pool)
        let rows = (0..<m).map { Row(token: tokens[$0], position: positions[$0], cache: cache) }
        let segments = [MatmulSegment(range: 0..<m, path: .streaming)]
        block.apply(x, rows: rows, cacheLayer: 0, segments: segments, rope: target.rope,
                    scratch: TransformerBlock.Scratch(rows: m, config: target.config), pool: target.pool)
        let out = Tensor(shape: [m, h])
        rmsNorm(x.data, weight: sharedNorm.data, epsilon: eps, rows: m, dim: h, into: out.data)
        guard logitsOfLastRow else { return (out, nil) }
        if let vocabulary { return (out, vocabulary.logits(hidden: out.row(m - 1))) }
        let last = Tensor(shape: [1, h])
        last.data.update(from: out.row(m - 1), count: h)
        return (out, target.vocabularyLogits(last).array)
    }
}
