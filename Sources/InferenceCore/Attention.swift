// FlashAttention-style tiled attention over the KV cache (online softmax), for grouped-query attention.
//
// For a row at logical position p, the visible keys are logical positions 0...p (its prefix, then, in a tree,
// its ancestors and itself), mapped to cache slots by `Row.slot(ofLogical:)`. They are processed in tiles of
// `attentionTile` logical positions aligned to absolute positions: [0, T), [T, 2T), … For each tile: scores,
// tile maximum, then the running maximum m, running sum l and output accumulator are rescaled by e^(m_old − m_new)
// and the tile's terms added in order. The full score matrix is never built, and because tiling and order depend
// only on the row's own logical positions, a row's output is bitwise the same alone, in a chain or in a tree.
//
// Layout: q `[rows, numHeads · headDim]` (after RoPE), out the same; K/V from the cache `[slot][kvHeads · headDim]`.
// Query head h reads KV head h / (numHeads / numKVHeads) (the HF repeat_kv grouping).

public let attentionTile = 32

public struct AttentionShape: Sendable {
    public var numHeads: Int
    public var numKVHeads: Int
    public var headDim: Int
    public var scale: Float { 1 / Float(headDim).squareRoot() }
    public init(numHeads: Int, numKVHeads: Int, headDim: Int) {
        self.numHeads = numHeads
        self.numKVHeads = numKVHeads
        self.headDim = headDim
    }
}

/// Attention of every row of `rows` for one layer; rows' K/V must already be in their caches.
public func tiledAttention(
    q: UnsafePointer<Float>, rows: [Row], layer: Int, shape: AttentionShape, out: UnsafeMutablePointer<Float>,
    pool: WorkerPool = .shared
) {
    let items = rows.count * shape.numKVHeads
    let qStride = shape.numHeads * shape.headDim
    pool.parallelFor(items) { range in
        let group = shape.numHeads / shape.numKVHeads
        // Per-thread scratch: one tile of scores per query head of the group, one accumulator per head.
        let scores = UnsafeMutablePointer<Float>.allocate(capacity: group * attentionTile)
        let acc = UnsafeMutablePointer<Float>.allocate(capacity: group * shape.headDim)
        defer { scores.deallocate(); acc.deallocate() }
        for item in range {
            let r = item / shape.numKVHeads, kvHead = item % shape.numKVHeads
            let firstHead = kvHead * group
            attendGroup(
                q: q + r * qStride + firstHead * shape.headDim, row: rows[r], layer: layer, kvHead: kvHead,
                heads: group, shape: shape, out: out + r * qStride + firstHead * shape.headDim,
                scores: scores, acc: acc)
        }
    }
}

/// The query heads `heads` sharing one KV head, for one row: each K/V vector is loaded once for the group.
@inline(__always)
private func attendGroup(
    q: UnsafePointer<Float>, row: Row, layer: Int, kvHead: Int, heads: Int, shape: AttentionShape,
    out: UnsafeMutablePointer<Float>, scores: UnsafeMutablePointer<Float>, acc: UnsafeMutablePointer<Float>
) {
    let d = shape.headDim, scale = shape.scale, cache = row.cache
    let visible = row.visibleCount
    withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: 2 * attentionTile) { rowsOfTile in
    let keys = rowsOfTile.baseAddress!, values = rowsOfTile.baseAddress! + attentionTile
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * heads) { state in
        let runningMax = state.baseAddress!, runningSum = state.baseAddress! + heads
        runningMax.initialize(repeating: -.infinity, count: heads)
        runningSum.initialize(repeating: 0, count: heads)
        acc.initialize(repeating: 0, count: heads * d)
        var tileStart = 0
        while tileStart < visible {
            let tileEnd = min(tileStart + attentionTile, visible)
            let n = tileEnd - tileStart
            // The tile's K and V rows (one slot lookup per position).
            for j in 0..<n {
                let slot = row.slot(ofLogical: tileStart + j)
                keys[j] = UnsafePointer(cache.key(layer: layer, slot: slot) + kvHead * d)
                values[j] = UnsafePointer(cache.value(layer: layer, slot: slot) + kvHead * d)
            }
            // Scores for the tile.
            for h in 0..<heads {
                let qh = q + h * d, s = scores + h * attentionTile
                if d == 64 {
                    let q0 = load16(qh), q1 = load16(qh + 16), q2 = load16(qh + 32), q3 = load16(qh + 48)
                    for j in 0..<n {
                        let k = keys[j]
                        var v = q0 * load16(k)
                        v = v.addingProduct(q1, load16(k + 16))
                        v = v.addingProduct(q2, load16(k + 32))
                        v = v.addingProduct(q3, load16(k + 48))
                        s[j] = horizontalSum(v) * scale
                    }
                } else {
                    for j in 0..<n { s[j] = dot(qh, keys[j], d) * scale }
                }
            }
            // Online softmax update per head: rescale what came before by e^(m_old − m_new).
            for h in 0..<heads {
                let s = scores + h * attentionTile
                var tileMax = -Float.infinity
                for j in 0..<n { tileMax = max(tileMax, s[j]) }
                let newMax = max(runningMax[h], tileMax)
                let correction = runningMax[h] == -.infinity ? 0 : exp16(SIMD16(repeating: runningMax[h] - newMax))[0]
                runningMax[h] = newMax
                for j in 0..<n { s[j] -= newMax }
                expInPlace(s, n)
                var sum = runningSum[h] * correction
                for j in 0..<n { sum += s[j] }
                runningSum[h] = sum
                let a = acc + h * d
                if correction != 1 { for i in 0..<d { a[i] *= correction } }
            }
            // Weighted sum of V for the tile (for d = 64 the accumulator stays in registers across the tile).
            for h in 0..<heads {
                let a = acc + h * d, s = scores + h * attentionTile
                if d == 64 {
                    var a0 = load16(a), a1 = load16(a + 16), a2 = load16(a + 32), a3 = load16(a + 48)
                    for j in 0..<n {
                        let p = SIMD16<Float>(repeating: s[j]), v = values[j]
                        a0 = a0.addingProduct(p, load16(v))
                        a1 = a1.addingProduct(p, load16(v + 16))
                        a2 = a2.addingProduct(p, load16(v + 32))
                        a3 = a3.addingProduct(p, load16(v + 48))
                    }
                    store16(a0, a); store16(a1, a + 16); store16(a2, a + 32); store16(a3, a + 48)
                } else {
                    for j in 0..<n { axpy(s[j], values[j], a, d) }
                }
            }
            tileStart = tileEnd
        }
        for h in 0..<heads {
            let inv = 1 / runningSum[h]
            for i in 0..<d { out[h * d + i] = acc[h * d + i] * inv }
        }
    }
    }
}

@inline(__always)
private func load16(_ p: UnsafePointer<Float>) -> SIMD16<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self) }

@inline(__always)
private func store16(_ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self) }

/// Σ a[i]·b[i] in 16-lane vectors then the scalar tail; the same order for every caller.
@inline(__always)
func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var v = SIMD16<Float>()
    var i = 0
    while i + 16 <= n {
        v = v.addingProduct(UnsafeRawPointer(a + i).loadUnaligned(as: SIMD16<Float>.self),
                            UnsafeRawPointer(b + i).loadUnaligned(as: SIMD16<Float>.self))
        i += 16
    }
    var s = horizontalSum(v)
    while i < n { s = s.addingProduct(a[i], b[i]); i += 1 }
    return s
}

/// y += α·x over n floats.
@inline(__always)
func axpy(_ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    var i = 0
    let va = SIMD16<Float>(repeating: alpha)
    while i + 16 <= n {
        let xv = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
        let yv = UnsafeRawPointer(y + i).loadUnaligned(as: SIMD16<Float>.self)
        UnsafeMutableRawPointer(y + i).storeBytes(of: yv.addingProduct(va, xv), as: SIMD16<Float>.self)
        i += 16
    }
    while i < n { y[i] = y[i].addingProduct(alpha, x[i]); i += 1 }
}
