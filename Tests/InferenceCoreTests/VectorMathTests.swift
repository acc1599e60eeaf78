import Foundation
import XCTest
@testable import InferenceCore

final class VectorMathTests: XCTestCase {
    func testVectorExpMatchesTheLibraryExpToAFewUlps() {
        var worst = 0.0
        var x: Float = -87
        while x < 87.5 {  // the clamp at 88 keeps e^x finite; above it values saturate
            var v = SIMD16<Float>()
            for i in 0..<16 { v[i] = x + Float(i) * 0.0137 }
            let e = exp16(v)
            for i in 0..<16 {
                let expected = exp(Double(v[i]))
                worst = max(worst, abs(Double(e[i]) - expected) / expected)
            }
            x += 0.21
        }
        XCTAssertLessThan(worst, 5e-7)
    }

    func testExpInPlaceHandlesTailsAndSwiGLUMatchesTheClosedForm() {
        var values: [Float] = (0..<37).map { Float($0) * 0.5 - 9 }
        let reference = values.map { exp(Double($0)) }
        values.withUnsafeMutableBufferPointer { expInPlace($0.baseAddress!, $0.count) }
        for (got, want) in zip(values, reference) { XCTAssertEqual(Double(got), want, accuracy: want * 1e-6) }

        var gate: [Float] = (0..<21).map { Float($0) - 10 }
        let up: [Float] = (0..<21).map { Float($0) * 0.1 }
        let expected = zip(gate, up).map { Double($0) / (1 + exp(-Double($0))) * Double($1) }
        gate.withUnsafeMutableBufferPointer { swiGLU(gate: $0.baseAddress!, up: up, count: 21) }
        for (got, want) in zip(gate, expected) { XCTAssertEqual(Double(got), want, accuracy: 1e-5) }
    }
}
