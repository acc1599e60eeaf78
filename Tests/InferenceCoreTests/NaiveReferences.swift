import Foundation
@testable import InferenceCore

// The slow references the fast kernels are checked against: written for clarity, accumulated in Double.

/// C[M, N] = A[M, K] · W[N, K]ᵀ.
func naiveMatmul(_ a: [Float], rows m: Int, weight w: [Float], outputs n: Int, inner k: Int) -> [Float] {
    var c = [Float](repeating: 0, count: m * n)
    for i in 0..<m {
        for j in 0..<n {
            var s: Double = 0
            for p in 0..<k { s += Double(a[i * k + p]) * Double(w[j * k + p]) }
            c[i * n + j] = Float(s)
        }
    }
    return c
}

/// Full attention for one query head: scores over `keys`, softmax, weighted sum of `values`.
func naiveAttention(query: [Float], keys: [[Float]], values: [[Float]]) -> [Float] {
    let d = query.count
    let scale = 1 / Double(d).squareRoot()
    let scores = keys.map { k in zip(query, k).reduce(0.0) { $0 + Double($1.0) * Double($1.1) } * scale }
    let maxScore = scores.max()!
    let weights = scores.map { exp($0 - maxScore) }
    let total = weights.reduce(0, +)
    var out = [Double](repeating: 0, count: d)
    for (w, v) in zip(weights, values) { for i in 0..<d { out[i] += w / total * Double(v[i]) } }
    return out.map { Float($0) }
}

/// A deterministic pseudo-random vector in [-scale, scale).
func randomVector(_ n: Int, seed: UInt64, scale: Float = 1) -> [Float] {
    var rng = SeededGenerator(seed: seed)
    return (0..<n).map { _ in Float(rng.nextUniform() * 2 - 1) * scale }
}

func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}
