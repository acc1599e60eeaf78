import Foundation

// Token selection from logits: greedy, or sampling with temperature, top-k, top-p and min-p, reproducible
// under a seed. Speculative rejection sampling needs the whole filtered distribution, so the filters build an
// explicit probability vector (`distribution`) and `sample` draws from any such vector.
//
// Filter order (as in HF transformers' logits processors): temperature → top-k → top-p → min-p, each on the
// distribution left by the previous one, then renormalised.

public struct SamplingParameters: Sendable, Equatable, Codable {
    /// 0 means greedy (argmax).
    public var temperature: Float
    /// Keep the k most likely tokens; 0 disables.
    public var topK: Int
    /// Keep the smallest set of most likely tokens whose mass reaches p; 1 disables.
    public var topP: Float
    /// Drop tokens with probability below minP × the top probability; 0 disables.
    public var minP: Float
    /// Makes sampling reproducible; nil draws a seed from the system generator.
    public var seed: UInt64?

    public init(temperature: Float = 0, topK: Int = 0, topP: Float = 1, minP: Float = 0, seed: UInt64? = nil) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.seed = seed
    }

    public static let greedy = SamplingParameters()
    public var isGreedy: Bool { temperature <= 0 }
}

/// xoshiro256** seeded through SplitMix64: fast, small state, and the same stream on every platform.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var x = seed
        func splitMix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitMix(), splitMix(), splitMix(), splitMix())
    }

    public mutating func next() -> UInt64 {
        let result = rotl(s.1 &* 5, 7) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = rotl(s.3, 45)
        return result
    }

    /// A uniform double in [0, 1) from the top 53 bits.
    public mutating func nextUniform() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
}

/// Index of the largest logit; the lowest index wins a tie (so greedy decoding is deterministic).
public func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int {
    // The largest value (`largest`), then the first index holding it: the same answer as one scalar pass keeping
    // the first maximum, in a fraction of the time (every verify row and every drafted token takes an argmax).
    guard let base = logits.baseAddress else { return 0 }
    let n = logits.count
    let best = largest(base, n)
    guard best > -.infinity else { return 0 }  // nothing above -inf (all -inf or NaN): the scalar pass keeps 0
    for j in 0..<n where base[j] == best { return j }
    return 0
}

public func argmax(_ logits: [Float]) -> Int { logits.withUnsafeBufferPointer { argmax($0) } }

/// The probability vector sampling draws from: softmax(logits / T), then top-k, top-p and min-p, renormalised.
/// For T = 0 it is one-hot on the argmax.
public func distribution(_ logits: UnsafeBufferPointer<Float>, _ p: SamplingParameters) -> [Float] {
    var probs = [Float](repeating: 0, count: logits.count)
    if p.isGreedy {
        probs[argmax(logits)] = 1
        return probs
    }
    var maxLogit = -Float.infinity
    for l in logits { maxLogit = max(maxLogit, l) }
    var sum: Double = 0
    for i in 0..<logits.count {
        let e = expf((logits[i] - maxLogit) / p.temperature)
        probs[i] = e
        sum += Double(e)
    }
    let inv = Float(1 / sum)
    for i in 0..<probs.count { probs[i] *= inv }

    let filterTopK = p.topK > 0 && p.topK < probs.count
    let filterTopP = p.topP < 1
    if filterTopK || filterTopP {
        // Most likely first; ties broken by index so the kept set is deterministic.
        let order = probs.indices.sorted { probs[$0] != probs[$1] ? probs[$0] > probs[$1] : $0 < $1 }
        var keep = filterTopK ? p.topK : probs.count
        if filterTopP {
            var mass: Float = 0
            var n = 0
            while n < keep {
                mass += probs[order[n]]
                n += 1
                if mass >= p.topP { break }
            }
            keep = max(1, n)
        }
        for i in order[keep...] { probs[i] = 0 }
    }
    if p.minP > 0 {
        let threshold = p.minP * (probs.max() ?? 0)
        for i in 0..<probs.count where probs[i] < threshold { probs[i] = 0 }
    }
    normalise(&probs)
    return probs
}

public func distribution(_ logits: [Float], _ p: SamplingParameters) -> [Float] {
    logits.withUnsafeBufferPointer { distribution($0, p) }
}

/// Scales a non-negative vector to sum to 1.
public func normalise(_ probs: inout [Float]) {
    var sum: Double = 0
    for v in probs { sum += Double(v) }
    guard sum > 0 else { return }
    let inv = Float(1 / sum)
    for i in 0..<probs.count { probs[i] *= inv }
}

/// Draws an index from a probability vector by inverting its cumulative sum.
public func sample<G: RandomNumberGenerator>(_ probs: [Float], using rng: inout G) -> Int {
    let u = Double(rng.next() >> 11) * 0x1.0p-53
    var cumulative: Double = 0
    var last = 0
    for (i, v) in probs.enumerated() where v > 0 {
        cumulative += Double(v)
        last = i
        if u < cumulative { return i }
    }
    return last
}

/// Picks tokens for one request: greedy, or seeded sampling through `distribution`.
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    public var rng: SeededGenerator

    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        rng = SeededGenerator(seed: parameters.seed ?? UInt64.random(in: .min ... .max))
    }

    public mutating func next(_ logits: UnsafeBufferPointer<Float>) -> Int {
        parameters.isGreedy ? argmax(logits) : sample(distribution(logits, parameters), using: &rng)
    }
}
