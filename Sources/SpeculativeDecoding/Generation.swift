import InferenceCore

// One request's decode loop: propose → verify → accept → commit (DESIGN §5), for every method; `none` is the
// same loop with empty proposals.
//
// State: `context` is the prompt and every token generated so far. Its last token is *pending*: decided and
// already emitted, but not yet in the target's KV cache (cache.count == context.count − 1). Each step forwards
// the pending token and the draft tree in one batch, accepts a path, commits those rows to the cache, and makes
// the target's bonus token the new pending token.
//
// The loop is split into `…Rows()` / `complete…(_:)` halves so a scheduler can put the rows of many requests
// into one forward (continuous batching); `run` drives it alone.

public struct CostModel: Sendable, Equatable {
    /// Cost of drafting one token, relative to one target decode step.
    public var draftPerToken: Double
    /// `verify[r]`: cost of a verification forward of r rows relative to one decode step (index 0 unused).
    public var verify: [Double]
    /// Seconds of one target decode step, as measured (0: not measured). With it, a request judges its drafter
    /// by the draft time it actually spends per step rather than by `draftPerToken`: a drafter timed alone at
    /// start-up runs with its weights in cache, but between two target steps they have been evicted (an MTP
    /// module with the lm_head costs ~0.13× a decode step hot and ~0.3× in the loop).
    public var decodeSeconds: Double
    /// Plain decode steps as they run now (shared by every request of the model); nil: not tracked.
    public var clock: DecodeStepClock?

    public init(draftPerToken: Double, verify: [Double], decodeSeconds: Double = 0, clock: DecodeStepClock? = nil) {
        self.draftPerToken = draftPerToken
        self.verify = verify
        self.decodeSeconds = decodeSeconds
        self.clock = clock
    }

    public static func == (a: CostModel, b: CostModel) -> Bool {
        a.draftPerToken == b.draftPerToken && a.verify == b.verify && a.decodeSeconds == b.decodeSeconds && a.clock === b.clock
    }

    /// Nothing measured: speculation always looks worth it.
    public static let free = CostModel(draftPerToken: 0, verify: [])

    public func verifyCost(rows: Int) -> Double {
        guard rows > 0, !verify.isEmpty else { return 1 }
        return rows < verify.count ? verify[rows] : verify[verify.count - 1] * Double(rows) / Double(verify.count - 1)
    }

    /// Expected speedup over plain decoding of steps that draft `drafted` tokens (verified as `rows` rows) and
    /// accept `acceptedPerStep` of them on average.
    public func expectedSpeedup(acceptedPerStep: Double, drafted: Double, rows: Int) -> Double {
        expectedSpeedup(acceptedPerStep: acceptedPerStep, draftCost: drafted * draftPerToken, rows: rows)
    }

    /// The same with the draft cost of a step given directly, relative to one decode step.
    public func expectedSpeedup(acceptedPerStep: Double, draftCost: Double, rows: Int) -> Double {
        (1 + acceptedPerStep) / (draftCost + verifyCost(rows: rows))
    }

    /// The chain length in 1...maxLength that yields the most tokens per unit of time when each drafted token is
    /// right with probability `acceptance` once the ones before it were: a chain of k gives 1 + α + … + α^k tokens
    /// for k · draftPerToken + verify(k + 1) decode steps. The cheaper a verify row, the longer the chain: at 80 %
    /// acceptance 5–6 on the AMD machine of sessions 1–8 (rows ~5 % of a step), 3 on session 9's Xeon (~10 %).
    /// Of equal rates the shorter wins; with nothing measured (verify costs unknown) it is `maxLength`.
    public func bestChainLength(acceptance α: Double, draftPerToken: Double, maxLength: Int) -> Int {
        guard !verify.isEmpty else { return max(1, maxLength) }
        var best = 1, bestRate = 0.0, expected = 1.0, term = 1.0
        for k in 1...max(1, maxLength) {
            term *= α
            expected += term
            let rate = expected / (Double(k) * draftPerToken + verifyCost(rows: k + 1))
            if rate > bestRate { (best, bestRate) = (k, rate) }
        }
        return best
    }
}

public struct SpeculationSettings: Sendable, Equatable {
    /// The default longest chain: measured best of 5 / 8 / 12 for the shipped draft, MTP and n-gram on the AMD
    /// machine of session 8 (docs/PERFORMANCE.md); adaptation shortens it after rejections and to the length the
    /// measured verify costs make best (3 on session 9's Xeon).
    public static let defaultNumDraft = 8
    /// Most draft tokens along a path per step (the chain length `k`).
    public var numDraft: Int
    /// Let the draft length follow recent acceptance (grow after full acceptance, shrink after none) and stay
    /// within the length that gives the most tokens per unit of time for the cost model (`bestChainLength`).
    public var adaptive: Bool
    /// Switch speculation off for a request whose expected speedup (from its acceptance and the cost model)
    /// falls below `breakEven` after `warmupSteps` speculative steps.
    public var autoDisable: Bool
    public var breakEven: Double
    public var warmupSteps: Int
    /// Plain steps after which a request whose speculation was switched off tries again (judged after
    /// `warmupSteps / 2` speculative steps); the pause doubles after every failed try, up to 8×. 0: off for good.
    public var retryAfter: Int
    public var costModel: CostModel

    public init(numDraft: Int = SpeculationSettings.defaultNumDraft, adaptive: Bool = true, autoDisable: Bool = true, breakEven: Double = 1.0,
                warmupSteps: Int = 8, retryAfter: Int = 16, costModel: CostModel = .free) {
        self.numDraft = numDraft
        self.adaptive = adaptive
        self.autoDisable = autoDisable
        self.breakEven = breakEven
        self.warmupSteps = warmupSteps
        self.retryAfter = retryAfter
        self.costModel = costModel
    }
}

public enum FinishReason: String, Sendable, Codable {
    /// max_tokens (or the context) reached.
    case length
    /// A stop token (end of text) was produced.
    case stop
    /// The caller stopped it (client gone, stop string matched).
    case cancelled
}

public final class Generation {
    public let target: LlamaModel
    public let drafter: Drafter?
    public let sampling: SamplingParameters
    public let settings: SpeculationSettings
    public let maxTokens: Int
    public let stopTokens: Set<Int>
    public let promptCount: Int
    public private(set) var context: [Int]
    public private(set) var finishReason: FinishReason?
    public private(set) var stats: SpeculationStats
    public let cache: KVCache
    public private(set) var promptSeconds = 0.0
    public private(set) var decodeSeconds = 0.0

    var rng: SeededGenerator
    var draftLength: Int
    var speculating: Bool
    var pendingTree = DraftTree()
    var rule: AcceptanceRule = .greedy
    var stepStart = 0.0
    /// Rolling (exponential) mean of accepted tokens per speculative step and of tokens drafted per step.
    var meanAccepted = 0.0, meanDrafted = 0.0, meanRows = 1.0
    /// Decayed counts of accepted chain tokens and of rejections (steps that stopped short of their chain's end),
    /// starting from one of each: accepted / (accepted + rejections) estimates the chance that a drafted token is
    /// right once those before it were, from which the chain length is chosen (`CostModel.bestChainLength`).
    var chainAccepted = 1.0, chainRejected = 1.0
    /// Wall time of this request's steps that ran alone (no other request's rows in their forwards): recent
    /// medians of a speculative step (its drafting, the drafter's commit, the verify forward) and of a plain step,
    /// and how many of each were seen. Auto-off compares them (DESIGN §5).
    var soloSpeculative = RecentMedian(), soloPlain = RecentMedian()
    /// Auto-off's state: the plain step count at which speculation is tried again (nil: not paused, or for good),
    /// the pause it last waited, and the speculative steps and acceptance when the current judgement's
    /// window began (the request's start, or the last retry).
    var retryAtPlainStep: Int?
    var pause: Int
    var window = (steps: 0, accepted: 0)
    /// The next speculative step is not timed: its drafting catches the drafter up on the paused steps.
    var catchingUp = false
    /// `stats.draftSeconds` when the current step's drafting began (the previous step's commit counts to it).
    private var draftMark = 0.0
    /// Whether a forward of the current step carried other requests' rows.
    private var stepShared = false
    private var draftRowCount = 0
    /// The time, in seconds: every timing auto-off judges by is read from it.
    private let now: () -> Double

    /// `drafter` nil means plain decoding (`none`). `maxTreeNodes` bounds the cache slots a draft tree may use.
    /// `now` reads the time (tests pass a fixed clock, which leaves every timing at zero and auto-off to the
    /// calibrated cost model).
    public init(target: LlamaModel, prompt: [Int], maxTokens: Int, sampling: SamplingParameters = .greedy,
                stopTokens: Set<Int> = [], drafter: Drafter? = nil, settings: SpeculationSettings = .init(),
                maxTreeNodes: Int = 64, now: @escaping () -> Double = monotonicSeconds) {
        precondition(!prompt.isEmpty, "an empty prompt has nothing to continue")
        precondition(prompt.count < target.config.maxPositionEmbeddings, "the prompt fills the whole context")
        self.target = target
        self.now = now
        self.drafter = drafter
        self.sampling = sampling
        self.settings = settings
        self.stopTokens = stopTokens
        self.promptCount = prompt.count
        self.maxTokens = max(0, min(maxTokens, target.config.maxPositionEmbeddings - prompt.count))
        self.context = prompt
        self.stats = SpeculationStats(method: drafter?.method ?? .none)
        self.cache = target.makeCache(capacity: prompt.count + self.maxTokens + maxTreeNodes + 2)
        self.rng = SeededGenerator(seed: sampling.seed ?? UInt64.random(in: .min ... .max))
        self.draftLength = max(1, settings.numDraft)
        self.speculating = drafter != nil && settings.numDraft > 0
        self.pause = settings.retryAfter
        if let drafter { rule = drafter.acceptanceRule(for: sampling) } else { rule = sampling.isGreedy ? .greedy : .rejectionSampling }
        if self.maxTokens == 0 { finishReason = .length }
    }

    public var isFinished: Bool { finishReason != nil }
    /// Tokens generated so far (all emitted; the last may be pending).
    public var generated: ArraySlice<Int> { context[promptCount...] }
    public var hasPrefilled: Bool { prefilled == promptCount }

    /// Stops the request; its cache can be dropped.
    public func cancel() { if finishReason == nil { finishReason = .cancelled } }

    // MARK: prefill

    /// Prompts are prefilled in chunks ending at multiples of this many positions.
    public static let prefillChunk = 256

    /// Prompt rows already in the cache.
    public private(set) var prefilled = 0
    private var prefillEnd = 0
    private var promptHidden: Tensor?

    /// The prompt's rows `prefilled..<end` (all of them by default): one forward computes them (sgemm for runs of
    /// ≥ 16 rows), and the last prompt row's logits give the first token. Chunk boundaries should not depend on
    /// other requests, so that a prompt is always computed the same way.
    public func prefillRows(upTo end: Int? = nil) -> [Row] {
        let end = min(end ?? promptCount, promptCount)
        precondition(end > prefilled, "nothing left to prefill")
        if prefilled == 0 { stepStart = now() }
        prefillEnd = end
        return (prefilled..<end).map {
            Row(token: context[$0], position: $0, cache: cache, isPrompt: true, wantsLogits: $0 == promptCount - 1)
        }
    }

    /// Takes the results of the rows `prefillRows` returned, placed at `offset` of `output`. Returns the first
    /// generated token once the whole prompt is in.
    @discardableResult
    public func completePrefill(_ output: ForwardOutput, offset: Int = 0) -> [Int] {
        let count = prefillEnd - prefilled
        cache.append(count)
        if drafter != nil {
            if promptHidden == nil { promptHidden = Tensor(shape: [promptCount, target.config.hiddenSize]) }
            for r in 0..<count {
                promptHidden!.row(prefilled + r).update(from: output.hidden.row(offset + r), count: target.config.hiddenSize)
            }
        }
        prefilled = prefillEnd
        guard prefilled == promptCount else { return [] }
        let logits = output.logits(row: offset + count - 1)
        let first = sampling.isGreedy ? argmax(logits) : sample(distribution(logits, sampling), using: &rng)
        let emitted = emit([first])
        if !isFinished, let drafter, let hidden = promptHidden {
            // The drafter's own prefill (a draft model's prompt, an MTP module's catch-up) is prompt work too.
            drafter.start(tokens: context, hidden: hidden)
        }
        promptHidden = nil
        promptSeconds += now() - stepStart
        return emitted
    }

    // MARK: decode steps

    /// Where this step's proposal stands: not begun, being built by a stepped drafter, or ready.
    private enum Proposal { case none, stepping(SteppedDrafter), ready }
    private var proposal = Proposal.none
    private var draftForwardStart = 0.0

    /// Starts this step's proposal. A drafter that runs its own model step by step (a draft model) is then driven
    /// through `draftRows` / `completeDraft`, so a scheduler can batch its forwards with other requests'; any
    /// other drafter proposes at once.
    public func beginStep() {
        precondition(!isFinished && context.count > promptCount, "prefill first")
        guard case .none = proposal else { return }
        let start = now()
        pendingTree = DraftTree()
        proposal = .ready
        stepShared = false
        if let retry = retryAtPlainStep, stats.plainSteps >= retry {
            // Try speculation again; the drafter was kept in step meanwhile and catches up in this proposal.
            retryAtPlainStep = nil
            speculating = true
            window = (stats.steps, stats.accepted)
            catchingUp = true
            stats.retries += 1
        }
        // Never draft past max_tokens: the step also yields the bonus token.
        let room = maxTokens - generated.count - 1
        if speculating, let drafter, room > 0 {
            if let stepped = drafter as? SteppedDrafter {
                stepped.beginProposal(tokens: context, limit: min(draftLength, room))
                proposal = .stepping(stepped)
            } else {
                pendingTree = drafter.propose(tokens: context, limit: min(draftLength, room), sampling: sampling, rng: &rng)
            }
            stats.draftSeconds += now() - start
        }
    }

    /// The model the pending draft rows run on (nil when no draft forward is needed).
    public var draftModel: LlamaModel? {
        if case let .stepping(d) = proposal, !d.proposalRows().isEmpty { return d.draftModel }
        return nil
    }

    /// Rows for the next forward of `draftModel`; empty when the proposal needs no more forwards.
    public func draftRows() -> [Row] {
        guard case let .stepping(d) = proposal else { return [] }
        draftForwardStart = now()
        let rows = d.proposalRows()
        draftRowCount = rows.count
        return rows
    }

    /// Takes the draft forward's results for this request's rows at `offset` of `output`.
    public func completeDraft(_ output: ForwardOutput, offset: Int) {
        guard case let .stepping(d) = proposal else { return }
        if offset != 0 || output.logits.rows != draftRowCount { stepShared = true }
        d.takeProposalOutput(output, offset: offset, sampling: sampling, rng: &rng)
        if d.proposalRows().isEmpty {
            pendingTree = d.finishProposal()
            proposal = .ready
        }
        stats.draftSeconds += now() - draftForwardStart
    }

    /// The next verification batch: the pending token and, when speculating, the drafter's tree. Drives the
    /// proposal alone if the scheduler did not.
    public func stepRows() -> [Row] {
        beginStep()
        while case let .stepping(d) = proposal {
            let rows = draftRows()
            if rows.isEmpty { pendingTree = d.finishProposal(); proposal = .ready; break }
            completeDraft(d.draftModel.forward(rows), offset: 0)
        }
        proposal = .none
        stepStart = now()
        return pendingTree.verificationRows(pending: context[context.count - 1], position: cache.count, cache: cache)
    }

    /// Takes the verification rows' results at `offset` of `output`; returns the newly emitted tokens.
    @discardableResult
    public func completeStep(_ output: ForwardOutput, offset: Int = 0) -> [Int] {
        let tree = pendingTree
        let outcome = accept(tree, rule: tree.isEmpty ? (sampling.isGreedy ? .greedy : .rejectionSampling) : rule,
                             sampling: sampling, rng: &rng) { output.logits(row: offset + $0) }
        // Commit the pending token's row and the accepted path to the cache (a chain's path is already in place).
        let n = cache.count
        cache.append(1)
        cache.compact(keeping: outcome.path.map { n + 1 + $0 })
        let elapsed = now() - stepStart
        decodeSeconds += elapsed
        let solo = !stepShared && offset == 0 && output.logits.rows == tree.count + 1
        if tree.isEmpty {
            stats.plainSteps += 1
            if solo {
                // What a step costs without speculation: the forward alone, as the model's clock counts it (a
                // drafting attempt that found nothing would not run if speculation were off).
                soloPlain.add(elapsed)
                settings.costModel.clock?.record(elapsed)
            }
        } else {
            stats.verifySeconds += elapsed
            // (The first step, and the first after a pause, are left out: their drafting includes a catch-up over the
            // prompt or the paused steps.)
            if solo && stats.steps > 0 && !catchingUp { soloSpeculative.add(stats.draftSeconds - draftMark + elapsed) }
            catchingUp = false
            stats.record(depth: tree.maxDepth, nodes: tree.count, acceptedCount: outcome.path.count)
            if !rule.isLossless { stats.lossless = false }
            adapt(tree: tree, accepted: outcome.path.count)
        }
        let newTokens = outcome.path.map { tree.tokens[$0] } + [outcome.next]
        let emitted = emit(newTokens)
        draftMark = stats.draftSeconds
        // The drafter hears every step, plain ones too, so it can resume in step after a pause.
        if !isFinished, let drafter {
            let commitStart = now()
            let rows = [0] + outcome.path.map { $0 + 1 }
            drafter.commit(tokens: context, tree: tree, outcome: outcome, hidden: rows.map { output.hidden(row: offset + $0) })
            stats.draftSeconds += now() - commitStart
        }
        return emitted
    }

    /// Runs the request alone to the end; `onTokens` sees each batch of emitted tokens and returns false to stop.
    public func run(onTokens: ([Int]) -> Bool = { _ in true }) {
        while !hasPrefilled && !isFinished {
            // The same fixed chunks the server's engine uses, so a prompt is computed the same way everywhere.
            let out = target.forward(prefillRows(upTo: (prefilled / Generation.prefillChunk + 1) * Generation.prefillChunk))
            let first = completePrefill(out)
            if hasPrefilled && !onTokens(first) { cancel() }
        }
        while !isFinished {
            let out = target.forward(stepRows())
            if !onTokens(completeStep(out)) { cancel() }
        }
    }

    /// Appends tokens up to a stop token or max_tokens; returns those appended.
    private func emit(_ tokens: [Int]) -> [Int] {
        var out: [Int] = []
        for t in tokens {
            if stopTokens.contains(t) { finishReason = .stop; break }
            context.append(t)
            out.append(t)
            if generated.count >= maxTokens { finishReason = .length; break }
        }
        return out
    }

    /// What a plain decode step costs, as speculation is judged against it: this request's own solo plain steps,
    /// else the model's recent ones, else the calibrated one (0: nothing timed).
    private var plainStepSeconds: Double {
        soloPlain.count >= 2 ? soloPlain.median : (settings.costModel.clock?.seconds ?? settings.costModel.decodeSeconds)
    }

    /// The longest chain worth drafting now: the one with the most tokens per unit of time at this request's recent
    /// acceptance, for the verify costs measured at start and the draft time the request really spends per token
    /// (relative to a plain step as auto-off takes it; the calibrated figure until both were timed).
    private func chainLengthCap() -> Int {
        let cost = settings.costModel
        let plainStep = plainStepSeconds
        let draftPerToken = plainStep > 0 && stats.drafted > 0 && stats.draftSeconds > 0
            ? stats.draftSeconds / Double(stats.drafted) / plainStep : cost.draftPerToken
        return cost.bestChainLength(acceptance: chainAccepted / (chainAccepted + chainRejected),
                                    draftPerToken: draftPerToken, maxLength: settings.numDraft)
    }

    /// Draft length follows acceptance; speculation switches off when it does not pay (DESIGN §5).
    private func adapt(tree: DraftTree, accepted: Int) {
        let depth = tree.maxDepth
        let decay = 0.8
        meanAccepted = stats.steps == 1 ? Double(accepted) : decay * meanAccepted + (1 - decay) * Double(accepted)
        meanDrafted = stats.steps == 1 ? Double(depth) : decay * meanDrafted + (1 - decay) * Double(depth)
        meanRows = stats.steps == 1 ? Double(tree.count + 1) : decay * meanRows + (1 - decay) * Double(tree.count + 1)
        if settings.adaptive && tree.isChain {
            chainAccepted = 0.9 * chainAccepted + Double(accepted)
            chainRejected = 0.9 * chainRejected + (accepted < depth ? 1 : 0)
            let cap = chainLengthCap()
            if accepted == depth { draftLength = min(draftLength + 1, cap) }
            else if accepted == 0 { draftLength = max(1, draftLength - 1) }
            draftLength = min(draftLength, cap)
        }
        // Judged over the window since the request began (after the warm-up) or since the last retry (after half
        // of it).
        let windowSteps = stats.steps - window.steps
        let judgeAfter = window.steps == 0 ? settings.warmupSteps : max(1, settings.warmupSteps / 2)
        if settings.autoDisable && windowSteps >= judgeAfter {
            // Best evidence first: this request's own speculative steps against a plain decode step (its own
            // plain steps, else the model's recent ones, else the calibrated one), all timed alone, which catches
            // what a cost model misses (a drafter's weights evicting the target's from cache, and the reverse);
            // else the draft time it really spent per step with the calibrated verify cost; else the calibrated
            // model alone.
            let cost = settings.costModel
            let plainStep = plainStepSeconds
            let speedup: Double
            if plainStep > 0 && soloSpeculative.count >= min(4, settings.warmupSteps) {
                // Tokens per step over the whole window, not the last few steps: one lucky or unlucky step must not
                // decide.
                speedup = (1 + Double(stats.accepted - window.accepted) / Double(windowSteps)) * plainStep / soloSpeculative.median
            } else {
                let draftCost = cost.decodeSeconds > 0
                    ? stats.draftSeconds / Double(stats.steps) / cost.decodeSeconds
                    : meanDrafted * cost.draftPerToken
                speedup = cost.expectedSpeedup(acceptedPerStep: meanAccepted, draftCost: draftCost, rows: Int(meanRows.rounded()))
            }
            if speedup < settings.breakEven {
                speculating = false
                stats.autoDisabled = true
                if settings.retryAfter > 0 {
                    // A retry that failed within twice the warm-up waits twice as long as the pause before it; a
                    // first switch-off, or one after speculation paid for longer, waits the short pause.
                    let failedTry = window.steps > 0 && windowSteps < 2 * settings.warmupSteps
                    pause = failedTry ? min(2 * pause, 8 * settings.retryAfter) : settings.retryAfter
                    retryAtPlainStep = stats.plainSteps + pause
                }
            }
        }
    }
}
