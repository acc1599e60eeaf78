// One pre-norm LLaMA decoder block, used by the model's layers and by MTP modules (which run the same block
// with their own KV cache).
//
//   x += Wo · attention(RoPE(Wq · xn), RoPE(Wk · xn), Wv · xn)      xn = RMSNorm(x)  (input_layernorm)
//   x += Wdown · (SiLU(Wgate · xn) ⊙ (Wup · xn))                     xn = RMSNorm(x)  (post_attention_layernorm)
//
// Shapes (M = rows, H = hidden, D = head dim, Q = heads·D, KV = kv heads·D, I = intermediate):
//   qkv [M, Q+2KV] = xn · [Wq; Wk; Wv]ᵀ  (fused at load)    gateUp [M, 2I] = xn · [Wgate; Wup]ᵀ  (fused at load)

/// A run of batch rows and the matmul path they take (see `LlamaModel.linearSegments`).
public struct MatmulSegment: Sendable, Equatable {
    public var range: Range<Int>
    public var path: MatmulPath
}

public final class TransformerBlock: @unchecked Sendable {
    let config: LlamaConfig
    let inputNorm: Tensor, postAttentionNorm: Tensor
    let qkv: Tensor       // [Q + 2KV, H]
    let o: Tensor         // [H, Q]
    let gateUp: Tensor    // [2I, H]
    let down: Tensor      // [H, I]

    public init(weights l: LayerWeights, config: LlamaConfig) {
        self.config = config
        inputNorm = l.inputNorm
        postAttentionNorm = l.postAttentionNorm
        qkv = stackRows([l.q, l.k, l.v])
        o = l.o
        gateUp = stackRows([l.gate, l.up])
        down = l.down
    }

    /// The tensors one pass over the block reads.
    var weights: [Tensor] { [inputNorm, qkv, o, postAttentionNorm, gateUp, down] }
    /// Its matrices (what the matmul streams).
    var matrices: [Tensor] { [qkv, o, gateUp, down] }

    /// Activation buffers for a batch of `rows` rows, shared by every block of one forward.
    public final class Scratch {
        let xn, qkv, q, attn, projected, gateUp, activated: Tensor
        public init(rows m: Int, config c: LlamaConfig) {
            let qDim = c.numAttentionHeads * c.headDim, kvDim = c.numKeyValueHeads * c.headDim
            xn = Tensor(shape: [m, c.hiddenSize])
            qkv = Tensor(shape: [m, qDim + 2 * kvDim])
            q = Tensor(shape: [m, qDim])
            attn = Tensor(shape: [m, qDim])
            projected = Tensor(shape: [m, c.hiddenSize])
            gateUp = Tensor(shape: [m, 2 * c.intermediateSize])
            activated = Tensor(shape: [m, c.intermediateSize])
        }
    }

    /// Applies the block to the residual stream `x` `[M, H]` in place, writing each row's K/V into layer
    /// `cacheLayer` of its cache at its slot, and attending as each row's visibility says. `next` is the weight
    /// the forward reads after this block (the pool's threads read ahead into it while they wait).
    public func apply(
        _ x: Tensor, rows: [Row], cacheLayer l: Int, segments: [MatmulSegment], rope: RotaryEmbedding,
        scratch s: Scratch, pool: WorkerPool, next: Tensor? = nil
    ) {
        let m = rows.count, h = config.hiddenSize, d = config.headDim
        let qDim = config.numAttentionHeads * d, kvDim = config.numKeyValueHeads * d, inter = config.intermediateSize
        let shape = AttentionShape(numHeads: config.numAttentionHeads, numKVHeads: config.numKeyValueHeads, headDim: d)

        // Attention: project, rotate, store K/V in the cache, attend, project back.
        rmsNorm(x.data, weight: inputNorm.data, epsilon: config.rmsNormEps, rows: m, dim: h, into: s.xn.data)
        linear(s.xn.data, qkv, s.qkv.data, segments, pool, next: o)
        for (r, row) in rows.enumerated() {
            let src = s.qkv.row(r)
            s.q.row(r).update(from: src, count: qDim)
            rope.apply(s.q.row(r), heads: config.numAttentionHeads, position: row.position)
            let key = row.cache.key(layer: l, slot: row.slot)
            key.update(from: src + qDim, count: kvDim)
            rope.apply(key, heads: config.numKeyValueHeads, position: row.position)
            row.cache.value(layer: l, slot: row.slot).update(from: src + qDim + kvDim, count: kvDim)
        }
        tiledAttention(q: s.q.data, rows: rows, layer: l, shape: shape, out: s.attn.data, pool: pool)
        linear(s.attn.data, o, s.projected.data, segments, pool, next: gateUp)
        addInPlace(x.data, s.projected.data, m * h)

        // MLP.
        rmsNorm(x.data, weight: postAttentionNorm.data, epsilon: config.rmsNormEps, rows: m, dim: h, into: s.xn.data)
        linear(s.xn.data, gateUp, s.gateUp.data, segments, pool, next: down)
        for r in 0..<m {
            let g = s.gateUp.row(r)
            swiGLU(gate: g, up: g + inter, count: inter)
            s.activated.row(r).update(from: g, count: inter)
        }
        linear(s.activated.data, down, s.projected.data, segments, pool, next: next)
        addInPlace(x.data, s.projected.data, m * h)
    }
}

/// C = A · Wᵀ segment by segment, each with its own path; `next` is the weight read after it (see `matmul`).
func linear(
    _ a: UnsafePointer<Float>, _ weight: Tensor, _ c: UnsafeMutablePointer<Float>, _ segments: [MatmulSegment],
    _ pool: WorkerPool, next: Tensor?
) {
    let k = weight.columns, n = weight.rows
    for segment in segments {
        matmul(a + segment.range.lowerBound * k, rows: segment.range.count, weight: weight,
               into: c + segment.range.lowerBound * n, path: segment.path, pool: pool, next: next)
    }
}
