import XCTest
@testable import InferenceCore

final class SamplingTests: XCTestCase {
    let logits: [Float] = [1.0, 3.0, 2.0, 0.5, 3.0, -1.0]

    /// The vectorised argmax against one scalar pass keeping the first maximum: lengths around the 16-lane
    /// blocks, ties (the first wins), -inf and NaN entries.
    func testArgmaxIsTheFirstMaximumLikeTheScalarPass() {
        func naive(_ x: [Float]) -> Int {
            var best = 0, value = -Float.infinity
            for i in x.indices where x[i] > value { best = i; value = x[i] }
            return best
        }
        var rng = SeededGenerator(seed: 7)
        for n in [0, 1, 5, 15, 16, 17, 31, 32, 33, 100, 2048, 8192] {
            for trial in 0..<20 {
                // Few distinct values so ties are common.
                var x = (0..<n).map { _ in Float(Int.random(in: -3...3, using: &rng)) }
                if trial % 4 == 1 { for i in x.indices where Int.random(in: 0..<5, using: &rng) == 0 { x[i] = -.infinity } }
                if trial % 4 == 2 { for i in x.indices where Int.random(in: 0..<5, using: &rng) == 0 { x[i] = .nan } }
                if trial % 4 == 3 { x = x.map { _ in Int.random(in: 0..<3, using: &rng) == 0 ? .nan : -.infinity } }
                XCTAssertEqual(argmax(x), naive(x), "n \(n) trial \(trial)")
            }
        }
    }

    func testGreedyPicksTheFirstMaximum() {
        XCTAssertEqual(argmax(logits), 1)
        XCTAssertEqual(distribution(logits, .greedy), [0, 1, 0, 0, 0, 0])
    }

    func testTemperatureSoftmax() {
        let p = distribution(logits, SamplingParameters(temperature: 2))
        let e = logits.map { exp(Double($0) / 2) }
        let z = e.reduce(0, +)
        for i in logits.indices { XCTAssertEqual(Double(p[i]), e[i] / z, accuracy: 1e-6) }
    }

    func testTopKKeepsTheKMostLikely() {
        let p = distribution(logits, SamplingParameters(temperature: 1, topK: 3))
        XCTAssertEqual(p.indices.filter { p[$0] > 0 }, [1, 2, 4])
        XCTAssertEqual(p.reduce(0, +), 1, accuracy: 1e-6)
    }

    func testTopPKeepsTheSmallestSetReachingTheMass() {
        // softmax: tokens 1 and 4 hold 0.384 each, token 2 0.141: p = 0.8 needs three tokens, p = 0.5 two.
        let p = distribution(logits, SamplingParameters(temperature: 1, topP: 0.8))
        XCTAssertEqual(p.indices.filter { p[$0] > 0 }, [1, 2, 4])
        let q = distribution(logits, SamplingParameters(temperature: 1, topP: 0.5))
        XCTAssertEqual(q.indices.filter { q[$0] > 0 }, [1, 4])
    }

    func testMinPDropsTokensBelowAFractionOfTheTop() {
        let p = distribution(logits, SamplingParameters(temperature: 1, minP: 0.3))
        // exp(2-3) = 0.37 ≥ 0.3, exp(1-3) = 0.14 < 0.3.
        XCTAssertEqual(p.indices.filter { p[$0] > 0 }, [1, 2, 4])
    }

    func testASeedMakesSamplingReproducible() {
        let params = SamplingParameters(temperature: 1, seed: 42)
        var a = Sampler(params), b = Sampler(params)
        let draws = logits.withUnsafeBufferPointer { l in (0..<50).map { _ in (a.next(l), b.next(l)) } }
        XCTAssertTrue(draws.allSatisfy { $0.0 == $0.1 })
        var c = Sampler(SamplingParameters(temperature: 1, seed: 43))
        let other = logits.withUnsafeBufferPointer { l in (0..<50).map { _ in c.next(l) } }
        XCTAssertNotEqual(draws.map(\.0), other)
    }

    func testSampleFrequenciesFollowTheDistribution() {
        // Chi-square goodness of fit over 60 000 draws, 5 degrees of freedom: 20.5 is the p = 0.001 point.
        let probs = distribution(logits, SamplingParameters(temperature: 1))
        var rng = SeededGenerator(seed: 7)
        var counts = [Int](repeating: 0, count: probs.count)
        let n = 60_000
        for _ in 0..<n { counts[sample(probs, using: &rng)] += 1 }
        let chi2 = probs.indices.reduce(0.0) { acc, i in
            let expected = Double(probs[i]) * Double(n)
            return acc + (Double(counts[i]) - expected) * (Double(counts[i]) - expected) / expected
        }
        XCTAssertLessThan(chi2, 20.5)
    }
}
