import Foundation

// The LLaMA-family transformer: one forward over a batch of rows (DESIGN §2).
//
// Shapes (M = rows in the batch, H = hidden, D = head dim, Q = heads·D, KV = kv heads·D, I = intermediate):
//   x        [M, H]      residual stream, starts as the token embeddings
//   xn       [M, H]      RMSNorm(x)
//   qkv      [M, Q+2KV]  xn · [Wq; Wk; Wv]ᵀ   (the three projections fused into one weight at load)
//   attn     [M, Q]      tiled attention over each row's cache
//   gateUp   [M, 2I]     xn · [Wgate; Wup]ᵀ   (fused likewise); SwiGLU writes SiLU(gate)⊙up into its first half
//   logits   [M, V]      RMSNorm(x) · Wlmᵀ    (only rows that ask for them)
// Fusing projections changes no arithmetic: every output is still its own dot product over H.

public final class LlamaModel {
    public let config: LlamaConfig
    public let embedTokens: Tensor
    public let finalNorm: Tensor
    public let lmHead: Tensor
    public let rope: RotaryEmbedding
    public let pool: WorkerPool
    let layers: [TransformerBlock]
    /// Prompt runs of at least this many rows (of one sequence) go through sgemm; everything else streams.
    public var blasMinimumRows = 16

    public init(weights: LlamaWeights, pool: WorkerPool = .shared) {
        config = weights.config
        embedTokens = weights.embedTokens
        finalNorm = weights.norm
        lmHead = weights.lmHead
        self.pool = pool
        rope = RotaryEmbedding(headDim: config.headDim, base: config.ropeTheta,
                               maxPositions: config.maxPositionEmbeddings)
        layers = weights.layers.map { TransformerBlock(weights: $0, config: weights.config) }
    }

    /// Loads `directory/config.json` and `directory/model.safetensors`.
    public static func load(directory: URL, pool: WorkerPool = .shared) throws -> LlamaModel {
        let config = try LlamaConfig.load(from: directory.appendingPathComponent("config.json"))
        return LlamaModel(weights: try LlamaWeights.load(directory: directory, config: config), pool: pool)
    }

    /// A KV cache for one sequence of up to `capacity` slots (default: the model's context).
    public func makeCache(capacity: Int? = nil) -> KVCache {
        KVCache(config: config, capacity: capacity ?? config.maxPositionEmbeddings)
    }

    /// Parameters a decode step reads (every layer, the final norm and the lm_head).
    public var parameterCount: Int { streamedWeights.reduce(0) { $0 + $1.count } }

    /// Bytes of weight a decode step streams (every layer, the final norm and the lm_head, once; BF16 copies where
    /// the matrices have them).
    public var weightBytes: Int { streamedWeights.reduce(0) { $0 + $1.streamedByteCount } }

    /// Streams every matrix of the blocks and the lm_head from a BF16 copy (`Tensor.keepBF16Copy`) when its values
    /// are exactly BF16, as they are when read from BF16 storage: the results are bitwise the same, the bytes a
    /// decode step reads halve. The drafters always do (their steps are bound by those bytes); the target when asked
    /// (`dtype` bf16). Prefill keeps sgemm on the F32 values.
    /// Returns whether every matrix has its copy.
    @discardableResult
    public func streamMatricesAsBF16() -> Bool {
        let matrices = layers.flatMap(\.matrices) + [lmHead]
        return matrices.map { $0.keepBF16Copy() }.allSatisfy { $0 }
    }

    /// Every weight tensor a decode step reads (for the roofline measurement).
    public var streamedWeights: [Tensor] { layers.flatMap(\.weights) + [finalNorm, lmHead] }

    /// Runs the transformer over `rows`: writes each row's K/V into its cache slot and returns the logits of
    /// the rows that want them and every row's final hidden state. Commit with `KVCache.append` etc. afterwards.
    public func forward(_ rows: [Row]) -> ForwardOutput {
        let m = rows.count
        precondition(m > 0, "empty batch")
        for row in rows { row.validate() }
        let h = config.hiddenSize
        let segments = linearSegments(rows)

        // Token embeddings.
        let x = Tensor(shape: [m, h])
        for (r, row) in rows.enumerated() {
            precondition(row.token >= 0 && row.token < config.vocabSize, "token \(row.token) outside the vocabulary")
            x.row(r).update(from: embedTokens.row(row.token), count: h)
        }
        let scratch = TransformerBlock.Scratch(rows: m, config: config)
        for (l, block) in layers.enumerated() {
            block.apply(x, rows: rows, cacheLayer: l, segments: segments, rope: rope, scratch: scratch, pool: pool,
                        next: l + 1 < layers.count ? layers[l + 1].qkv : lmHead)
        }

        // Final norm, then the lm_head for the rows that want logits.
        let hidden = Tensor(shape: [m, h])
        rmsNorm(x.data, weight: finalNorm.data, epsilon: config.rmsNormEps, rows: m, dim: h, into: hidden.data)
        let logits = Tensor(shape: [m, config.vocabSize])
        let wanted = rows.indices.filter { rows[$0].wantsLogits }
        let allPrompt = wanted.allSatisfy { rows[$0].isPrompt }
        let headPath: MatmulPath = allPrompt && wanted.count >= blasMinimumRows ? .blas : .streaming
        if wanted.count == m {
            // Every row (decode, verify, trees): straight into the output, no gather and copy.
            matmul(hidden.data, rows: m, weight: lmHead, into: logits.data, path: headPath, pool: pool, next: layers.first?.qkv)
        } else if !wanted.isEmpty {
            let gathered = Tensor(shape: [wanted.count, h])
            for (i, r) in wanted.enumerated() { gathered.row(i).update(from: hidden.row(r), count: h) }
            let out = vocabularyLogits(gathered, path: headPath)
            for (i, r) in wanted.enumerated() { logits.row(r).update(from: out.row(i), count: config.vocabSize) }
        }
        return ForwardOutput(logits: logits, hidden: hidden, residual: x)
    }

    /// `[M, V]` logits of final hidden states `[M, H]` (after the final norm) through the lm_head. Medusa heads
    /// and MTP modules share the target's lm_head through this.
    public func vocabularyLogits(_ hidden: Tensor, path: MatmulPath = .streaming) -> Tensor {
        let out = Tensor(shape: [hidden.rows, config.vocabSize])
        matmul(hidden.data, rows: hidden.rows, weight: lmHead, into: out.data, path: path, pool: pool)
        return out
    }

    /// Row ranges of the batch and the matmul path each uses: runs of ≥ `blasMinimumRows` prompt rows of one
    /// sequence use sgemm; all other rows stream (adjacent streaming rows are merged into one range).
    public func linearSegments(_ rows: [Row]) -> [MatmulSegment] {
        var segments: [MatmulSegment] = []
        func add(_ range: Range<Int>, _ path: MatmulPath) {
            if path == .streaming, let last = segments.last, last.path == .streaming, last.range.upperBound == range.lowerBound {
                segments[segments.count - 1].range = last.range.lowerBound..<range.upperBound
            } else {
                segments.append(MatmulSegment(range: range, path: path))
            }
        }
        var i = 0
        while i < rows.count {
            var j = i + 1
            if rows[i].isPrompt {
                while j < rows.count && rows[j].isPrompt && rows[j].cache === rows[i].cache { j += 1 }
                add(i..<j, j - i >= blasMinimumRows ? .blas : .streaming)
            } else {
                while j < rows.count && !rows[j].isPrompt { j += 1 }
                add(i..<j, .streaming)
            }
            i = j
        }
        return segments
    }
}

/// Concatenates 2-D tensors with equal column counts along rows: `[Σ rows, columns]`.
func stackRows(_ parts: [Tensor]) -> Tensor {
    let columns = parts[0].columns
    precondition(parts.allSatisfy { $0.columns == columns })
    let out = Tensor(shape: [parts.reduce(0) { $0 + $1.rows }, columns])
    var offset = 0
    for p in parts {
        (out.data + offset).update(from: p.data, count: p.count)
        offset += p.count
    }
    return out
}

@inline(__always)
func addInPlace(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int) {
    for i in 0..<n { y[i] += x[i] }
}
