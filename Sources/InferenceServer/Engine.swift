import Foundation
import InferenceCore
import SpeculativeDecoding
import Synchronization

// The engine (DESIGN §6): one thread owns the models and every KV cache and runs the scheduler. Connection
// threads submit jobs through a bounded queue (full → the caller answers 429) and receive events back.
//
// Continuous batching: each iteration gathers the rows of every active request — a prompt to prefill, or a
// speculative step (the pending token and its draft tree) — into one forward, so concurrent requests share each
// pass over the weights. Rows never influence each other (batch invariance), so a request's greedy output is the
// same alone or beside others. Prompts are prefilled in chunks so a long prompt cannot stall the others.

public struct EngineSettings: Sendable, Equatable {
    /// Jobs waiting to start beyond which `submit` refuses (429).
    public var maxQueue = 64
    /// Requests decoding at once.
    public var maxActive = 16
    /// Most prompt rows one iteration prefills (across requests); a longer prompt takes several iterations.
    /// Chunks end at multiples of `Generation.prefillChunk`.
    public var prefillChunk = Generation.prefillChunk
    public init(maxQueue: Int = 64, maxActive: Int = 16) {
        self.maxQueue = maxQueue
        self.maxActive = maxActive
    }
}

/// How a request's drafter is built (the model's configured values, DESIGN §8).
public struct DrafterOptions: Sendable, Equatable {
    /// Draft model: stop a chain when its top probability falls below this.
    public var pMin: Float = 0
    public var ngramMin = 1, ngramMax = 3
    /// Medusa at T > 0: typical acceptance (threshold, alpha), lossy; nil means lossless rejection sampling.
    public var medusaTypicalThreshold: Float? = 0.09
    public var medusaTypicalAlpha: Float = 0.3
    public init(pMin: Float = 0, ngramMin: Int = 1, ngramMax: Int = 3, medusaTypicalThreshold: Float? = 0.09,
                medusaTypicalAlpha: Float = 0.3) {
        self.pMin = pMin
        self.ngramMin = ngramMin
        self.ngramMax = ngramMax
        self.medusaTypicalThreshold = medusaTypicalThreshold
        self.medusaTypicalAlpha = medusaTypicalAlpha
    }
}

/// What a job needs besides the prompt: how to sample, how far, and how to speculate.
public struct JobParameters: Sendable {
    public var maxTokens: Int
    public var sampling: SamplingParameters
    public var method: SpeculativeMethod
    public var speculation: SpeculationSettings
    public var drafter: DrafterOptions
    public init(maxTokens: Int, sampling: SamplingParameters = .greedy, method: SpeculativeMethod = .none,
                speculation: SpeculationSettings = .init(), drafter: DrafterOptions = .init()) {
        self.maxTokens = maxTokens
        self.sampling = sampling
        self.method = method
        self.speculation = speculation
        self.drafter = drafter
    }
}

public enum EngineEvent: Sendable {
    /// The job left the queue; its prompt is being prefilled.
    case started
    /// Tokens emitted (in order; the first event carries the first generated token).
    case tokens([Int])
    /// The job ended: why, its speculation figures, and its timings.
    case finished(FinishReason, SpeculationStats, JobTimings)
    /// The job failed; the others carry on.
    case failed(String)
    /// The engine shut down before the job finished (or started).
    case stopped
}

public struct JobTimings: Sendable, Equatable, Codable {
    public var promptTokens = 0
    public var promptMs = 0.0
    public var generatedTokens = 0
    /// From the first generated token to the last (wall time).
    public var generationMs = 0.0
    public var queuedMs = 0.0
}

public enum EngineError: Error, Equatable, CustomStringConvertible {
    case queueFull(Int)
    case stopped
    case invalid(String)
    public var description: String {
        switch self {
        case let .queueFull(n): return "the engine queue is full (\(n) requests waiting); try again shortly"
        case .stopped: return "the engine is shutting down"
        case let .invalid(m): return m
        }
    }
}

public final class Job: @unchecked Sendable {
    public let id: Int
    public let prompt: [Int]
    public let parameters: JobParameters
    let onEvent: @Sendable (EngineEvent) -> Void
    let submitted = monotonicSeconds()
    private let cancelled = Atomic<Bool>(false)

    init(id: Int, prompt: [Int], parameters: JobParameters, onEvent: @escaping @Sendable (EngineEvent) -> Void) {
        self.id = id
        self.prompt = prompt
        self.parameters = parameters
        self.onEvent = onEvent
    }

    /// Asks the engine to stop this job; it is dropped, with its cache, within one iteration.
    public func cancel() { cancelled.store(true, ordering: .relaxed) }
    public var isCancelled: Bool { cancelled.load(ordering: .relaxed) }
}

public final class Engine: @unchecked Sendable {
    public let family: ModelFamily
    public let settings: EngineSettings
    public let metrics: EngineMetrics
    /// Speculation settings per method (costs measured at start-up, Medusa tree sized to this machine).
    public let medusaTree: MedusaTree?

    private let lock = NSCondition()
    private var queue: [Job] = []         // guarded by lock
    private var stopping = false          // guarded by lock
    private var nextID = 0                // guarded by lock

    /// Test seam for fault injection, set before `start()`; nil in production. Asked on the engine thread before
    /// each step of each active job (with the tokens it has emitted so far): a message fails that job alone, as an
    /// error in its step would, and the others carry on. It may block, which holds the engine.
    var faultInjection: (@Sendable (_ job: Job, _ emitted: Int) -> String?)?

    public init(family: ModelFamily, settings: EngineSettings = .init(), medusaTree: MedusaTree? = nil,
                metrics: EngineMetrics = EngineMetrics()) {
        self.family = family
        self.settings = settings
        self.medusaTree = medusaTree
        self.metrics = metrics
    }

    /// Starts the engine thread. The thread keeps the engine alive until `stop()` lets it end (the engine does not
    /// hold the thread: that cycle kept every stopped engine, and its models, in memory).
    public func start() {
        let thread = Thread { [self] in self.loop() }
        thread.name = "specserve-engine"
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// Stops taking jobs; the engine thread finishes or cancels what it has and exits.
    public func stop() {
        lock.lock()
        stopping = true
        lock.signal()
        lock.unlock()
    }

    /// Queues a job. Validate the prompt and parameters before: the engine only checks what it must.
    public func submit(prompt: [Int], parameters: JobParameters, onEvent: @escaping @Sendable (EngineEvent) -> Void) throws(EngineError) -> Job {
        guard !prompt.isEmpty else { throw .invalid("the prompt is empty") }
        guard prompt.count + parameters.maxTokens <= family.target.config.maxPositionEmbeddings else {
            throw .invalid("the prompt (\(prompt.count) tokens) plus max_tokens (\(parameters.maxTokens)) exceeds the context of \(family.target.config.maxPositionEmbeddings) tokens")
        }
        guard family.methods.contains(parameters.method) else {
            throw .invalid("speculative method '\(parameters.method.rawValue)' is not available for this model (available: \(family.methods.map(\.rawValue).joined(separator: ", ")))")
        }
        lock.lock()
        defer { lock.unlock() }
        if stopping { throw .stopped }
        guard queue.count < settings.maxQueue else { throw .queueFull(queue.count) }
        nextID += 1
        let job = Job(id: nextID, prompt: prompt, parameters: parameters, onEvent: onEvent)
        queue.append(job)
        metrics.setWaiting(queue.count)
        lock.signal()
        return job
    }

    /// Jobs waiting to start.
    public var waitingCount: Int {
        lock.lock()
        defer { lock.unlock() }
        return queue.count
    }

    // MARK: the engine thread

    private final class Active {
        let job: Job
        let generation: Generation
        var emitted = 0
        var firstTokenAt: Double?
        init(job: Job, generation: Generation) {
            self.job = job
            self.generation = generation
        }
    }

    private func loop() {
        var active: [Active] = []
        while true {
            // Take new jobs (wait when idle).
            lock.lock()
            while queue.isEmpty && active.isEmpty && !stopping { lock.wait() }
            if stopping && queue.isEmpty && active.isEmpty { lock.unlock(); return }
            var admitted: [Job] = []
            if stopping {
                admitted = []
                let dropped = queue
                queue.removeAll()
                lock.unlock()
                for job in dropped { job.onEvent(.stopped) }
                lock.lock()
            }
            while active.count + admitted.count < settings.maxActive, !queue.isEmpty { admitted.append(queue.removeFirst()) }
            metrics.setWaiting(queue.count)
            let stopNow = stopping  // read under the lock; a later stop() is seen by the next iteration
            lock.unlock()

            for job in admitted {
                do {
                    let o = job.parameters.drafter
                    let drafter = try family.makeDrafter(
                        job.parameters.method, medusaTree: medusaTree,
                        medusaOptions: MedusaOptions(typical: o.medusaTypicalThreshold.map { ($0, o.medusaTypicalAlpha) }),
                        ngram: (o.ngramMin, o.ngramMax), pMin: o.pMin)
                    let g = Generation(target: family.target, prompt: job.prompt, maxTokens: job.parameters.maxTokens,
                                       sampling: job.parameters.sampling, stopTokens: family.stopTokens, drafter: drafter,
                                       settings: job.parameters.speculation, maxTreeNodes: (medusaTree?.nodes.count ?? 16) + 2)
                    active.append(Active(job: job, generation: g))
                    job.onEvent(.started)
                } catch {
                    job.onEvent(.failed("\(error)"))
                }
            }
            // Drop cancelled jobs (client gone) before spending a forward on them; on shutdown, fail the rest.
            active.removeAll { a in
                if a.job.isCancelled {
                    a.generation.cancel()
                    finish(a)
                    return true
                }
                if stopNow {
                    a.generation.cancel()
                    a.job.onEvent(.stopped)
                    return true
                }
                if let fault = faultInjection?(a.job, a.emitted) {
                    a.generation.cancel()
                    a.job.onEvent(.failed(fault))
                    return true
                }
                return false
            }
            metrics.setRunning(active.count)
            if active.isEmpty { continue }
            iterate(&active)
            metrics.setRunning(active.count)
        }
    }

    /// One forward over the rows of every active request (after the draft models' forwards, batched the same way).
    private func iterate(_ active: inout [Active]) {
        draftAll(active.filter { $0.generation.hasPrefilled })
        var rows: [Row] = []
        var plan: [(active: Active, offset: Int, count: Int, prefill: Bool)] = []
        var prefillBudget = settings.prefillChunk
        for a in active {
            let g = a.generation
            if !g.hasPrefilled {
                // Chunks end at multiples of prefillChunk from the prompt's start, so a prompt is always split the
                // same way whatever else is running (the same rows take the same matmul path: same results).
                let end = min(g.promptCount, (g.prefilled / settings.prefillChunk + 1) * settings.prefillChunk)
                let size = end - g.prefilled
                if size > prefillBudget && prefillBudget < settings.prefillChunk { continue }
                let chunk = g.prefillRows(upTo: end)
                plan.append((a, rows.count, chunk.count, true))
                rows += chunk
                prefillBudget -= size
            } else {
                let step = g.stepRows()
                plan.append((a, rows.count, step.count, false))
                rows += step
            }
        }
        guard !rows.isEmpty else { return }
        let start = monotonicSeconds()
        let output = family.target.forward(rows)
        metrics.observeForward(rows: rows.count, seconds: monotonicSeconds() - start)
        for p in plan {
            let a = p.active, g = a.generation
            var emitted: [Int] = []
            if p.prefill {
                emitted = g.completePrefill(output, offset: p.offset)
            } else {
                emitted = g.completeStep(output, offset: p.offset)
            }
            if !emitted.isEmpty {
                if a.firstTokenAt == nil {
                    a.firstTokenAt = monotonicSeconds()
                    metrics.observeTimeToFirstToken(a.firstTokenAt! - a.job.submitted)
                }
                a.emitted += emitted.count
                a.job.onEvent(.tokens(emitted))
            }
        }
        active.removeAll { a in
            guard a.generation.isFinished || a.job.isCancelled else { return false }
            if !a.generation.isFinished { a.generation.cancel() }
            finish(a)
            return true
        }
    }

    /// Builds every decoding request's proposal: draft models run one forward per draft position for all the
    /// requests that use them, instead of one forward per request.
    private func draftAll(_ decoding: [Active]) {
        for a in decoding { a.generation.beginStep() }
        while true {
            var groups: [ObjectIdentifier: (model: LlamaModel, rows: [Row], plan: [(Generation, Int)])] = [:]
            for a in decoding {
                guard let model = a.generation.draftModel else { continue }
                let id = ObjectIdentifier(model)
                var group = groups[id] ?? (model, [], [])
                group.plan.append((a.generation, group.rows.count))
                group.rows += a.generation.draftRows()
                groups[id] = group
            }
            if groups.isEmpty { return }
            for group in groups.values {
                let output = group.model.forward(group.rows)
                metrics.observeDraftForward(rows: group.rows.count)
                for (g, offset) in group.plan { g.completeDraft(output, offset: offset) }
            }
        }
    }

    private func finish(_ a: Active) {
        let g = a.generation
        var t = JobTimings()
        t.promptTokens = g.promptCount
        t.promptMs = g.promptSeconds * 1e3
        t.generatedTokens = g.generated.count
        // Wall time from the first token to the end: every decode step of this request, the draft work and the
        // scheduler's own work between steps (which other requests share), as a client sees it.
        let end = monotonicSeconds()
        t.generationMs = a.firstTokenAt.map { max(0, end - $0) * 1e3 } ?? 0
        t.queuedMs = max(0, ((a.firstTokenAt ?? monotonicSeconds()) - a.job.submitted) * 1e3 - t.promptMs)
        metrics.record(finished: g.finishReason ?? .cancelled, stats: g.stats, timings: t)
        a.job.onEvent(.finished(g.finishReason ?? .cancelled, g.stats, t))
    }
}
