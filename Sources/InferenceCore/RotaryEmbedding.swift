import Foundation

// Rotary position embedding in HF's rotate-half layout: for a head vector x of length d and i < d/2,
//   x'[i]       = x[i]·cos(p·θᵢ) − x[i + d/2]·sin(p·θᵢ)
//   x'[i + d/2] = x[i + d/2]·cos(p·θᵢ) + x[i]·sin(p·θᵢ),      θᵢ = base^(−2i/d)
// The angle table is computed once per position, in Double, then rounded to F32.

public struct RotaryEmbedding: Sendable {
    public let headDim: Int
    public let base: Double
    public let maxPositions: Int
    /// `[position][headDim / 2]` cosines and sines.
    private let cosTable: [Float]
    private let sinTable: [Float]

    public init(headDim: Int, base: Double, maxPositions: Int) {
        precondition(headDim % 2 == 0, "RoPE needs an even head dimension")
        self.headDim = headDim
        self.base = base
        self.maxPositions = maxPositions
        let half = headDim / 2
        var c = [Float](repeating: 0, count: maxPositions * half)
        var s = [Float](repeating: 0, count: maxPositions * half)
        for i in 0..<half {
            // HF computes inv_freq in F32: 1 / base^(2i/d); round the same way before multiplying.
            let invFreq = Float(1.0 / pow(base, Double(2 * i) / Double(headDim)))
            for p in 0..<maxPositions {
                let angle = Double(Float(p) * invFreq)
                c[p * half + i] = Float(cos(angle))
                s[p * half + i] = Float(sin(angle))
            }
        }
        cosTable = c
        sinTable = s
    }

    /// Rotates `heads` consecutive head vectors at `x` for `position`, in place.
    public func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, position: Int) {
        precondition(position >= 0 && position < maxPositions, "position \(position) beyond \(maxPositions)")
        let half = headDim / 2
        cosTable.withUnsafeBufferPointer { cb in
            sinTable.withUnsafeBufferPointer { sb in
                let cp = cb.baseAddress! + position * half, sp = sb.baseAddress! + position * half
                for h in 0..<heads {
                    let v = x + h * headDim
                    for i in 0..<half {
                        let x1 = v[i], x2 = v[i + half]
                        v[i] = x1 * cp[i] - x2 * sp[i]
                        v[i + half] = x2 * cp[i] + x1 * sp[i]
                    }
                }
            }
        }
    }
}
