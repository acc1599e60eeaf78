import Foundation

// The LLaMA MLP activation: h = SiLU(gate) ⊙ up, with SiLU(x) = x · σ(x) = x / (1 + e^(−x)).

/// Overwrites `gate` with SiLU(gate) ⊙ up, element by element, over `count` floats.
public func swiGLU(gate: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>, count: Int) {
    for i in 0..<count {
        let g = gate[i]
        gate[i] = g / (1 + expf(-g)) * up[i]
    }
}
