import Foundation
import InferenceCore
import SpeculativeDecoding

// POST /v1/benchmark: the race of DESIGN §7, the same SpeculativeBenchmark as `specserve bench`, on a served model
// with the costs measured at start-up. It needs the model to itself (timings would be meaningless beside other
// requests): it answers 409 while requests are in flight on that model, and while it runs, completions for that
// model are answered 503 with Retry-After. It runs on the connection's thread; the response comes when it is done.

struct BenchmarkRequest: Equatable {
    var model: String
    var methods: [SpeculativeMethod]?
    var maxTokens = 128
    var repeats = 3
    var temperature: Float = 0
    var numTokens: Int?
    var syntheticAcceptance: Double?
    var prompts: [String]?

    static func decode(_ body: [UInt8]) throws(APIError) -> BenchmarkRequest {
        let json = try parseBody(body)
        do {
            let r = try JSONObjectReader(json, at: "", keys: ["model", "methods", "max_tokens", "repeats", "temperature", "num_tokens",
                                                              "synthetic_acceptance", "prompts"], nullIsAbsent: true)
            var q = BenchmarkRequest(model: try r.required("model") { (v, p) throws(JSONFieldError) in try v.string(at: p) })
            q.methods = try r.optional("methods") { (v, p) throws(JSONFieldError) in
                try v.array(at: p).enumerated().map { (i, item) throws(JSONFieldError) in
                    let name = try item.string(at: "\(p)[\(i)]")
                    guard let m = SpeculativeMethod(rawValue: name) else {
                        throw JSONFieldError(path: "\(p)[\(i)]", message: "'\(name)' is not one of "
                                             + SpeculativeMethod.allCases.map(\.rawValue).joined(separator: ", "))
                    }
                    return m
                }
            }
            q.maxTokens = try r.int("max_tokens", default: q.maxTokens, in: 1...4096)
            q.repeats = try r.int("repeats", default: q.repeats, in: 1...20)
            q.temperature = Float(try r.double("temperature", default: 0, in: 0...2))
            if r.has("num_tokens") { q.numTokens = try r.int("num_tokens", default: 5, in: 1...16) }
            if r.has("synthetic_acceptance") { q.syntheticAcceptance = try r.double("synthetic_acceptance", default: 0, in: 0...1) }
            q.prompts = try r.optional("prompts") { (v, p) throws(JSONFieldError) in
                let items = try v.array(at: p)
                guard !items.isEmpty && items.count <= 256 else { throw JSONFieldError(path: p, message: "must hold 1 to 256 prompts") }
                return try items.enumerated().map { (i, item) throws(JSONFieldError) in try item.string(at: "\(p)[\(i)]") }
            }
            return q
        } catch {
            throw APIError(error)
        }
    }
}

extension APIRouter {
    func benchmark(_ body: [UInt8], _ models: [ServedModel], _ writer: ResponseWriter, _ record: inout AccessRecord) throws(APIError) {
        let q = try BenchmarkRequest.decode(body)
        let model = try lookup(q.model, in: models, &record)
        let family = model.family
        let methods = q.methods ?? family.methods
        if q.syntheticAcceptance == nil {
            for (i, m) in methods.enumerated() where !family.methods.contains(m) {
                throw APIError.badRequest("method '\(m.rawValue)' is not available for model '\(model.id)' (available: "
                                          + family.methods.map(\.rawValue).joined(separator: ", ") + ")", param: "methods[\(i)]")
            }
        }
        let texts = q.prompts ?? options.benchmarkPrompts
        guard !texts.isEmpty else { throw APIError.badRequest("no prompts: send \"prompts\" (no default prompt set is configured)", param: "prompts") }
        var prompts: [[Int]] = []
        for (i, text) in texts.enumerated() {
            let tokens = model.tokenizer.encode(text)
            guard !tokens.isEmpty, tokens.count + q.maxTokens <= model.contextLimit else {
                throw APIError.badRequest("prompt \(i) has \(tokens.count) tokens; with max_tokens \(q.maxTokens) it must fit the context of "
                                          + "\(model.contextLimit)", param: q.prompts == nil ? "max_tokens" : "prompts[\(i)]")
            }
            prompts.append(tokens)
        }

        var options = BenchmarkOptions()
        options.maxTokens = q.maxTokens
        options.repeats = q.repeats
        options.sampling = SamplingParameters(temperature: q.temperature)
        options.numDraft = q.numTokens ?? model.speculation.numTokens
        options.syntheticAcceptance = q.syntheticAcceptance
        options.adaptive = model.speculation.adaptive && q.syntheticAcceptance == nil
        options.autoDisable = model.speculation.autoDisable.enabled && q.syntheticAcceptance == nil
        options.breakEven = model.speculation.autoDisable.breakEven
        options.warmupSteps = model.speculation.autoDisable.warmupSteps
        options.retryAfter = model.speculation.autoDisable.retryAfter
        let tree = model.engine.medusaTree
        var contenders: [SpeculativeBenchmark.Contender] = []
        if q.syntheticAcceptance != nil {
            contenders = [.init(name: "synthetic", cost: model.costs[.none] ?? .free) { nil }]
        } else {
            for m in methods where m != .none {
                // Each method at the length it serves with, unless the request races them all at one.
                contenders.append(.init(name: m.rawValue, cost: model.costs[m] ?? .free,
                                        numDraft: q.numTokens ?? model.speculation.numTokens(for: m)) {
                    try? family.makeDrafter(m, medusaTree: tree)
                })
            }
        }

        guard model.gate.enterExclusive() else {
            throw APIError(.init(code: 409), "model '\(model.id)' is busy (\(model.gate.inFlight) requests in flight, or another benchmark); "
                           + "the benchmark needs it to itself — retry when it is idle", type: "conflict_error")
        }
        defer { model.gate.leaveExclusive() }
        let log = self.options.log
        log?("benchmark on \(model.id): \(([SpeculativeMethod.none.rawValue] + contenders.map(\.name)).joined(separator: ", ")), "
             + "\(prompts.count) prompts × \(q.repeats) repeats, max_tokens \(q.maxTokens)")
        let report = SpeculativeBenchmark(target: family.target, stopTokens: family.stopTokens, drafters: contenders)
            .run(prompts: prompts, options: options) { log?("benchmark: " + $0) }
        writer.send(.json(.ok, encodeJSON(report)))
    }
}
