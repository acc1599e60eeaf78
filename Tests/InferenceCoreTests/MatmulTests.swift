import XCTest
import Foundation
import Synchronization
import TestSupport
@testable import InferenceCore

final class MatmulTests: XCTestCase {
    private func run(_ a: [Float], rows m: Int, weight: Tensor, path: MatmulPath, pool: WorkerPool = .shared) -> [Float] {
        var c = [Float](repeating: .nan, count: m * weight.rows)
        a.withUnsafeBufferPointer { ap in
            c.withUnsafeMutableBufferPointer { cp in
                matmul(ap.baseAddress!, rows: m, weight: weight, into: cp.baseAddress!, path: path, pool: pool)
            }
        }
        return c
    }

    func testEveryPathMatchesTheNaiveProductIncludingRaggedShapes() {
        // K and N that are not multiples of the vector width or the 4-, 3- and 2-output tiles exercise every tail;
        // M from 1 to 25 covers every kernel (4-row tiles up to 6 rows, 3-row tiles at 7, 2-row tiles beyond) and
        // 1–3 blocks of rows.
        for (m, n, k) in [(1, 64, 384), (3, 37, 53), (5, 130, 1024), (6, 22, 384), (7, 41, 384), (7, 20, 53), (8, 37, 53), (12, 18, 1024),
                          (16, 8, 16), (17, 33, 100), (25, 9, 70)] {
            let a = randomVector(m * k, seed: UInt64(m * 1000 + k))
            let wValues = randomVector(n * k, seed: UInt64(n * 7 + k))
            let weight = Tensor(shape: [n, k], values: wValues)
            let expected = naiveMatmul(a, rows: m, weight: wValues, outputs: n, inner: k)
            for path in MatmulPath.allCases {
                let got = run(a, rows: m, weight: weight, path: path)
                XCTAssertLessThan(maxAbsDifference(got, expected), 1e-4 * Float(k).squareRoot(), "\(path) m=\(m) n=\(n) k=\(k)")
            }
        }
    }

    func testStreamingRowIsBitwiseTheSameWhateverTheBatch() {
        let n = 72, k = 200
        let weight = Tensor(shape: [n, k], values: randomVector(n * k, seed: 11))
        let rows = (0..<26).map { randomVector(k, seed: 100 + UInt64($0)) }
        let alone = rows.map { run($0, rows: 1, weight: weight, path: .streaming) }
        for m in 2...26 {
            let batch = run(rows.prefix(m).flatMap { $0 }, rows: m, weight: weight, path: .streaming)
            for r in 0..<m {
                XCTAssertEqual(Array(batch[r * n..<(r + 1) * n]), alone[r], "row \(r) in a batch of \(m)")
            }
        }
    }

    func testFourHorizontalSumsAtOnceAreBitwiseTheOneByOneSums() {
        // Magnitudes from 1e-6 to 1e6 and both signs make every change of association show in the bits.
        var rng = SplitMix64(seed: 21)
        func vector() -> Vec {
            var v = Vec()
            for i in 0..<16 {
                let magnitude = Float(pow(10, Double(rng.next() % 13) - 6))
                v[i] = (Float(rng.next() % 2_000_001) / 1_000_000 - 1) * magnitude
            }
            return v
        }
        var differentFromSequential = 0
        for _ in 0..<2_000 {
            let (a, b, c, d) = (vector(), vector(), vector(), vector())
            let sums = horizontalSums(a, b, c, d)
            for (i, v) in [a, b, c, d].enumerated() {
                XCTAssertEqual(sums[i].bitPattern, horizontalSum(v).bitPattern)
                let sequential = (0..<16).reduce(Float(0)) { $0 + v[$1] }
                if horizontalSum(v) != sequential { differentFromSequential += 1 }
            }
        }
        // The data can tell orders apart: a left-to-right sum differs from the tree on many of them.
        XCTAssertGreaterThan(differentFromSequential, 1_000)
    }

    func testStreamingResultDoesNotDependOnTheThreadCount() {
        let n = 96, k = 384, m = 5
        let weight = Tensor(shape: [n, k], values: randomVector(n * k, seed: 5))
        let a = randomVector(m * k, seed: 6)
        let one = run(a, rows: m, weight: weight, path: .streaming, pool: WorkerPool(threadCount: 1))
        let three = run(a, rows: m, weight: weight, path: .streaming, pool: WorkerPool(threadCount: 3))
        XCTAssertEqual(one, three)
    }
}

/// A weight whose values are all BF16 can stream from a BF16 copy: half the bytes, bitwise the same products.
final class BF16StreamingTests: XCTestCase {
    private func bf16Rounded(_ values: [Float]) -> [Float] {
        values.map { Float(bitPattern: $0.bitPattern & 0xFFFF_0000) }
    }

    private func product(_ a: [Float], rows m: Int, _ weight: Tensor) -> [Float] {
        var c = [Float](repeating: .nan, count: m * weight.rows)
        a.withUnsafeBufferPointer { ap in
            c.withUnsafeMutableBufferPointer { matmul(ap.baseAddress!, rows: m, weight: weight, into: $0.baseAddress!, path: .streaming) }
        }
        return c
    }

    func testTheBF16CopyGivesBitwiseTheF32ProductsForEveryKernel() {
        for (n, k) in [(64, 384), (37, 53), (18, 1024), (9, 70)] {
            let values = bf16Rounded(randomVector(n * k, seed: UInt64(n * 31 + k)))
            let f32 = Tensor(shape: [n, k], values: values), half = Tensor(shape: [n, k], values: values)
            XCTAssertTrue(half.keepBF16Copy())
            XCTAssertEqual(half.streamedByteCount, n * k * 2)
            for m in [1, 2, 3, 4, 5, 6, 7, 8, 12, 13, 25] {
                let a = randomVector(m * k, seed: UInt64(m * 7 + k))
                XCTAssertEqual(product(a, rows: m, half), product(a, rows: m, f32), "n=\(n) k=\(k) m=\(m)")
            }
        }
    }

    func testAWeightThatIsNotExactlyBF16KeepsNoCopy() {
        var values = bf16Rounded(randomVector(64, seed: 3))
        values[17] = 0.1  // not a BF16
        let weight = Tensor(shape: [4, 16], values: values)
        XCTAssertFalse(weight.keepBF16Copy())
        XCTAssertNil(weight.bf16)
        XCTAssertEqual(weight.streamedByteCount, 64 * 4)
    }

    /// The shipped draft model (BF16 storage) streams every matrix as BF16, and its logits do not move by a bit.
    func testTheShippedDraftModelStreamsBF16WithBitwiseTheSameLogits() throws {
        let directory = URL(fileURLWithPath: "models/specserve-code-draft")
        let plain = try LlamaModel.load(directory: directory), half = try LlamaModel.load(directory: directory)
        XCTAssertTrue(half.streamMatricesAsBF16())
        let tokens = [12, 400, 7, 3000, 55, 81, 9, 1000]
        func logits(_ model: LlamaModel) -> [Float] {
            let cache = model.makeCache(capacity: 16)
            _ = model.forward(tokens.prefix(5).enumerated().map { Row(token: $1, position: $0, cache: cache, isPrompt: true) })
            cache.append(5)
            // A 3-row verify chain after the prompt.
            return model.forward((5..<8).map { Row(token: tokens[$0], position: $0, cache: cache) }).logits.array
        }
        XCTAssertEqual(logits(half), logits(plain))
    }
}

final class WorkerPoolTests: XCTestCase {
    func testCallersOnSeveralThreadsTakeTurnsWithoutMixingTheirJobs() {
        let pool = WorkerPool(threadCount: 2)
        let n = 64, k = 96
        let weight = Tensor(shape: [n, k], values: randomVector(n * k, seed: 1))
        let a = randomVector(3 * k, seed: 2)
        let product: @Sendable () -> [Float] = {
            var c = [Float](repeating: 0, count: 3 * n)
            a.withUnsafeBufferPointer { ap in c.withUnsafeMutableBufferPointer { matmul(ap.baseAddress!, rows: 3, weight: weight, into: $0.baseAddress!, pool: pool) } }
            return c
        }
        let expected = product()
        let mismatches = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            for _ in 0..<200 where product() != expected { mismatches.add(1, ordering: .relaxed) }
        }
        XCTAssertEqual(mismatches.load(ordering: .relaxed), 0)
    }

    func testChunkIsTheShareParallelForGivesEachThread() {
        for threads in 1...4 {
            let pool = WorkerPool(threadCount: threads)
            for (count, alignment) in [(0, 16), (7, 16), (16, 16), (33, 16), (640, 16), (8192, 16), (100, 1), (5, 64), (1024, 64)] {
                let seen = Mutex<[Int: Range<Int>]>([:])
                pool.parallelFor(count, alignment: alignment) { range in
                    let index = (0..<threads).first { pool.chunk($0, of: count, alignment: alignment) == range }
                    seen.withLock { $0[index ?? -1] = range }
                }
                let expected = Dictionary(uniqueKeysWithValues: (0..<threads).compactMap { i in
                    pool.chunk(i, of: count, alignment: alignment).map { (i, $0) }
                })
                XCTAssertEqual(seen.withLock { $0 }, expected, "threads \(threads) count \(count) alignment \(alignment)")
                XCTAssertEqual(expected.values.map(\.count).reduce(0, +), count)
            }
        }
    }

    func testReadingAheadIntoTheNextWeightChangesNoProduct() {
        // The hint only prefetches; products with and without it, F32 and BF16 next weights, any row count.
        let pool = WorkerPool(threadCount: 2)
        let n = 96, k = 160
        let weight = Tensor(shape: [n, k], values: randomVector(n * k, seed: 5))
        let next = Tensor(shape: [200, k], values: randomVector(200 * k, seed: 6).map { Float(bitPattern: $0.bitPattern & 0xFFFF_0000) })
        let nextHalf = Tensor(shape: [200, k], values: next.array)
        XCTAssertTrue(nextHalf.keepBF16Copy())
        for m in [1, 5, 7, 12] {
            let a = randomVector(m * k, seed: UInt64(m))
            func product(_ next: Tensor?) -> [Float] {
                var c = [Float](repeating: .nan, count: m * n)
                a.withUnsafeBufferPointer { ap in
                    c.withUnsafeMutableBufferPointer {
                        matmul(ap.baseAddress!, rows: m, weight: weight, into: $0.baseAddress!, pool: pool, next: next)
                    }
                }
                return c
            }
            let plain = product(nil)
            XCTAssertEqual(product(next), plain, "m=\(m)")
            XCTAssertEqual(product(nextHalf), plain, "m=\(m) BF16")
        }
    }

    func testAnIdleRegionCoversItsBytesOnceAndThenStops() {
        let bytes = UnsafeMutableRawPointer.allocate(byteCount: 5000, alignment: 64)
        defer { bytes.deallocate() }
        var region = IdleRegion(bytes, byteCount: 5000)
        var calls = 0
        while region.prefetchSome() { calls += 1 }
        XCTAssertEqual(calls, (5000 + 511) / 512)  // 8 lines a call
        XCTAssertFalse(region.prefetchSome())
        var empty = IdleRegion()
        XCTAssertFalse(empty.prefetchSome())
    }

    func testTheShareOfTheNextWeightIsWhatThatThreadWillStream() {
        let pool = WorkerPool(threadCount: 2)
        let weight = Tensor(shape: [640, 384], values: [Float](repeating: 1, count: 640 * 384))
        let share = streamingShare(of: weight, thread: 1, pool: pool)
        let rows = pool.chunk(1, of: 640, alignment: 16)!
        XCTAssertEqual(share.next, UnsafeRawPointer(weight.data + rows.lowerBound * 384))
        XCTAssertEqual(share.end! - share.next!, min(idlePrefetchBytes, rows.count * 384 * 4))
        XCTAssertTrue(weight.keepBF16Copy())
        let half = streamingShare(of: weight, thread: 1, pool: pool)
        XCTAssertEqual(half.next, UnsafeRawPointer(weight.bf16! + rows.lowerBound * 384))
        XCTAssertEqual(half.end! - half.next!, min(idlePrefetchBytes, rows.count * 384 * 2))
    }

    func testSharedTailsGiveEveryIndexToExactlyOneCall() {
        for threads in 1...4 {
            let pool = WorkerPool(threadCount: threads)
            for (count, alignment, percent) in [(640, 16, 6), (640, 16, 50), (8192, 16, 6), (1000, 16, 100), (33, 16, 6),
                                                (16, 16, 50), (7, 1, 40), (0, 16, 6), (384, 16, 0)] {
                for _ in 0..<20 {
                    let hits = Mutex<[Int]>([Int](repeating: 0, count: count))
                    let calls = Mutex<[Range<Int>]>([])
                    pool.parallelForSharingTails(count, alignment: alignment, tailPercent: percent) { range in
                        calls.withLock { $0.append(range) }
                        hits.withLock { for i in range { $0[i] += 1 } }
                    }
                    XCTAssertEqual(hits.withLock { $0 }, [Int](repeating: 1, count: count),
                                   "threads \(threads) count \(count) alignment \(alignment) tail \(percent) %")
                    // Pieces start on the alignment, so the kernels' 16-output tiles stay whole.
                    XCTAssertTrue(calls.withLock { $0 }.allSatisfy { $0.lowerBound % alignment == 0 })
                }
            }
        }
    }

    func testAThreadDoneEarlyTakesTheOtherThreadsTailPieces() {
        // Share 1's owner is held up in its first call; meanwhile the other thread must take share 1's tail.
        let pool = WorkerPool(threadCount: 2)
        let count = 640, alignment = 16
        let share0 = pool.chunk(0, of: count, alignment: alignment)!, share1 = pool.chunk(1, of: count, alignment: alignment)!
        let calls = Mutex<[(range: Range<Int>, thread: pthread_t)]>([])
        pool.parallelForSharingTails(count, alignment: alignment, tailPercent: 50) { range in
            if range.lowerBound == share1.lowerBound { usleep(50_000) }
            calls.withLock { $0.append((range, pthread_self())) }
        }
        let all = calls.withLock { $0 }
        let ownerOf0 = all.first { $0.range.lowerBound == share0.lowerBound }!.thread
        let ownerOf1 = all.first { $0.range.lowerBound == share1.lowerBound }!.thread
        XCTAssertNotEqual(ownerOf0, ownerOf1)
        let tailOf1 = all.filter { share1.contains($0.range.lowerBound) && $0.range.lowerBound != share1.lowerBound }
        XCTAssertFalse(tailOf1.isEmpty)
        XCTAssertTrue(tailOf1.allSatisfy { $0.thread == ownerOf0 }, "the waiting thread left share 1's tail to its owner")
    }
}
