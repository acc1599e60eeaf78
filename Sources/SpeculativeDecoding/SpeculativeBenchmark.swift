import Foundation
import InferenceCore

// The race (DESIGN §7): every method on the same prompts, in one run, against `none` measured in that same run.
// `specserve bench` and `POST /v1/benchmark` both run this. Each figure is a median over repeats; the speedup is
// the median over rounds of the method's tokens/s over `none`'s in the same round; greedy outputs are compared
// token by token with `none`'s.

public struct BenchmarkOptions: Sendable {
    public var maxTokens = 128
    public var repeats = 3
    public var sampling = SamplingParameters.greedy
    public var numDraft = SpeculationSettings.defaultNumDraft
    /// Synthetic mode: instead of a real drafter, propose `numDraft` tokens of which each position is right with
    /// this probability (a wrong token ends the accepted run). Times the verify path apart from draft quality.
    public var syntheticAcceptance: Double?
    public var adaptive = true
    public var autoDisable = true
    /// Auto-off's threshold and warm-up, as in `SpeculationSettings`.
    public var breakEven = SpeculationSettings().breakEven
    public var warmupSteps = SpeculationSettings().warmupSteps
    public var retryAfter = SpeculationSettings().retryAfter

    public init() {}

    /// Chain lengths to race, from a comma-separated list such as `5,8,12` (each in 1...16, no repeats); nil when
    /// the text is not such a list.
    public static func draftLengths(_ text: String) -> [Int]? {
        let items = text.split(separator: ",", omittingEmptySubsequences: false)
        let lengths = items.compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !lengths.isEmpty, lengths.count == items.count, lengths.allSatisfy({ (1...16).contains($0) }),
              Set(lengths).count == lengths.count else { return nil }
        return lengths
    }
}

public struct MethodResult: Sendable, Codable {
    public var method: String
    public var tokensPerSecond: Double
    public var speedup: Double
    public var acceptanceRate: Double
    public var meanAcceptanceLength: Double
    public var draftMsPerStep: Double
    public var verifyMsPerStep: Double
    /// nil when the run sampled (T > 0): only greedy outputs can be compared.
    public var identicalToNone: Bool?
    public var lossless: Bool
    public var autoDisabledRequests: Int
    public var acceptancePerPosition: [Double]
}

public struct BenchmarkReport: Sendable, Codable {
    public var methods: [MethodResult] = []
    public var weightBytes = 0
    public var bandwidthGBs = 0.0
    public var rooflineTokensPerSecond = 0.0
    public var baselineFractionOfRoofline = 0.0
    public var prompts = 0
    public var maxTokens = 0
    public var temperature: Float = 0
    public var synthetic: Double?

    /// The race table as text.
    public var table: String {
        func cell(_ s: String, _ w: Int) -> String { String(repeating: " ", count: max(0, w - s.count)) + s }
        var lines = ["method    " + ["tokens/s", "speedup", "accept", "mean len", "draft ms", "verify ms", "identical"].map { cell($0, 10) }.joined()]
        for m in methods {
            let same = (m.identicalToNone.map { $0 ? "yes" : "NO" } ?? "n/a") + (m.lossless ? "" : " (lossy)")
            let cells = [String(format: "%.1f", m.tokensPerSecond), String(format: "%.2f×", m.speedup),
                         String(format: "%.0f%%", 100 * m.acceptanceRate), String(format: "%.2f", m.meanAcceptanceLength),
                         String(format: "%.2f", m.draftMsPerStep), String(format: "%.2f", m.verifyMsPerStep), same]
            lines.append(m.method.padding(toLength: 10, withPad: " ", startingAt: 0) + cells.map { cell($0, 10) }.joined())
        }
        lines.append(String(format: "roofline: %.1f MB of weights at %.1f GB/s → %.1f tokens/s; none reaches %.0f %% of it",
                            Double(weightBytes) / 1e6, bandwidthGBs, rooflineTokensPerSecond, 100 * baselineFractionOfRoofline))
        return lines.joined(separator: "\n")
    }
}

public struct SpeculativeBenchmark {
    public let target: LlamaModel
    public let stopTokens: Set<Int>
    /// Per method: a fresh drafter for one request (nil for `none`) and the method's measured costs.
    public let drafters: [Contender]

    public struct Contender {
        public var name: String
        public var make: () -> Drafter?
        public var cost: CostModel
        /// This contender's most draft tokens per step (nil: the options' `numDraft`), so one run can race a
        /// method at several lengths.
        public var numDraft: Int?
        public init(name: String, cost: CostModel = .free, numDraft: Int? = nil, make: @escaping () -> Drafter?) {
            self.name = name
            self.make = make
            self.cost = cost
            self.numDraft = numDraft
        }
    }

    public init(target: LlamaModel, stopTokens: Set<Int>, drafters: [Contender]) {
        self.target = target
        self.stopTokens = stopTokens
        self.drafters = drafters
    }

    public func run(prompts: [[Int]], options: BenchmarkOptions, progress: (String) -> Void = { _ in }) -> BenchmarkReport {
        var report = BenchmarkReport()
        report.prompts = prompts.count
        report.maxTokens = options.maxTokens
        report.temperature = options.sampling.temperature
        report.synthetic = options.syntheticAcceptance
        let stream = medianSeconds(repeats: 7) { streamAll(target.streamedWeights, pool: target.pool) }
        report.weightBytes = target.weightBytes
        report.bandwidthGBs = Double(target.weightBytes) / stream / 1e9
        report.rooflineTokensPerSecond = 1 / stream

        // Rounds, not methods, outermost: round r runs every method once over all prompts, so each method's rate in
        // round r is paired with `none`'s from the same minutes and the speedup is the median of those paired
        // ratios (memory bandwidth on a shared machine drifts between minutes). `none` runs first in every round:
        // its round-0 outputs are the reference, and with synthetic drafting also the oracle.
        var reference: [[Int]] = []
        // `none` shares the drafters' decode-step clock (its plain steps keep auto-off's reference current).
        let plainCost = drafters.first { $0.cost.clock != nil }?.cost ?? .free
        let methods = [Contender(name: "none", cost: plainCost) { nil }] + drafters.filter { $0.name != "none" }
        var rates = Array(repeating: [Double](), count: methods.count)
        var stats = Array(repeating: SpeculationStats(), count: methods.count)
        var identical = Array(repeating: true, count: methods.count)
        var autoOff = Array(repeating: 0, count: methods.count)
        for r in 0..<options.repeats {
            for (m, method) in methods.enumerated() {
                var tokens = 0, seconds = 0.0
                for (i, prompt) in prompts.enumerated() {
                    var sampling = options.sampling
                    if sampling.seed == nil && !sampling.isGreedy { sampling.seed = UInt64(i) }
                    let drafter: Drafter?
                    if method.name != "none", let p = options.syntheticAcceptance {
                        drafter = SyntheticDrafter(answer: reference[i], promptCount: prompt.count, acceptance: p, seed: UInt64(r * 1000 + i),
                                                   vocab: target.config.vocabSize)
                    } else {
                        drafter = method.make()
                    }
                    let g = Generation(target: target, prompt: prompt, maxTokens: options.maxTokens, sampling: sampling,
                                       stopTokens: stopTokens, drafter: drafter,
                                       settings: SpeculationSettings(numDraft: method.numDraft ?? options.numDraft, adaptive: options.adaptive,
                                                                     autoDisable: options.autoDisable, breakEven: options.breakEven,
                                                                     warmupSteps: options.warmupSteps, retryAfter: options.retryAfter,
                                                                     costModel: method.cost))
                    g.run()
                    // Decode speed: tokens after the first (which the prompt's forward produces) over decode time.
                    tokens += g.generated.count - 1
                    seconds += g.decodeSeconds + g.stats.draftSeconds
                    if r == 0 { stats[m].add(g.stats) }
                    if r == 0 && g.stats.autoDisabled { autoOff[m] += 1 }
                    if m == 0 && r == 0 { reference.append(Array(g.generated)) }
                    if m != 0 && Array(g.generated) != reference[i] { identical[m] = false }
                }
                rates[m].append(Double(tokens) / max(seconds, 1e-9))
            }
        }
        let baseline = Self.median(rates[0])
        for (m, method) in methods.enumerated() {
            let rate = Self.median(rates[m])
            let speedup = m == 0 ? 1 : Self.pairedSpeedup(rates[m], over: rates[0])
            let steps = Double(max(stats[m].steps, 1))
            let result = MethodResult(
                method: method.name, tokensPerSecond: rate, speedup: speedup,
                acceptanceRate: stats[m].acceptanceRate, meanAcceptanceLength: stats[m].meanAcceptanceLength,
                draftMsPerStep: stats[m].draftSeconds * 1e3 / steps, verifyMsPerStep: stats[m].verifySeconds * 1e3 / steps,
                identicalToNone: options.sampling.isGreedy ? identical[m] : nil,
                lossless: stats[m].lossless, autoDisabledRequests: autoOff[m], acceptancePerPosition: stats[m].acceptancePerPosition)
            report.methods.append(result)
            progress(String(format: "%@: %.1f tokens/s (%.2f× paired), acceptance %.0f %%, mean length %.2f", method.name,
                            rate, speedup, 100 * stats[m].acceptanceRate, stats[m].meanAcceptanceLength))
        }
        report.baselineFractionOfRoofline = baseline / report.rooflineTokensPerSecond
        return report
    }

    static func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

    /// The median over rounds of `rates[r] / baseline[r]`: each round's ratio compares minutes with minutes, so
    /// drift of the machine between rounds cancels (the ratio of the two medians would mix rounds).
    static func pairedSpeedup(_ rates: [Double], over baseline: [Double]) -> Double {
        precondition(rates.count == baseline.count && !rates.isEmpty)
        return median(zip(rates, baseline).map { $0 / $1 })
    }
}

/// Synthetic drafting: proposes the reference continuation with each position kept with probability
/// `acceptance` (a miss puts a wrong token there), at no draft cost.
final class SyntheticDrafter: Drafter {
    let method = SpeculativeMethod.draft
    let answer: [Int], promptCount: Int, acceptance: Double, vocab: Int
    var rng: SeededGenerator

    init(answer: [Int], promptCount: Int, acceptance: Double, seed: UInt64, vocab: Int) {
        self.answer = answer
        self.promptCount = promptCount
        self.acceptance = acceptance
        self.vocab = vocab
        rng = SeededGenerator(seed: seed)
    }

    func start(tokens: [Int], hidden: Tensor) {}
    func commit(tokens: [Int], tree: DraftTree, outcome: AcceptanceOutcome, hidden: [[Float]]) {}

    func propose(tokens: [Int], limit: Int, sampling: SamplingParameters, rng _: inout SeededGenerator) -> DraftTree {
        let done = tokens.count - promptCount
        var chain: [Int] = []
        for i in 0..<limit {
            let j = done + i
            let truth = j < answer.count ? answer[j] : 0
            chain.append(rng.nextUniform() < acceptance ? truth : (truth + 1 + i) % vocab)
        }
        return DraftTree(chain: chain)
    }
}

func medianSeconds(repeats: Int, _ body: () -> Void) -> Double {
    body()
    var times: [Double] = []
    for _ in 0..<repeats {
        let start = monotonicSeconds()
        body()
        times.append(monotonicSeconds() - start)
    }
    return times.sorted()[times.count / 2]
}
