// RMSNorm as in HF LlamaRMSNorm: y = w ⊙ x / sqrt(mean(x²) + ε), computed in F32.
// Each row is normalised on its own, in a fixed order: the result never depends on the batch.

/// Normalises `rows` rows of length `dim` from `x` into `y` (which may equal `x`).
public func rmsNorm(
    _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, epsilon: Float, rows: Int, dim: Int,
    into y: UnsafeMutablePointer<Float>
) {
    for r in 0..<rows {
        let xr = x + r * dim, yr = y + r * dim
        var sum: Float = 0
        for i in 0..<dim { sum += xr[i] * xr[i] }
        let scale = 1 / (sum / Float(dim) + epsilon).squareRoot()
        for i in 0..<dim { yr[i] = weight[i] * (xr[i] * scale) }
    }
}
