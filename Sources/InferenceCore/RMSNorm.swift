// RMSNorm as in HF LlamaRMSNorm: y = w ⊙ x / sqrt(mean(x²) + ε), computed in F32.
// Each row is normalised on its own, in a fixed order: the result never depends on the batch.

/// Normalises `rows` rows of length `dim` from `x` into `y` (which may equal `x`).
public func rmsNorm(
    _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, epsilon: Float, rows: Int, dim: Int,
    into y: UnsafeMutablePointer<Float>
) {
    for r in 0..<rows {
        let xr = x + r * dim, yr = y + r * dim
        // Σ x² in 16 lanes (one fixed order: lane-wise over whole vectors, a horizontal sum, then the tail).
        var lanes = SIMD16<Float>()
        var i = 0
        while i + 16 <= dim {
            let v = UnsafeRawPointer(xr + i).loadUnaligned(as: SIMD16<Float>.self)
            lanes = lanes.addingProduct(v, v)
            i += 16
        }
        var sum = horizontalSum(lanes)
        while i < dim { sum = sum.addingProduct(xr[i], xr[i]); i += 1 }
        let scale = 1 / (sum / Float(dim) + epsilon).squareRoot()
        for i in 0..<dim { yr[i] = weight[i] * (xr[i] * scale) }
    }
}
