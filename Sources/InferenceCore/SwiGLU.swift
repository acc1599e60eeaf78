// The LLaMA MLP activation: h = SiLU(gate) ⊙ up, with SiLU(x) = x · σ(x) = x / (1 + e^(−x)).

/// Overwrites `gate` with SiLU(gate) ⊙ up, element by element, over `count` floats.
public func swiGLU(gate: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>, count: Int) {
    var i = 0
    let one = SIMD16<Float>(repeating: 1)
    while i + 16 <= count {
        let g = UnsafeRawPointer(gate + i).loadUnaligned(as: SIMD16<Float>.self)
        let u = UnsafeRawPointer(up + i).loadUnaligned(as: SIMD16<Float>.self)
        let h = g / (one + exp16(-g)) * u
        UnsafeMutableRawPointer(gate + i).storeBytes(of: h, as: SIMD16<Float>.self)
        i += 16
    }
    while i < count {
        var v = SIMD16<Float>(repeating: 0)
        v[0] = -gate[i]
        gate[i] = gate[i] / (1 + exp16(v)[0]) * up[i]
        i += 1
    }
}
