import Foundation
import InferenceCore
import SpeculativeDecoding
import Synchronization

/// One model being served: its family (target, tokenizer, drafters), its engine, and the speculation settings and
/// measured costs requests run with.
///
/// `@unchecked Sendable`: every property is immutable after init. The family's models are only run by the engine
/// thread, or by the benchmark while `gate` holds every request off; connection threads only read the
/// tokenizer (Sendable) and the config.
public final class ServedModel: @unchecked Sendable {
    public let id: String
    public let family: ModelFamily
    public let engine: Engine
    public let speculation: SpeculationConfig
    /// Measured costs per method (verify by rows; one draft step), for auto-off; `.free` when not measured.
    public let costs: [SpeculativeMethod: CostModel]
    /// Most tokens of prompt plus completion.
    public let contextLimit: Int
    /// When it was loaded (unix seconds), for /v1/models.
    public let created = unixTime()
    let gate = WorkGate()

    public init(id: String, family: ModelFamily, engine: Engine, speculation: SpeculationConfig = .init(),
                costs: [SpeculativeMethod: CostModel] = [:], maxContext: Int? = nil) {
        self.id = id
        self.family = family
        self.engine = engine
        self.speculation = speculation
        self.costs = costs
        contextLimit = min(maxContext ?? Int.max, family.target.config.maxPositionEmbeddings)
    }

    public var tokenizer: BPETokenizer { family.tokenizer }
    public var vocabularySize: Int { family.target.config.vocabSize }

    /// The engine parameters for a request: its sampling, its method (or the model's default) and draft length.
    func jobParameters(_ q: CompletionRequest) throws(APIError) -> JobParameters {
        let method = q.speculative?.method ?? speculation.defaultMethod
        guard family.methods.contains(method) else {
            throw APIError.badRequest("speculative method '\(method.rawValue)' is not available for model '\(id)' (available: "
                                      + family.methods.map(\.rawValue).joined(separator: ", ") + ")", param: "speculative.method")
        }
        let settings = SpeculationSettings(numDraft: q.speculative?.numTokens ?? speculation.numTokens(for: method),
                                           adaptive: speculation.adaptive, autoDisable: speculation.autoDisable.enabled,
                                           breakEven: speculation.autoDisable.breakEven,
                                           warmupSteps: speculation.autoDisable.warmupSteps,
                                           retryAfter: speculation.autoDisable.retryAfter, costModel: costs[method] ?? .free)
        let d = speculation
        let drafter = DrafterOptions(pMin: Float(d.draft.pMin), ngramMin: d.ngram.minN, ngramMax: d.ngram.maxN,
                                     medusaTypicalThreshold: d.medusa.acceptance == .typical ? Float(d.medusa.posteriorThreshold) : nil,
                                     medusaTypicalAlpha: Float(d.medusa.posteriorAlpha))
        return JobParameters(maxTokens: q.maxTokens, sampling: q.sampling, method: method, speculation: settings, drafter: drafter)
    }

    /// Token ids of a prompt, checked against the vocabulary and the context.
    func promptTokens(_ q: CompletionRequest) throws(APIError) -> [Int] {
        let tokens: [Int]
        switch q.prompt {
        case let .text(text): tokens = tokenizer.encode(text)
        case let .tokens(ids):
            if let bad = ids.firstIndex(where: { $0 >= vocabularySize }) {
                throw APIError.badRequest("token id \(ids[bad]) at prompt[\(bad)] is outside the vocabulary of \(vocabularySize)", param: "prompt")
            }
            tokens = ids
        }
        guard !tokens.isEmpty else { throw APIError.badRequest("the prompt is empty (it encodes to no tokens)", param: "prompt") }
        guard tokens.count + q.maxTokens <= contextLimit else {
            // A prompt that fills the context by itself is at fault whatever max_tokens is.
            throw APIError.badRequest("the prompt has \(tokens.count) tokens and max_tokens is \(q.maxTokens): \(tokens.count + q.maxTokens) "
                                      + "tokens in total, over the context of \(contextLimit) tokens of model '\(id)'; shorten the prompt "
                                      + "or lower max_tokens", param: tokens.count >= contextLimit ? "prompt" : "max_tokens")
        }
        return tokens
    }
}

/// Keeps requests and exclusive work (the benchmark) on a model apart. Requests enter shared and leave when the
/// engine reports their end; exclusive work enters only when no request is in flight, and while it runs requests
/// are turned away.
final class WorkGate: Sendable {
    private struct State {
        var inFlight = 0
        var exclusive = false
    }
    private let state = Mutex(State())

    func enterShared() -> Bool {
        state.withLock { s in
            if s.exclusive { return false }
            s.inFlight += 1
            return true
        }
    }

    func leaveShared() { state.withLock { $0.inFlight -= 1 } }

    func enterExclusive() -> Bool {
        state.withLock { s in
            if s.exclusive || s.inFlight > 0 { return false }
            s.exclusive = true
            return true
        }
    }

    func leaveExclusive() { state.withLock { $0.exclusive = false } }

    var inFlight: Int { state.withLock { $0.inFlight } }
}
