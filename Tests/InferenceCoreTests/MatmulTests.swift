import XCTest
import Foundation
import Synchronization
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
        // K and N that are not multiples of the vector width or the 4- and 2-output tiles exercise every tail;
        // M from 1 to 25 covers every kernel (4-row tiles up to 6 rows, 2-row tiles beyond) and 1–3 row blocks.
        for (m, n, k) in [(1, 64, 384), (3, 37, 53), (5, 130, 1024), (6, 22, 384), (8, 37, 53), (12, 18, 1024),
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

    func testStreamingResultDoesNotDependOnTheThreadCount() {
        let n = 96, k = 384, m = 5
        let weight = Tensor(shape: [n, k], values: randomVector(n * k, seed: 5))
        let a = randomVector(m * k, seed: 6)
        let one = run(a, rows: m, weight: weight, path: .streaming, pool: WorkerPool(threadCount: 1))
        let three = run(a, rows: m, weight: weight, path: .streaming, pool: WorkerPool(threadCount: 3))
        XCTAssertEqual(one, three)
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
}
