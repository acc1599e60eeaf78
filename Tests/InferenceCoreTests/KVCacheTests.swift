import XCTest
@testable import InferenceCore

final class KVCacheTests: XCTestCase {
    private func fill(_ cache: KVCache, slot: Int, with value: Float) {
        for layer in 0..<cache.layers {
            cache.key(layer: layer, slot: slot).update(repeating: value, count: cache.kvDim)
            cache.value(layer: layer, slot: slot).update(repeating: -value, count: cache.kvDim)
        }
    }

    func testAppendAndTruncateRollBackRejectedPositions() {
        let cache = KVCache(layers: 2, kvDim: 4, capacity: 10)
        for s in 0..<6 { fill(cache, slot: s, with: Float(s)) }
        cache.append(6)
        XCTAssertEqual(cache.count, 6)
        cache.truncate(to: 4)
        XCTAssertEqual(cache.count, 4)
        XCTAssertEqual(cache.key(layer: 1, slot: 3)[0], 3)
    }

    func testCompactMovesAnAcceptedTreePathIntoPlace() {
        let cache = KVCache(layers: 2, kvDim: 4, capacity: 12)
        for s in 0..<3 { fill(cache, slot: s, with: Float(s)) }
        cache.append(3)
        // A tree written at slots 3...8; the accepted path is slots 4, 6, 8.
        for s in 3..<9 { fill(cache, slot: s, with: Float(100 + s)) }
        cache.compact(keeping: [4, 6, 8])
        XCTAssertEqual(cache.count, 6)
        for (i, expected) in [0, 1, 2, 104, 106, 108].enumerated() {
            for layer in 0..<2 {
                XCTAssertEqual(Array(UnsafeBufferPointer(start: cache.key(layer: layer, slot: i), count: 4)),
                               [Float](repeating: Float(expected), count: 4))
                XCTAssertEqual(cache.value(layer: layer, slot: i)[3], -Float(expected))
            }
        }
    }

    func testCompactKeepsASlotThatIsAlreadyInPlace() {
        let cache = KVCache(layers: 1, kvDim: 2, capacity: 6)
        for s in 0..<4 { fill(cache, slot: s, with: Float(s)) }
        cache.append(1)
        cache.compact(keeping: [1, 3])
        XCTAssertEqual(cache.count, 3)
        XCTAssertEqual(cache.key(layer: 0, slot: 1)[0], 1)
        XCTAssertEqual(cache.key(layer: 0, slot: 2)[0], 3)
    }
}
