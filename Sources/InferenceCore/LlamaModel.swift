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
    let layers: [FusedLayer]
    /// Prompt runs of at least this many rows (of one sequence) go through sgemm; everything else streams.
    public var blasMinimumRows = 16

    struct FusedLayer {
        let inputNorm: Tensor, postAttentionNorm: Tensor
        let qkv: Tensor       // [Q + 2KV, H]
        let o: Tensor         // [H, Q]
        let gateUp: Tensor    // [2I, H]
        let down: Tensor      // [H, I]
    }

    public init(weights: LlamaWeights, pool: WorkerPool = .shared) {
        config = weights.config
        embedTokens = weights.embedTokens
        finalNorm = weights.norm
        lmHead = weights.lmHead
        self.pool = pool
        rope = RotaryEmbedding(headDim: config.headDim, base: config.ropeTheta,
                               maxPositions: config.maxPositionEmbeddings)
        layers = weights.layers.map { l in
            FusedLayer(inputNorm: l.inputNorm, postAttentionNorm: l.postAttentionNorm,
                       qkv: stackRows([l.q, l.k, l.v]), o: l.o, gateUp: stackRows([l.gate, l.up]), down: l.down)
        }
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

    /// Bytes of weight a decode step streams (every layer, the final norm and the lm_head, once).
    public var weightBytes: Int {
        layers.reduce(0) { $0 + $1.inputNorm.byteCount + $1.postAttentionNorm.byteCount + $1.qkv.byteCount
            + $1.o.byteCount + $1.gateUp.byteCount + $1.down.byteCount } + finalNorm.byteCount + lmHead.byteCount
    }

    /// Every weight tensor a decode step reads (for the roofline measurement).
    public var streamedWeights: [Tensor] {
        layers.flatMap { [$0.inputNorm, $0.qkv, $0.o, $0.postAttentionNorm, $0.gateUp, $0.down] } + [finalNorm, lmHead]
    }

    /// Runs the transformer over `rows`: writes each row's K/V into its cache slot and returns the logits of
    /// the rows that want them and every row's final hidden state. Commit with `KVCache.append` etc. afterwards.
    public func forward(_ rows: [Row]) -> ForwardOutput {
        let m = rows.count
        precondition(m > 0, "empty batch")
        for row in rows { row.validate() }
        let h = config.hiddenSize, d = config.headDim
        let qDim = config.numAttentionHeads * d, kvDim = config.numKeyValueHeads * d
        let inter = config.intermediateSize
        let segments = linearSegments(rows)
        let shape = AttentionShape(numHeads: config.numAttentionHeads, numKVHeads: config.numKeyValueHeads, headDim: d)

        let x = Tensor(shape: [m, h])
        let xn = Tensor(shape: [m, h])
        let qkv = Tensor(shape: [m, qDim + 2 * kvDim])
        let q = Tensor(shape: [m, qDim])
        let attn = Tensor(shape: [m, qDim])
        let projected = Tensor(shape: [m, h])
        let gateUp = Tensor(shape: [m, 2 * inter])
        let activated = Tensor(shape: [m, inter])

        // Token embeddings.
        for (r, row) in rows.enumerated() {
            precondition(row.token >= 0 && row.token < config.vocabSize, "token \(row.token) outside the vocabulary")
            x.row(r).update(from: embedTokens.row(row.token), count: h)
        }

        for (l, layer) in layers.enumerated() {
            // Attention block: x += Wo · attention(RoPE(q), RoPE(k), v)
            rmsNorm(x.data, weight: layer.inputNorm.data, epsilon: config.rmsNormEps, rows: m, dim: h, into: xn.data)
            linear(xn.data, layer.qkv, qkv.data, segments)
            for (r, row) in rows.enumerated() {
                let src = qkv.row(r)
                q.row(r).update(from: src, count: qDim)
                rope.apply(q.row(r), heads: config.numAttentionHeads, position: row.position)
                let key = row.cache.key(layer: l, slot: row.slot)
                key.update(from: src + qDim, count: kvDim)
                rope.apply(key, heads: config.numKeyValueHeads, position: row.position)
                row.cache.value(layer: l, slot: row.slot).update(from: src + qDim + kvDim, count: kvDim)
            }
            tiledAttention(q: q.data, rows: rows, layer: l, shape: shape, out: attn.data, pool: pool)
            linear(attn.data, layer.o, projected.data, segments)
            addInPlace(x.data, projected.data, m * h)

            // MLP block: x += Wdown · (SiLU(Wgate · xn) ⊙ (Wup · xn))
            rmsNorm(x.data, weight: layer.postAttentionNorm.data, epsilon: config.rmsNormEps, rows: m, dim: h, into: xn.data)
            linear(xn.data, layer.gateUp, gateUp.data, segments)
            for r in 0..<m {
                let g = gateUp.row(r)
                swiGLU(gate: g, up: g + inter, count: inter)
                activated.row(r).update(from: g, count: inter)
            }
            linear(activated.data, layer.down, projected.data, segments)
            addInPlace(x.data, projected.data, m * h)
        }

        // Final norm, then the lm_head for the rows that want logits.
        let hidden = Tensor(shape: [m, h])
        rmsNorm(x.data, weight: finalNorm.data, epsilon: config.rmsNormEps, rows: m, dim: h, into: hidden.data)
        let logits = Tensor(shape: [m, config.vocabSize])
        let wanted = rows.indices.filter { rows[$0].wantsLogits }
        if !wanted.isEmpty {
            let gathered = Tensor(shape: [wanted.count, h])
            for (i, r) in wanted.enumerated() { gathered.row(i).update(from: hidden.row(r), count: h) }
            let allPrompt = wanted.allSatisfy { rows[$0].isPrompt }
            let path: MatmulPath = allPrompt && wanted.count >= blasMinimumRows ? .blas : .streaming
            let out = Tensor(shape: [wanted.count, config.vocabSize])
            matmul(gathered.data, rows: wanted.count, weight: lmHead, into: out.data, path: path, pool: pool)
            for (i, r) in wanted.enumerated() { logits.row(r).update(from: out.row(i), count: config.vocabSize) }
        }
        return ForwardOutput(logits: logits, hidden: hidden, residual: x)
    }

    /// Row ranges of the batch and the matmul path each uses: runs of ≥ `blasMinimumRows` prompt rows of one
    /// sequence use sgemm; all other rows stream (adjacent streaming rows are merged into one range).
    func linearSegments(_ rows: [Row]) -> [(range: Range<Int>, path: MatmulPath)] {
        var segments: [(range: Range<Int>, path: MatmulPath)] = []
        func add(_ range: Range<Int>, _ path: MatmulPath) {
            if path == .streaming, let last = segments.last, last.path == .streaming, last.range.upperBound == range.lowerBound {
                segments[segments.count - 1].range = last.range.lowerBound..<range.upperBound
            } else {
                segments.append((range, path))
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

    private func linear(
        _ a: UnsafePointer<Float>, _ weight: Tensor, _ c: UnsafeMutablePointer<Float>,
        _ segments: [(range: Range<Int>, path: MatmulPath)]
    ) {
        let k = weight.columns, n = weight.rows
        for segment in segments {
            matmul(a + segment.range.lowerBound * k, rows: segment.range.count, weight: weight,
                   into: c + segment.range.lowerBound * n, path: segment.path, pool: pool)
        }
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
