// FlashAttention-style tiled attention over the KV cache (online softmax), for grouped-query attention.
//
// For a row at logical position p, the visible keys are logical positions 0...p (its prefix, then, in a tree,
// its ancestors and itself), mapped to cache slots by `Row.slot(ofLogical:)`. They are processed in tiles of
// `attentionTile` logical positions aligned to absolute positions: [0, T), [T, 2T), … For each tile: scores,
// tile maximum, then the running maximum m, running sum l and output accumulator are rescaled by e^(m_old − m_new)
// and the tile's terms added in order. The full score matrix is never built, and because tiling and order depend
// only on the row's own logical positions, a row's output is bitwise the same alone, in a chain or in a tree.
//
// The arithmetic of one query (one row, one head), fixed whatever the batch:
//   score  = dot(q, k) · scale, `dot` = 16 lane-wise FMA chains over d then the tree sum of `horizontalSum`;
//   tile   = max of the scores; weights e^(s − m); tile sum = the weights' 16-lane halves added, then the tree sum;
//   acc[x] = acc[x] + p · v[x], position by position.
// Two layouts compute exactly that:
//   - by row (`attendRows`): a query's dimensions in the lanes; cheapest for a decode row's few queries;
//   - by lane (`attendLanes`, AttentionLanes.swift): up to 16 queries in the lanes of one vector, so each key is
//     read once for all of them and no horizontal sums are needed; for verify chains, trees and prompts, where a
//     row at a time would redo the whole tile for every row.
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

/// Rows of one sequence that walk the KV tiles together by row (see `tiledAttention`).
let attentionRowGroup = 16

/// A run of rows sharing one cache takes the lane layout from this many queries (rows × query heads per KV head)
/// on. A lane pass costs about the same for 1 query as for 16 (every key's 64 FMAs for scores and 64 for V fill
/// the lanes whether they are used or not), so below this the row layout does less work. Measured on the shipped
/// target (3 queries per row), attention over all layers, in one process: 5 rows 0.35 → 0.27 ms at context 256
/// and 1.18 → 0.82–0.86 ms at context 900; 3 rows about equal; 1 row 2.3× slower by lane.
let laneLayoutMinimumQueries = 13

/// One work item for one KV head: rows walked by row, or a chunk of queries walked by lane.
enum AttentionWork {
    case rows(Range<Int>)
    case lanes(AttentionChunk)
}

/// Attention of every row of `rows` for one layer; rows' K/V must already be in their caches.
///
/// Work items are (KV head, group of consecutive rows sharing one cache), each walked in the layout that suits its
/// size. Within an item the tiles are the outer loop, so each K/V tile is read from memory once for the whole
/// group and then from L1 — a verify chain's rows all read the same prefix. Items are ordered KV head first, so
/// with as many threads as KV heads every thread gets the same rows (prompt rows differ a lot in length).
public func tiledAttention(
    q: UnsafePointer<Float>, rows: [Row], layer: Int, shape: AttentionShape, out: UnsafeMutablePointer<Float>,
    pool: WorkerPool = .shared
) {
    let heads = shape.numHeads / shape.numKVHeads
    var work: [AttentionWork] = []
    var start = 0
    while start < rows.count {
        var end = start + 1
        while end < rows.count && rows[end].cache === rows[start].cache { end += 1 }
        let queries = (end - start) * heads
        if queries >= laneLayoutMinimumQueries {
            // Chunks of balanced size, at most 16 queries each.
            let parts = (queries + attentionLanes - 1) / attentionLanes
            for part in 0..<parts {
                work.append(.lanes(AttentionChunk(base: start, lanes: queries * part / parts..<queries * (part + 1) / parts)))
            }
        } else {
            var lo = start
            while lo < end {
                let hi = min(end, lo + attentionRowGroup)
                work.append(.rows(lo..<hi))
                lo = hi
            }
        }
        start = end
    }
    let items = work.count * shape.numKVHeads
    let qStride = shape.numHeads * shape.headDim
    let largestGroup = work.map { if case let .rows(r) = $0 { r.count } else { 0 } }.max() ?? 0
    let anyLanes = work.contains { if case .lanes = $0 { true } else { false } }
    pool.parallelFor(items) { range in
        let d = shape.headDim
        // Per-thread scratch. By row: one tile of scores per query head of the group, and per row an accumulator
        // per head, the running maxima and sums. By lane (only when some item goes by lane): see `LaneScratch`.
        let scores = UnsafeMutablePointer<Float>.allocate(capacity: heads * attentionTile)
        let acc = UnsafeMutablePointer<Float>.allocate(capacity: max(1, largestGroup * heads * d))
        let state = UnsafeMutablePointer<Float>.allocate(capacity: max(1, 2 * largestGroup * heads))
        let lanes = anyLanes ? LaneScratch(headDim: d) : nil
        defer { scores.deallocate(); acc.deallocate(); state.deallocate(); lanes?.deallocate() }
        for item in range {
            let kvHead = item / work.count
            switch work[item % work.count] {
            case let .rows(group):
                let firstHead = kvHead * heads
                attendRows(
                    q: q + firstHead * d, qStride: qStride, rows: rows, group: group, layer: layer,
                    kvHead: kvHead, heads: heads, shape: shape, out: out + firstHead * d,
                    scores: scores, acc: acc, state: state)
            case let .lanes(chunk):
                attendLanes(q: q, rows: rows, chunk: chunk, kvHead: kvHead, layer: layer, shape: shape, out: out, scratch: lanes!)
            }
        }
    }
}

/// The query heads `heads` sharing KV head `kvHead`, for the rows `group` (one cache): row r's query and output
/// for those heads start at `q + r·qStride` and `out + r·qStride`.
@inline(__always)
private func attendRows(
    q: UnsafePointer<Float>, qStride: Int, rows: [Row], group: Range<Int>, layer: Int, kvHead: Int, heads: Int,
    shape: AttentionShape, out: UnsafeMutablePointer<Float>, scores: UnsafeMutablePointer<Float>,
    acc: UnsafeMutablePointer<Float>, state: UnsafeMutablePointer<Float>
) {
    let d = shape.headDim, scale = shape.scale, cache = rows[group.lowerBound].cache
    let count = group.count
    let runningMax = state, runningSum = state + count * heads
    runningMax.initialize(repeating: -.infinity, count: count * heads)
    runningSum.initialize(repeating: 0, count: count * heads)
    acc.initialize(repeating: 0, count: count * heads * d)
    var longest = 0
    for r in group { longest = max(longest, rows[r].visibleCount) }
    withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: 2 * attentionTile) { rowsOfTile in
    let keys = rowsOfTile.baseAddress!, values = rowsOfTile.baseAddress! + attentionTile
    var tileStart = 0
    while tileStart < longest {
        for (g, r) in group.enumerated() {
            let row = rows[r]
            let visible = row.visibleCount
            guard tileStart < visible else { continue }
            let n = min(attentionTile, visible - tileStart)
            let qr = q + r * qStride
            let rowMax = runningMax + g * heads, rowSum = runningSum + g * heads, rowAcc = acc + g * heads * d
            // The tile's K and V rows for this row (one slot lookup per position; a tree row's last ones differ).
            for j in 0..<n {
                let slot = row.slot(ofLogical: tileStart + j)
                keys[j] = UnsafePointer(cache.key(layer: layer, slot: slot) + kvHead * d)
                values[j] = UnsafePointer(cache.value(layer: layer, slot: slot) + kvHead * d)
            }
            // Scores for the tile. Each is one 16-lane dot product and one horizontal sum (`dot`); lanes of the
            // scratch past `n` are zeroed after the exponentials so the tile's sum can run over whole vectors.
            for h in 0..<heads {
                let qh = qr + h * d, s = scores + h * attentionTile
                var j = 0
                if d == 64 {
                    while j + 8 <= n { scores8(qh, keys + j, scale, s + j); j += 8 }
                }
                while j < n { s[j] = dot(qh, keys[j], d) * scale; j += 1 }
            }
            // Online softmax update per head: rescale what came before by e^(m_old − m_new).
            for h in 0..<heads {
                let s = scores + h * attentionTile
                let tileMax = largest(s, n)
                let newMax = max(rowMax[h], tileMax)
                let correction = rowMax[h] == -.infinity ? 0 : exp16(SIMD16(repeating: rowMax[h] - newMax))[0]
                rowMax[h] = newMax
                for j in 0..<n { s[j] -= newMax }
                expInPlace(s, n)
                for j in n..<attentionTile { s[j] = 0 }
                rowSum[h] = rowSum[h] * correction + tileSum(s)
                let a = rowAcc + h * d
                if correction != 1 { for i in 0..<d { a[i] *= correction } }
            }
            // Weighted sum of V for the tile (for d = 64 the accumulator stays in registers across the tile).
            for h in 0..<heads {
                let a = rowAcc + h * d, s = scores + h * attentionTile
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
        }
        tileStart += attentionTile
    }
    }
    for (g, r) in group.enumerated() {
        let o = out + r * qStride
        for h in 0..<heads {
            let inv = 1 / runningSum[g * heads + h], a = acc + (g * heads + h) * d
            for i in 0..<d { o[h * d + i] = a[i] * inv }
        }
    }
}

@inline(__always)
func load16(_ p: UnsafePointer<Float>) -> SIMD16<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self) }

@inline(__always)
func store16(_ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self) }

/// Eight scores of one query head at head dim 64: `s[j] = dot(q, k[j], 64) · scale`, bitwise what `dot` gives
/// (the same four FMAs per key in the same order, the same horizontal sum), but eight keys at once. A key at a
/// time spent more on its horizontal sum (a chain of extracts and adds) than on its four FMAs; here each level of
/// the sum handles two to eight keys per instruction. (Eight plain `horizontalSum` calls side by side are worse:
/// the compiler rebuilds them from scalar lanes.)
@inline(__always)
func scores8(
    _ q: UnsafePointer<Float>, _ k: UnsafePointer<UnsafePointer<Float>>, _ scale: Float,
    _ s: UnsafeMutablePointer<Float>
) {
    let q0 = load16(q), q1 = load16(q + 16), q2 = load16(q + 32), q3 = load16(q + 48)
    let v0 = chain64(q0, q1, q2, q3, k[0]), v1 = chain64(q0, q1, q2, q3, k[1])
    let v2 = chain64(q0, q1, q2, q3, k[2]), v3 = chain64(q0, q1, q2, q3, k[3])
    let v4 = chain64(q0, q1, q2, q3, k[4]), v5 = chain64(q0, q1, q2, q3, k[5])
    let v6 = chain64(q0, q1, q2, q3, k[6]), v7 = chain64(q0, q1, q2, q3, k[7])
    // The eight horizontal sums, packed: each level adds lane i to lane i + half of every key's vector exactly
    // as `horizontalSum` does, two keys' halves side by side in one register.
    let l1a = pairHalves(v0, v1), l1b = pairHalves(v2, v3), l1c = pairHalves(v4, v5), l1d = pairHalves(v6, v7)
    let l2a = pairQuarters(l1a, l1b), l2b = pairQuarters(l1c, l1d)
    let l3 = pairEighths(l2a, l2b)
    let sums = l3.evenHalf + l3.oddHalf
    UnsafeMutableRawPointer(s).storeBytes(of: sums * scale, as: SIMD8<Float>.self)
}

/// `[a.lo + a.hi | b.lo + b.hi]`: lanes 0–7 are a's `horizontalSum` first level, lanes 8–15 b's.
@inline(__always)
private func pairHalves(_ a: SIMD16<Float>, _ b: SIMD16<Float>) -> SIMD16<Float> {
    SIMD16(lowHalf: a.lowHalf, highHalf: b.lowHalf) + SIMD16(lowHalf: a.highHalf, highHalf: b.highHalf)
}

/// From two level-1 vectors `[a8 | b8]`, `[c8 | d8]`: `[a4 | b4 | c4 | d4]`, each x4[i] = x8[i] + x8[i + 4].
@inline(__always)
private func pairQuarters(_ ab: SIMD16<Float>, _ cd: SIMD16<Float>) -> SIMD16<Float> {
    let low = SIMD16(lowHalf: SIMD8(lowHalf: ab.lowHalf.lowHalf, highHalf: ab.highHalf.lowHalf),
                     highHalf: SIMD8(lowHalf: cd.lowHalf.lowHalf, highHalf: cd.highHalf.lowHalf))
    let high = SIMD16(lowHalf: SIMD8(lowHalf: ab.lowHalf.highHalf, highHalf: ab.highHalf.highHalf),
                      highHalf: SIMD8(lowHalf: cd.lowHalf.highHalf, highHalf: cd.highHalf.highHalf))
    return low + high
}

/// From two level-2 vectors of four keys each: the eight keys' `[x2]` pairs, x2[i] = x4[i] + x4[i + 2]
/// (pairs of floats moved as one 64-bit element).
@inline(__always)
private func pairEighths(_ abcd: SIMD16<Float>, _ efgh: SIMD16<Float>) -> SIMD16<Float> {
    let x = unsafeBitCast(abcd, to: SIMD8<Double>.self), y = unsafeBitCast(efgh, to: SIMD8<Double>.self)
    let low = unsafeBitCast(SIMD8(lowHalf: x.evenHalf, highHalf: y.evenHalf), to: SIMD16<Float>.self)
    let high = unsafeBitCast(SIMD8(lowHalf: x.oddHalf, highHalf: y.oddHalf), to: SIMD16<Float>.self)
    return low + high
}

/// One key's 16-lane products with a head-dim-64 query, accumulated in `dot`'s order.
@inline(__always)
private func chain64(
    _ q0: SIMD16<Float>, _ q1: SIMD16<Float>, _ q2: SIMD16<Float>, _ q3: SIMD16<Float>, _ key: UnsafePointer<Float>
) -> SIMD16<Float> {
    var v = SIMD16<Float>()
    v = v.addingProduct(q0, load16(key))
    v = v.addingProduct(q1, load16(key + 16))
    v = v.addingProduct(q2, load16(key + 32))
    v = v.addingProduct(q3, load16(key + 48))
    return v
}

/// The sum of one tile of scores (`attentionTile` floats, zero past the tile's end): whole vectors added
/// lane by lane, then one horizontal sum. The order is fixed, so a row's sum never depends on the batch.
@inline(__always)
private func tileSum(_ x: UnsafePointer<Float>) -> Float {
    var v = load16(x)
    var i = 16
    while i < attentionTile { v += load16(x + i); i += 16 }
    return horizontalSum(v)
}

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
