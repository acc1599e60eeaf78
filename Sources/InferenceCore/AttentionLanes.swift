// Attention by lane: up to 16 queries (rows × query heads of one KV head, one cache) in the lanes of one vector.
//
// Each query's arithmetic is exactly the row layout's (Attention.swift): the 16-lane FMA chains of `dot` become 16
// accumulators whose lanes are queries, added in `horizontalSum`'s tree; the tile sum adds the weights' halves and
// then the same tree; V is accumulated position by position. So a row gives bitwise the same output in either
// layout, and a key is read once per chunk instead of once per row.
//
// A position a lane cannot see (beyond its own row's position) gets the score −∞ and the weight 0: its max and
// sum stay exactly as they were, and its accumulator gains 0 · v, which is exact for finite V (a model whose V
// overflows has lost its outputs in either layout), as if the row had stopped there. Positions whose slot
// differs between the chunk's rows (the branches of a tree) are computed query by query with `dot` and scalar
// FMAs.
//
// Scratch per thread: qt `[headDim][16]` the transposed queries, acc `[headDim][16]` the accumulator, scores
// `[tile][16]` (then the weights), partials (the FMA chains of 8 keys, `[8][16][16]`, before their tree sums), and
// the shared K and V rows of each position of the tile.

/// The queries one lane-layout work item computes together: one SIMD16 lane each.
let attentionLanes = 16

/// A run of rows sharing one cache and a slice of its queries: lane ℓ of the run is row `base + ℓ / headsPerKV`,
/// query head `ℓ % headsPerKV` of the KV head.
struct AttentionChunk {
    var base: Int
    var lanes: Range<Int>
}

/// One thread's buffers for `attendLanes`.
struct LaneScratch {
    let qt, acc, scores, partials: UnsafeMutablePointer<Float>
    let sharedKeys: UnsafeMutablePointer<UnsafePointer<Float>>
    let sharedValues: UnsafeMutablePointer<UnsafePointer<Float>?>

    init(headDim d: Int) {
        qt = .allocate(capacity: d * attentionLanes)
        acc = .allocate(capacity: d * attentionLanes)
        scores = .allocate(capacity: attentionTile * attentionLanes)
        partials = .allocate(capacity: 8 * 16 * attentionLanes)
        sharedKeys = .allocate(capacity: attentionTile)
        sharedValues = .allocate(capacity: attentionTile)
    }

    func deallocate() {
        qt.deallocate(); acc.deallocate(); scores.deallocate(); partials.deallocate()
        sharedKeys.deallocate(); sharedValues.deallocate()
    }
}

/// One chunk of queries against one KV head, tile by tile.
func attendLanes(
    q: UnsafePointer<Float>, rows: [Row], chunk: AttentionChunk, kvHead: Int, layer: Int, shape: AttentionShape,
    out: UnsafeMutablePointer<Float>, scratch: LaneScratch
) {
    let d = shape.headDim, heads = shape.numHeads / shape.numKVHeads, stride = shape.numHeads * d
    let (qt, acc, scores) = (scratch.qt, scratch.acc, scratch.scores)
    let (sharedKeys, sharedValues) = (scratch.sharedKeys, scratch.sharedValues)
    let laneCount = chunk.lanes.count, cache = rows[chunk.base].cache
    let firstRow = chunk.base + chunk.lanes.lowerBound / heads, lastRow = chunk.base + (chunk.lanes.upperBound - 1) / heads
    @inline(__always) func rowOf(_ lane: Int) -> Int { chunk.base + (chunk.lanes.lowerBound + lane) / heads }
    @inline(__always) func queryOf(_ lane: Int) -> UnsafePointer<Float> {
        q + rowOf(lane) * stride + (kvHead * heads + (chunk.lanes.lowerBound + lane) % heads) * d
    }

    // Transposed queries (unused lanes zero), each lane's visible count, and the positions below which every row
    // of the chunk reads slot = position (all of them for causal rows; a tree row's committed prefix).
    qt.initialize(repeating: 0, count: d * attentionLanes)
    acc.initialize(repeating: 0, count: d * attentionLanes)
    var visible = SIMD16<Int32>(repeating: 0)
    for lane in 0..<laneCount {
        let qp = queryOf(lane)
        for x in 0..<d { qt[x * attentionLanes + lane] = qp[x] }
        visible[lane] = Int32(rows[rowOf(lane)].visibleCount)
    }
    var longest = 0, sharedBelow = Int.max
    for r in firstRow...lastRow {
        longest = max(longest, rows[r].visibleCount)
        if case let .tree(prefixLength, _) = rows[r].visibility { sharedBelow = min(sharedBelow, prefixLength) }
    }
    let kvOffset = kvHead * d, scale = shape.scale
    var runningMax = SIMD16<Float>(repeating: -.infinity), runningSum = SIMD16<Float>()

    // acc[x] += p · v[x] for the lanes' own V rows at a position where the rows read different slots.
    func accumulateLanes(dims: Range<Int>, position: Int, weights: UnsafePointer<Float>) {
        for lane in 0..<laneCount where position < Int(visible[lane]) {
            let v = cache.value(layer: layer, slot: rows[rowOf(lane)].slot(ofLogical: position)) + kvOffset
            for x in dims {
                acc[x * attentionLanes + lane] = acc[x * attentionLanes + lane].addingProduct(weights[lane], v[x])
            }
        }
    }

    var tileStart = 0
    while tileStart < longest {
        let n = min(attentionTile, longest - tileStart)
        // Scores, −∞ where a lane cannot see the position; the tile's unused positions hold weight 0. First the
        // slot of each position: shared by the chunk's rows (K and V read once for all lanes), or differing (a
        // tree's branches: scored lane by lane here).
        for j in 0..<n {
            let position = tileStart + j, s = scores + j * attentionLanes
            var slot = position, differ = false
            if position >= sharedBelow {
                // Beyond a tree's prefix: the slot each visible row reads here.
                var common: Int? = nil
                for r in firstRow...lastRow where position < rows[r].visibleCount {
                    let own = rows[r].slot(ofLogical: position)
                    if common == nil { common = own } else if common != own { differ = true }
                }
                slot = common ?? position
            }
            if differ {
                for lane in 0..<attentionLanes { s[lane] = 0 }
                for lane in 0..<laneCount where position < Int(visible[lane]) {
                    let key = cache.key(layer: layer, slot: rows[rowOf(lane)].slot(ofLogical: position)) + kvOffset
                    s[lane] = dot(queryOf(lane), key, d) * scale
                }
                sharedValues[j] = nil
            } else {
                sharedKeys[j] = UnsafePointer(cache.key(layer: layer, slot: slot) + kvOffset)
                sharedValues[j] = UnsafePointer(cache.value(layer: layer, slot: slot) + kvOffset)
            }
        }
        // Then the shared keys' scores, eight at a time where eight in a row are shared (head dim 64).
        var j = 0
        while j < n {
            if d == 64 && j + 8 <= n && (j..<(j + 8)).allSatisfy({ sharedValues[$0] != nil }) {
                laneScores8(qt, keys: sharedKeys + j, scale: scale, into: scores + j * attentionLanes,
                            partials: scratch.partials)
                j += 8
            } else {
                if sharedValues[j] != nil {
                    laneScores(qt, d: d, key: sharedKeys[j], scale: scale, into: scores + j * attentionLanes,
                               partials: scratch.partials)
                }
                j += 1
            }
        }
        for j in 0..<n {
            let s = scores + j * attentionLanes
            let seen = SIMD16<Int32>(repeating: Int32(tileStart + j)) .< visible
            store16(load16(s).replacing(with: -.infinity, where: .!seen), s)
        }

        // Online softmax, lane by lane, as `attendRows` does per query.
        var tileMax = SIMD16<Float>(repeating: -.infinity)
        for j in 0..<n {
            let s = load16(scores + j * attentionLanes)
            tileMax = tileMax.replacing(with: s, where: s .> tileMax)
        }
        let newMax = runningMax.replacing(with: tileMax, where: tileMax .> runningMax)
        let correction = exp16(runningMax - newMax).replacing(with: 0, where: runningMax .== -.infinity)
        runningMax = newMax
        for j in 0..<attentionTile {
            let s = scores + j * attentionLanes
            if j < n {
                // Weight 0 where the lane cannot see the position; where it can, e^(s − m) exactly as the row
                // layout computes it (a visible score of −∞ included).
                let seen = SIMD16<Int32>(repeating: Int32(tileStart + j)) .< visible
                store16(exp16(load16(s) - newMax).replacing(with: 0, where: .!seen), s)
            } else {
                store16(SIMD16(), s)
            }
        }
        runningSum = runningSum * correction + laneTileSum(scores, columns: scratch.partials)
        for x in 0..<d { store16(load16(acc + x * attentionLanes) * correction, acc + x * attentionLanes) }

        // acc[x] += p · v[x], position by position: when every position of the tile has a shared V row (all but a
        // tree's branches), sixteen dimensions of the accumulator in registers at a time; otherwise eight, with the
        // per-lane path for the positions that differ.
        var x0 = 0
        if d % 16 == 0 && (0..<n).allSatisfy({ sharedValues[$0] != nil }) {
            // No nil among them, so the optional pointers can be read as plain pointers (same layout).
            sharedValues.withMemoryRebound(to: UnsafePointer<Float>.self, capacity: n) { values in
                while x0 < d {
                    accumulateSixteenShared(acc + x0 * attentionLanes, weights: scores, count: n, values: values, from: x0)
                    x0 += 16
                }
            }
        }
        while x0 < d {
            let width = min(8, d - x0)
            if width == 8 {
                accumulateEight(acc + x0 * attentionLanes, weights: scores, count: n, values: sharedValues, from: x0) { j in
                    accumulateLanes(dims: x0..<(x0 + 8), position: tileStart + j, weights: scores + j * attentionLanes)
                }
            } else {
                for x in x0..<(x0 + width) {
                    var a = load16(acc + x * attentionLanes)
                    for j in 0..<n {
                        if let v = sharedValues[j] {
                            a = a.addingProduct(load16(scores + j * attentionLanes), SIMD16(repeating: v[x]))
                        } else {
                            store16(a, acc + x * attentionLanes)
                            accumulateLanes(dims: x..<(x + 1), position: tileStart + j, weights: scores + j * attentionLanes)
                            a = load16(acc + x * attentionLanes)
                        }
                    }
                    store16(a, acc + x * attentionLanes)
                }
            }
            x0 += width
        }
        tileStart += attentionTile
    }

    let inverse = SIMD16<Float>(repeating: 1) / runningSum
    for lane in 0..<laneCount {
        let o = out + (queryOf(lane) - q)
        for x in 0..<d { o[x] = acc[x * attentionLanes + lane] * inverse[lane] }
    }
}

/// One key's scores for all 16 lanes, each bitwise `dot(query, key, d) · scale`: accumulator c holds the FMA
/// chain over dimensions c, c + 16, c + 32, … (lane c of `dot`'s vector), then `horizontalSum`'s tree
/// ((c + 8), then (c + 4), (c + 2), (c + 1)), then the scalar tail.
@inline(__always)
func laneScores(
    _ qt: UnsafePointer<Float>, d: Int, key k: UnsafePointer<Float>, scale: Float, into s: UnsafeMutablePointer<Float>,
    partials: UnsafeMutablePointer<Float>
) {
    let l = attentionLanes, dv = d - d % 16
    var p0 = SIMD16<Float>(), p1 = SIMD16<Float>(), p2 = SIMD16<Float>(), p3 = SIMD16<Float>()
    var p4 = SIMD16<Float>(), p5 = SIMD16<Float>(), p6 = SIMD16<Float>(), p7 = SIMD16<Float>()
    var p8 = SIMD16<Float>(), p9 = SIMD16<Float>(), p10 = SIMD16<Float>(), p11 = SIMD16<Float>()
    var p12 = SIMD16<Float>(), p13 = SIMD16<Float>(), p14 = SIMD16<Float>(), p15 = SIMD16<Float>()
    var i = 0
    while i < dv {
        let q = qt + i * l, ki = k + i
        p0 = p0.addingProduct(load16(q), SIMD16(repeating: ki[0]))
        p1 = p1.addingProduct(load16(q + l), SIMD16(repeating: ki[1]))
        p2 = p2.addingProduct(load16(q + 2 * l), SIMD16(repeating: ki[2]))
        p3 = p3.addingProduct(load16(q + 3 * l), SIMD16(repeating: ki[3]))
        p4 = p4.addingProduct(load16(q + 4 * l), SIMD16(repeating: ki[4]))
        p5 = p5.addingProduct(load16(q + 5 * l), SIMD16(repeating: ki[5]))
        p6 = p6.addingProduct(load16(q + 6 * l), SIMD16(repeating: ki[6]))
        p7 = p7.addingProduct(load16(q + 7 * l), SIMD16(repeating: ki[7]))
        p8 = p8.addingProduct(load16(q + 8 * l), SIMD16(repeating: ki[8]))
        p9 = p9.addingProduct(load16(q + 9 * l), SIMD16(repeating: ki[9]))
        p10 = p10.addingProduct(load16(q + 10 * l), SIMD16(repeating: ki[10]))
        p11 = p11.addingProduct(load16(q + 11 * l), SIMD16(repeating: ki[11]))
        p12 = p12.addingProduct(load16(q + 12 * l), SIMD16(repeating: ki[12]))
        p13 = p13.addingProduct(load16(q + 13 * l), SIMD16(repeating: ki[13]))
        p14 = p14.addingProduct(load16(q + 14 * l), SIMD16(repeating: ki[14]))
        p15 = p15.addingProduct(load16(q + 15 * l), SIMD16(repeating: ki[15]))
        i += 16
    }
    // The tree runs out of line on the 16 partials stored to scratch: inlined, the compiler took its 15 vector
    // adds apart into hundreds of lane extracts and inserts.
    store16(p0, partials); store16(p1, partials + l); store16(p2, partials + 2 * l); store16(p3, partials + 3 * l)
    store16(p4, partials + 4 * l); store16(p5, partials + 5 * l); store16(p6, partials + 6 * l); store16(p7, partials + 7 * l)
    store16(p8, partials + 8 * l); store16(p9, partials + 9 * l); store16(p10, partials + 10 * l); store16(p11, partials + 11 * l)
    store16(p12, partials + 12 * l); store16(p13, partials + 13 * l); store16(p14, partials + 14 * l); store16(p15, partials + 15 * l)
    treeSum(partials, into: s)
    var v = load16(s)
    while i < d { v = v.addingProduct(load16(qt + i * l), SIMD16(repeating: k[i])); i += 1 }
    store16(v * scale, s)
}

/// Eight keys' scores for all 16 lanes at head dim 64, each bitwise what `laneScores` gives: the same FMA chain per
/// accumulator c (dimensions c, c + 16, c + 32, c + 48) and the same tree. Chain c of all eight keys is computed with
/// the four query vectors it needs held in registers, so a key costs 64 broadcast FMAs and 16 stores instead of 64
/// FMAs that each also load a query vector. Measured against `laneScores` key by key, attention over all layers in
/// one process: a 256-token prompt 8.4 → 7.7 ms, 8 rows 0.61 → 0.59 ms, 5 rows 0.35 → 0.33 ms.
@inline(__always)
func laneScores8(
    _ qt: UnsafePointer<Float>, keys k: UnsafePointer<UnsafePointer<Float>>, scale: Float,
    into s: UnsafeMutablePointer<Float>, partials: UnsafeMutablePointer<Float>
) {
    let l = attentionLanes
    let k0 = k[0], k1 = k[1], k2 = k[2], k3 = k[3], k4 = k[4], k5 = k[5], k6 = k[6], k7 = k[7]
    for c in 0..<16 {
        let q0 = load16(qt + c * l), q1 = load16(qt + (c + 16) * l)
        let q2 = load16(qt + (c + 32) * l), q3 = load16(qt + (c + 48) * l)
        @inline(__always) func chain(_ key: UnsafePointer<Float>) -> SIMD16<Float> {
            var p = SIMD16<Float>()
            p = p.addingProduct(q0, SIMD16(repeating: key[c]))
            p = p.addingProduct(q1, SIMD16(repeating: key[c + 16]))
            p = p.addingProduct(q2, SIMD16(repeating: key[c + 32]))
            p = p.addingProduct(q3, SIMD16(repeating: key[c + 48]))
            return p
        }
        let out = partials + c * l
        store16(chain(k0), out); store16(chain(k1), out + 16 * l)
        store16(chain(k2), out + 32 * l); store16(chain(k3), out + 48 * l)
        store16(chain(k4), out + 64 * l); store16(chain(k5), out + 80 * l)
        store16(chain(k6), out + 96 * l); store16(chain(k7), out + 112 * l)
    }
    for j in 0..<8 {
        let sj = s + j * l
        treeSum(partials + j * 16 * l, into: sj)
        store16(load16(sj) * scale, sj)
    }
}

/// `horizontalSum`'s tree over the 16 vectors at `p` (16 floats apart), lane by lane: (c + 8), then (c + 4),
/// (c + 2), (c + 1).
@inline(never)
private func treeSum(_ p: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
    let l = attentionLanes
    let h0 = load16(p) + load16(p + 8 * l), h1 = load16(p + l) + load16(p + 9 * l)
    let h2 = load16(p + 2 * l) + load16(p + 10 * l), h3 = load16(p + 3 * l) + load16(p + 11 * l)
    let h4 = load16(p + 4 * l) + load16(p + 12 * l), h5 = load16(p + 5 * l) + load16(p + 13 * l)
    let h6 = load16(p + 6 * l) + load16(p + 14 * l), h7 = load16(p + 7 * l) + load16(p + 15 * l)
    let g0 = h0 + h4, g1 = h1 + h5, g2 = h2 + h6, g3 = h3 + h7
    let f0 = g0 + g2, f1 = g1 + g3
    store16(f0 + f1, out)
}

/// The tile's weights summed per lane as the row layout's `tileSum` does: position c plus c + 16 (plus c + 32, …),
/// then the tree. Positions past the tile's end hold 0. `columns` is scratch for 17 vectors.
@inline(__always)
private func laneTileSum(_ w: UnsafePointer<Float>, columns: UnsafeMutablePointer<Float>) -> SIMD16<Float> {
    let l = attentionLanes
    for c in 0..<16 {
        var v = load16(w + c * l)
        var j = c + 16
        while j < attentionTile { v += load16(w + j * l); j += 16 }
        store16(v, columns + c * l)
    }
    treeSum(columns, into: columns + 16 * l)
    return load16(columns + 16 * l)
}

/// acc[x] += p_j · v_j[x] for sixteen dimensions starting at `from`, positions j in order (the same FMA per
/// dimension and position as `accumulateEight`), every position with a shared V row: sixteen independent chains
/// keep both FMA units busy, where eight wait on their own latency. Measured against eight at a time, attention
/// over all layers in one process: 5 rows 0.34 → 0.32 ms, 8 rows 0.60 → 0.56 ms, a 256-token prompt 8.3 → 7.6 ms.
@inline(__always)
private func accumulateSixteenShared(
    _ acc: UnsafeMutablePointer<Float>, weights: UnsafePointer<Float>, count n: Int,
    values: UnsafePointer<UnsafePointer<Float>>, from x: Int
) {
    var low = AccumulatorRows(acc), high = AccumulatorRows(acc + 8 * attentionLanes)
    for j in 0..<n {
        let p = load16(weights + j * attentionLanes), v = values[j] + x
        low.add(p, v)
        high.add(p, v + 8)
    }
    low.store(acc)
    high.store(acc + 8 * attentionLanes)
}

/// acc[x] += p_j · v_j[x] for eight dimensions starting at `from`, positions j in order, the eight accumulator
/// rows in registers; a position without a shared V row goes through `perLane` (the registers are written back
/// first and reloaded after).
@inline(__always)
private func accumulateEight(
    _ acc: UnsafeMutablePointer<Float>, weights: UnsafePointer<Float>, count n: Int,
    values: UnsafePointer<UnsafePointer<Float>?>, from x: Int, perLane: (Int) -> Void
) {
    var rows = AccumulatorRows(acc)
    for j in 0..<n {
        guard let v = values[j].map({ $0 + x }) else {
            rows.store(acc)
            perLane(j)
            rows = AccumulatorRows(acc)
            continue
        }
        rows.add(load16(weights + j * attentionLanes), v)
    }
    rows.store(acc)
}

/// Eight rows of the lane layout's accumulator (eight dimensions × 16 lanes) held in registers.
private struct AccumulatorRows {
    var a0, a1, a2, a3, a4, a5, a6, a7: SIMD16<Float>

    @inline(__always) init(_ acc: UnsafePointer<Float>) {
        let l = attentionLanes
        a0 = load16(acc); a1 = load16(acc + l); a2 = load16(acc + 2 * l); a3 = load16(acc + 3 * l)
        a4 = load16(acc + 4 * l); a5 = load16(acc + 5 * l); a6 = load16(acc + 6 * l); a7 = load16(acc + 7 * l)
    }

    @inline(__always) func store(_ acc: UnsafeMutablePointer<Float>) {
        let l = attentionLanes
        store16(a0, acc); store16(a1, acc + l); store16(a2, acc + 2 * l); store16(a3, acc + 3 * l)
        store16(a4, acc + 4 * l); store16(a5, acc + 5 * l); store16(a6, acc + 6 * l); store16(a7, acc + 7 * l)
    }

    /// Row d += p · v[d], one FMA each.
    @inline(__always) mutating func add(_ p: SIMD16<Float>, _ v: UnsafePointer<Float>) {
        a0 = a0.addingProduct(p, SIMD16(repeating: v[0])); a1 = a1.addingProduct(p, SIMD16(repeating: v[1]))
        a2 = a2.addingProduct(p, SIMD16(repeating: v[2])); a3 = a3.addingProduct(p, SIMD16(repeating: v[3]))
        a4 = a4.addingProduct(p, SIMD16(repeating: v[4])); a5 = a5.addingProduct(p, SIMD16(repeating: v[5]))
        a6 = a6.addingProduct(p, SIMD16(repeating: v[6])); a7 = a7.addingProduct(p, SIMD16(repeating: v[7]))
    }
}
