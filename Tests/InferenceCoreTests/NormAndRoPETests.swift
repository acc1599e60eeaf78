import XCTest
@testable import InferenceCore

final class RMSNormTests: XCTestCase {
    func testMatchesTheClosedForm() {
        let dim = 48, rows = 3
        let x = randomVector(rows * dim, seed: 1, scale: 3)
        let w = randomVector(dim, seed: 2)
        var y = [Float](repeating: 0, count: rows * dim)
        rmsNorm(x, weight: w, epsilon: 1e-5, rows: rows, dim: dim, into: &y)
        for r in 0..<rows {
            let xr = x[r * dim..<(r + 1) * dim].map(Double.init)
            let rms = (xr.reduce(0) { $0 + $1 * $1 } / Double(dim) + 1e-5).squareRoot()
            for i in 0..<dim {
                XCTAssertEqual(Double(y[r * dim + i]), Double(w[i]) * xr[i] / rms, accuracy: 1e-5)
            }
        }
    }
}

final class RotaryEmbeddingTests: XCTestCase {
    func testRotateHalfMatchesTheClosedForm() {
        let d = 64, heads = 3, base = 10000.0
        let rope = RotaryEmbedding(headDim: d, base: base, maxPositions: 600)
        for position in [0, 1, 17, 511] {
            let x = randomVector(heads * d, seed: UInt64(position))
            var y = x
            y.withUnsafeMutableBufferPointer { rope.apply($0.baseAddress!, heads: heads, position: position) }
            for h in 0..<heads {
                for i in 0..<d / 2 {
                    let theta = Double(position) * pow(base, -Double(2 * i) / Double(d))
                    let x1 = Double(x[h * d + i]), x2 = Double(x[h * d + i + d / 2])
                    XCTAssertEqual(Double(y[h * d + i]), x1 * cos(theta) - x2 * sin(theta), accuracy: 2e-4)
                    XCTAssertEqual(Double(y[h * d + i + d / 2]), x2 * cos(theta) + x1 * sin(theta), accuracy: 2e-4)
                }
            }
        }
    }

    func testPositionZeroIsTheIdentity() {
        let rope = RotaryEmbedding(headDim: 16, base: 500000, maxPositions: 4)
        let x = randomVector(32, seed: 9)
        var y = x
        y.withUnsafeMutableBufferPointer { rope.apply($0.baseAddress!, heads: 2, position: 0) }
        XCTAssertEqual(x, y)
    }
}
