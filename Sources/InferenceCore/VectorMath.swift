// Vectorised math for the kernels: e^x over 16 lanes, and the largest of n floats.
//
// Range reduction x = n·ln2 + r with |r| ≤ ln2/2 (ln2 split in two parts so r stays exact), e^r by a degree-6
// Taylor/Horner polynomial (relative error < 2e-7 on the reduced range), then 2^n through the exponent bits.
// Inputs are clamped to the range where F32 e^x is finite and normal, which is all the kernels need: softmax
// arguments are ≤ 0 and SiLU's are bounded by the activations.

@inline(__always)
func exp16(_ x: SIMD16<Float>) -> SIMD16<Float> {
    let lo = SIMD16<Float>(repeating: -87.0), hi = SIMD16<Float>(repeating: 88.0)
    let clamped = x.replacing(with: lo, where: x .< lo).replacing(with: hi, where: x .> hi)
    // n = round(x·log2e) by the magic-number trick: adding 1.5·2²³ leaves the rounded integer in the low
    // mantissa bits, so n comes out as a float and as an integer without a lane-by-lane conversion.
    let magic = SIMD16<Float>(repeating: 12_582_912)
    let t = clamped * 1.442_695_04 + magic
    let n = t - magic
    let nInt = unsafeBitCast(t, to: SIMD16<Int32>.self) &- unsafeBitCast(magic, to: SIMD16<Int32>.self)
    // r = x − n·ln2, with ln2 = 0.693145751953125 + 1.428606765330187e-06
    var r = clamped.addingProduct(n, SIMD16(repeating: -0.693_145_751_953_125))
    r = r.addingProduct(n, SIMD16(repeating: -1.428_606_765_330_187e-06))
    var p = SIMD16<Float>(repeating: 1.0 / 720)
    p = (p * r) + SIMD16(repeating: 1.0 / 120)
    p = (p * r) + SIMD16(repeating: 1.0 / 24)
    p = (p * r) + SIMD16(repeating: 1.0 / 6)
    p = (p * r) + SIMD16(repeating: 0.5)
    p = (p * r) + SIMD16(repeating: 1)
    p = (p * r) + SIMD16(repeating: 1)
    // 2^n: n + 127 in the exponent field.
    let bits = (nInt &+ 127) &<< 23
    return p * unsafeBitCast(bits, to: SIMD16<Float>.self)
}

/// e^x for `count` floats in place (vector body, same polynomial for the tail through a padded vector).
@inline(__always)
func expInPlace(_ x: UnsafeMutablePointer<Float>, _ count: Int) {
    var i = 0
    while i + 16 <= count {
        let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
        UnsafeMutableRawPointer(x + i).storeBytes(of: exp16(v), as: SIMD16<Float>.self)
        i += 16
    }
    if i < count {
        var v = SIMD16<Float>(repeating: 0)
        for j in 0..<(count - i) { v[j] = x[i + j] }
        let e = exp16(v)
        for j in 0..<(count - i) { x[i + j] = e[j] }
    }
}

/// The largest of `n` floats, NaNs skipped (−∞ when there is nothing else): 16-lane compare-and-blend, then halves,
/// quarters, … of the vector in registers (`SIMD16.max()` compiles to a lane-by-lane loop through memory). Max is
/// exact, so the order of the comparisons does not change the result. Attention's tile maximum and `argmax` use it.
@inline(__always)
func largest(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var v = SIMD16<Float>(repeating: -.infinity)
    var i = 0
    while i + 16 <= n {
        let y = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
        v = v.replacing(with: y, where: y .> v)
        i += 16
    }
    let h8 = v.lowHalf.replacing(with: v.highHalf, where: v.highHalf .> v.lowHalf)
    let h4 = h8.lowHalf.replacing(with: h8.highHalf, where: h8.highHalf .> h8.lowHalf)
    let h2 = h4.lowHalf.replacing(with: h4.highHalf, where: h4.highHalf .> h4.lowHalf)
    var m = h2[1] > h2[0] ? h2[1] : h2[0]
    while i < n { if x[i] > m { m = x[i] }; i += 1 }
    return m
}
