import XCTest
@testable import InferenceCore

final class AttentionTests: XCTestCase {
    /// Head dimensions 16, 64 and 20 (a vector tail in `dot` and in the lane layout's V accumulation), with 2, 3
    /// and 4 query heads per KV head (lanes split rows differently); every test runs all three.
    static let shapes = [AttentionShape(numHeads: 4, numKVHeads: 2, headDim: 16),
                         AttentionShape(numHeads: 6, numKVHeads: 2, headDim: 64),
                         AttentionShape(numHeads: 4, numKVHeads: 1, headDim: 20)]
    var shape = AttentionTests.shapes[0]

    /// A cache whose slots hold random K/V (already "after RoPE": attention reads them as they are).
    private func randomCache(slots: Int, seed: UInt64) -> KVCache {
        let cache = KVCache(layers: 1, kvDim: shape.numKVHeads * shape.headDim, capacity: slots)
        let k = randomVector(slots * cache.kvDim, seed: seed), v = randomVector(slots * cache.kvDim, seed: seed + 1)
        for s in 0..<slots {
            for i in 0..<cache.kvDim {
                cache.key(layer: 0, slot: s)[i] = k[s * cache.kvDim + i]
                cache.value(layer: 0, slot: s)[i] = v[s * cache.kvDim + i]
            }
        }
        return cache
    }

    private func attend(_ rows: [Row], queries: [Float]) -> [Float] {
        var out = [Float](repeating: .nan, count: queries.count)
        queries.withUnsafeBufferPointer { q in
            out.withUnsafeMutableBufferPointer { o in
                tiledAttention(q: q.baseAddress!, rows: rows, layer: 0, shape: shape, out: o.baseAddress!)
            }
        }
        return out
    }

    /// The naive reference for one row: its visible slots in logical order, full softmax per head.
    private func reference(row: Row, query: ArraySlice<Float>, cache: KVCache) -> [Float] {
        let d = shape.headDim, group = shape.numHeads / shape.numKVHeads
        let slots = (0...row.position).map { row.slot(ofLogical: $0) }
        var out: [Float] = []
        for h in 0..<shape.numHeads {
            let kvh = h / group
            let keys = slots.map { Array(UnsafeBufferPointer(start: cache.key(layer: 0, slot: $0) + kvh * d, count: d)) }
            let values = slots.map { Array(UnsafeBufferPointer(start: cache.value(layer: 0, slot: $0) + kvh * d, count: d)) }
            let q = Array(query[(query.startIndex + h * d)..<(query.startIndex + (h + 1) * d)])
            out += naiveAttention(query: q, keys: keys, values: values)
        }
        return out
    }

    /// The lane layout's score kernel computes 16 queries against one key; each lane must be bitwise the row
    /// layout's `dot · scale` (and `scores8`, its eight-key form at head dim 64), or a row's output would depend on
    /// the layout its batch picked.
    func testLaneScoresAreBitwiseTheRowLayoutsDotProducts() {
        for d in [16, 64, 72] {
            for seed in UInt64(0)..<10 {
                let queries = (0..<attentionLanes).map { randomVector(d, seed: 100 + 16 * seed + UInt64($0), scale: 3) }
                var qt = [Float](repeating: 0, count: d * attentionLanes)
                for (lane, query) in queries.enumerated() { for x in 0..<d { qt[x * attentionLanes + lane] = query[x] } }
                let key = randomVector(d, seed: 300 + seed, scale: 3)
                let scale: Float = 0.125
                var got = [Float](repeating: .nan, count: attentionLanes)
                var partials = [Float](repeating: .nan, count: 17 * attentionLanes)
                qt.withUnsafeBufferPointer { q in
                    key.withUnsafeBufferPointer { k in
                        got.withUnsafeMutableBufferPointer { g in
                            partials.withUnsafeMutableBufferPointer {
                                laneScores(q.baseAddress!, d: d, key: k.baseAddress!, scale: scale, into: g.baseAddress!, partials: $0.baseAddress!)
                            }
                        }
                        for lane in 0..<attentionLanes {
                            let expected = queries[lane].withUnsafeBufferPointer { dot($0.baseAddress!, k.baseAddress!, d) } * scale
                            XCTAssertEqual(got[lane].bitPattern, expected.bitPattern, "d \(d) seed \(seed) lane \(lane)")
                        }
                    }
                }
            }
        }
    }

    /// The lane layout's eight-key score kernel (head dim 64) must give every lane and key bitwise `dot · scale`.
    func testEightKeyLaneScoresAreBitwiseTheRowLayoutsDotProducts() {
        let d = 64, scale: Float = 0.125
        for seed in UInt64(0)..<10 {
            let queries = (0..<attentionLanes).map { randomVector(d, seed: 500 + 16 * seed + UInt64($0), scale: 3) }
            var qt = [Float](repeating: 0, count: d * attentionLanes)
            for (lane, query) in queries.enumerated() { for x in 0..<d { qt[x * attentionLanes + lane] = query[x] } }
            let keys = (0..<8).map { randomVector(d, seed: 700 + 8 * seed + UInt64($0), scale: 3) }
            let keyData = UnsafeMutablePointer<Float>.allocate(capacity: 8 * d)
            defer { keyData.deallocate() }
            for (j, key) in keys.enumerated() { (keyData + j * d).initialize(from: key, count: d) }
            let table = (0..<8).map { UnsafePointer(keyData + $0 * d) }
            var got = [Float](repeating: .nan, count: 8 * attentionLanes)
            var partials = [Float](repeating: .nan, count: 8 * 16 * attentionLanes)
            qt.withUnsafeBufferPointer { q in
                table.withUnsafeBufferPointer { t in
                    got.withUnsafeMutableBufferPointer { g in
                        partials.withUnsafeMutableBufferPointer {
                            laneScores8(q.baseAddress!, keys: t.baseAddress!, scale: scale, into: g.baseAddress!, partials: $0.baseAddress!)
                        }
                    }
                }
            }
            for j in 0..<8 {
                for lane in 0..<attentionLanes {
                    let expected = queries[lane].withUnsafeBufferPointer { dot($0.baseAddress!, table[j], d) } * scale
                    XCTAssertEqual(got[j * attentionLanes + lane].bitPattern, expected.bitPattern, "seed \(seed) key \(j) lane \(lane)")
                }
            }
        }
    }

    /// The row layout's eight-key score kernel (head dim 64) must be bitwise its one-key `dot`.
    func testEightKeyScoresAreBitwiseTheOneKeyDotProducts() {
        for seed in UInt64(0)..<20 {
            let q = randomVector(64, seed: 100 + seed, scale: 3)
            let keys = (0..<8).map { randomVector(64, seed: 200 + 8 * seed + UInt64($0), scale: 3) }
            let scale: Float = 0.125
            var got = [Float](repeating: .nan, count: 8)
            q.withUnsafeBufferPointer { qp in
                let pointers = keys.map { k -> UnsafeMutablePointer<Float> in
                    let p = UnsafeMutablePointer<Float>.allocate(capacity: 64)
                    p.initialize(from: k, count: 64)
                    return p
                }
                defer { pointers.forEach { $0.deallocate() } }
                let table = pointers.map { UnsafePointer($0) }
                table.withUnsafeBufferPointer { t in
                    got.withUnsafeMutableBufferPointer { scores8(qp.baseAddress!, t.baseAddress!, scale, $0.baseAddress!) }
                }
                for j in 0..<8 {
                    let expected = dot(qp.baseAddress!, table[j], 64) * scale
                    XCTAssertEqual(got[j].bitPattern, expected.bitPattern, "seed \(seed) key \(j)")
                }
            }
        }
    }

    func testCausalRowsMatchTheNaiveReferenceAcrossTileBoundaries() {
        for s in AttentionTests.shapes { shape = s; checkCausalRowsMatchTheNaiveReferenceAcrossTileBoundaries() }
    }

    private func checkCausalRowsMatchTheNaiveReferenceAcrossTileBoundaries() {
        let cache = randomCache(slots: 100, seed: 1)
        let positions = [0, 1, 31, 32, 33, 64, 99]
        let rows = positions.map { Row(token: 0, position: $0, cache: cache) }
        let width = shape.numHeads * shape.headDim
        let queries = randomVector(rows.count * width, seed: 3, scale: 2)
        let got = attend(rows, queries: queries)
        for (i, row) in rows.enumerated() {
            let expected = reference(row: row, query: queries[i * width..<(i + 1) * width], cache: cache)
            XCTAssertLessThan(maxAbsDifference(Array(got[i * width..<(i + 1) * width]), expected), 1e-5, "position \(row.position)")
        }
    }

    func testTreeRowsSeeThePrefixAndTheirAncestorsOnly() {
        for s in AttentionTests.shapes { shape = s; checkTreeRowsSeeThePrefixAndTheirAncestorsOnly() }
    }

    private func checkTreeRowsSeeThePrefixAndTheirAncestorsOnly() {
        let cache = randomCache(slots: 60, seed: 7)
        cache.append(40)
        // Tree over slots 40...45: 40 root; 41, 42 children of 40; 43 child of 41; 44, 45 children of 42.
        let paths: [[Int]] = [[40], [40, 41], [40, 42], [40, 41, 43], [40, 42, 44], [40, 42, 45]]
        let rows = paths.map {
            Row(token: 0, position: 40 + $0.count - 1, cache: cache, slot: $0.last!, visibility: .tree(prefixLength: 40, path: $0))
        }
        let width = shape.numHeads * shape.headDim
        let queries = randomVector(rows.count * width, seed: 8, scale: 2)
        let got = attend(rows, queries: queries)
        for (i, row) in rows.enumerated() {
            let expected = reference(row: row, query: queries[i * width..<(i + 1) * width], cache: cache)
            XCTAssertLessThan(maxAbsDifference(Array(got[i * width..<(i + 1) * width]), expected), 1e-5, "node \(paths[i])")
        }
    }

    func testATreeNodeIsBitwiseEqualToTheSameTokensDecodedInOrder() {
        for s in AttentionTests.shapes { shape = s; checkATreeNodeIsBitwiseEqualToTheSameTokensDecodedInOrder() }
    }

    private func checkATreeNodeIsBitwiseEqualToTheSameTokensDecodedInOrder() {
        // Slots 43 and 45 hold copies of 41 and 42: the tree path [40, 43, 45] is the chain 40, 41, 42.
        let cache = randomCache(slots: 50, seed: 21)
        for layer in 0..<1 {
            cache.key(layer: layer, slot: 43).update(from: cache.key(layer: layer, slot: 41), count: cache.kvDim)
            cache.value(layer: layer, slot: 43).update(from: cache.value(layer: layer, slot: 41), count: cache.kvDim)
            cache.key(layer: layer, slot: 45).update(from: cache.key(layer: layer, slot: 42), count: cache.kvDim)
            cache.value(layer: layer, slot: 45).update(from: cache.value(layer: layer, slot: 42), count: cache.kvDim)
        }
        cache.append(40)
        let width = shape.numHeads * shape.headDim
        let query = randomVector(width, seed: 22, scale: 3)
        let chain = attend([Row(token: 0, position: 42, cache: cache)], queries: query)
        let tree = attend([Row(token: 0, position: 42, cache: cache, slot: 45,
                               visibility: .tree(prefixLength: 40, path: [40, 43, 45]))], queries: query)
        XCTAssertEqual(chain, tree)
    }

    func testRowsWalkingTheTilesTogetherEqualEachRowAlone() {
        for s in AttentionTests.shapes { shape = s; checkRowsWalkingTheTilesTogetherEqualEachRowAlone() }
    }

    /// Rows of one cache share each K/V tile. A run of them long enough for the lane layout (several chunks of 16
    /// queries), split by single rows of another cache (the row layout) and followed by tree rows whose branches
    /// read different slots at the same position, must give every row bitwise what it gets alone (row layout).
    private func checkRowsWalkingTheTilesTogetherEqualEachRowAlone() {
        let a = randomCache(slots: 120, seed: 31), b = randomCache(slots: 80, seed: 32)
        a.append(90)
        var rows = (0..<21).map { Row(token: 0, position: 3 * $0, cache: a) }
        rows.insert(Row(token: 0, position: 70, cache: b), at: 7)
        rows.append(Row(token: 0, position: 79, cache: b))
        rows += [[90], [90, 91], [90, 92], [90, 91, 93], [90, 91, 94], [90, 92, 95], [90, 92, 95, 96], [90, 91, 93, 97]].map {
            Row(token: 0, position: 90 + $0.count - 1, cache: a, slot: $0.last!, visibility: .tree(prefixLength: 90, path: $0))
        }
        let width = shape.numHeads * shape.headDim
        let queries = randomVector(rows.count * width, seed: 33, scale: 2)
        let together = attend(rows, queries: queries)
        for (i, row) in rows.enumerated() {
            let alone = attend([row], queries: Array(queries[i * width..<(i + 1) * width]))
            XCTAssertEqual(Array(together[i * width..<(i + 1) * width]), alone, "row \(i) at position \(row.position)")
            let expected = reference(row: row, query: queries[i * width..<(i + 1) * width], cache: row.cache)
            XCTAssertLessThan(maxAbsDifference(alone, expected), 1e-5, "row \(i) against the naive reference")
        }
    }
}
