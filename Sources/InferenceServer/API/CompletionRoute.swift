import Foundation
import InferenceCore
import SpeculativeDecoding

// POST /v1/completions. The request is checked, then queued on the model's engine; the engine thread hands each
// event to this connection's thread through an EventChannel, and this thread does all the writing. A stream and a
// whole response run the same loop (so they produce the same text); only where the text goes differs.
//
// While waiting, the client is watched: a failed write or a closed connection cancels the job, which the engine
// drops (with its cache) within one step. A stop sequence also cancels the job, after the text before it.

struct CompletionRoute {
    let model: ServedModel
    let request: CompletionRequest
    let writer: ResponseWriter
    /// Seconds without a write after which a stream gets a `: ping` comment.
    let heartbeat: Double

    /// How long to wait for the engine to confirm a cancelled job (it does within one step).
    static let cancelGrace = 10.0

    func run(_ record: inout AccessRecord) throws(APIError) {
        let prompt = try model.promptTokens(request)
        let parameters = try model.jobParameters(request)
        record.promptTokens = prompt.count
        guard model.gate.enterShared() else {
            throw APIError(.serviceUnavailable, "a benchmark is running on model '\(model.id)'; retry when it is done",
                           headers: ["Retry-After": "5"])
        }
        let channel = EventChannel()
        let gate = model.gate
        let job: Job
        do {
            job = try model.engine.submit(prompt: prompt, parameters: parameters) { event in
                switch event {
                case .finished, .failed, .stopped: gate.leaveShared()
                case .started, .tokens: break
                }
                channel.push(event)
            }
        } catch {
            gate.leaveShared()
            switch error {
            case .queueFull: throw APIError(.tooManyRequests, "\(error)", headers: ["Retry-After": "1"])
            case .stopped: throw APIError(.serviceUnavailable, "\(error)")
            case let .invalid(message): throw APIError.badRequest(message)
            }
        }

        let id = completionID()
        let created = unixTime()
        let echoText: String
        switch request.prompt {
        case let .text(text): echoText = request.echo ? text : ""
        case .tokens: echoText = request.echo ? model.tokenizer.decode(prompt) : ""
        }
        func chunk(_ text: String, finish: String? = nil) -> CompletionResponse {
            CompletionResponse(id: id, created: created, model: model.id,
                               choices: [.init(text: text, finishReason: finish)], usageIsNull: request.includeUsage)
        }

        var whole = echoText
        let emit: (String) -> Bool
        if request.stream {
            guard writer.startEventStream() else { job.cancel(); record.note = "client gone"; return }
            emit = { text in writer.writeEvent(data: chunk(text).output.text) }
            if !echoText.isEmpty && !emit(echoText) { job.cancel(); record.note = "client gone"; return }
        } else {
            emit = { text in
                whole += text
                return writer.isConnected
            }
        }

        guard let outcome = follow(job, channel: channel, emit: emit, record: &record) else { return }
        let (text, end) = outcome
        let usage = CompletionResponse.Usage(promptTokens: prompt.count, completionTokens: text.tokenCount)
        let timings = CompletionResponse.Timings(end.timings, end.stats, completionTokens: text.tokenCount)
        let metrics = CompletionResponse.Metrics(speculativeDecoding: .init(end.stats))
        record.completionTokens = text.tokenCount
        record.speculation = Self.summary(end.stats)

        if request.stream {
            var last = chunk(end.tail, finish: end.reason)
            last.timings = timings
            last.metrics = metrics
            guard writer.writeEvent(data: last.output.text) else { record.note = "client gone"; return }
            if request.includeUsage {
                var usageChunk = CompletionResponse(id: id, created: created, model: model.id, choices: [], usage: usage)
                usageChunk.timings = timings
                usageChunk.metrics = metrics
                writer.writeEvent(data: usageChunk.output.text)
            }
            writer.writeEvent(data: "[DONE]")
            writer.finish()
        } else {
            whole += end.tail
            var response = CompletionResponse(id: id, created: created, model: model.id,
                                              choices: [.init(text: whole, finishReason: end.reason)], usage: usage)
            response.timings = timings
            response.metrics = metrics
            writer.send(.json(.ok, response.json))
        }
    }

    struct End {
        var reason: String
        var stats: SpeculationStats
        var timings: JobTimings
        /// Text released at the end (held back for a possible stop sequence, or an unfinished character).
        var tail: String
    }

    /// Waits for the job's events and passes its text to `emit` (false: the client is gone). Returns nil when the
    /// response cannot be completed (client gone, failure, shutdown) — any error has been answered by then.
    private func follow(_ job: Job, channel: EventChannel, emit: (String) -> Bool,
                        record: inout AccessRecord) -> (CompletionText, End)? {
        var text = CompletionText(tokenizer: model.tokenizer, stop: request.stop)
        var lastWrite = monotonicSeconds()
        var cancelledAt: Double?
        let poll = min(0.05, heartbeat)
        while true {
            guard let event = channel.next(timeout: poll) else {
                let now = monotonicSeconds()
                if let at = cancelledAt {
                    // A stop sequence ended it; the engine's final figures are late: answer without them.
                    if now - at > Self.cancelGrace {
                        return (text, End(reason: "stop", stats: SpeculationStats(method: job.parameters.method), timings: JobTimings(), tail: ""))
                    }
                    continue
                }
                if !writer.isConnected {
                    job.cancel()
                    record.note = "client gone"
                    return nil
                }
                if request.stream && now - lastWrite >= heartbeat {
                    guard writer.writeComment("ping") else {
                        job.cancel()
                        record.note = "client gone"
                        return nil
                    }
                    lastWrite = now
                }
                continue
            }
            switch event {
            case .started:
                continue
            case let .tokens(tokens):
                guard !text.stopped else { continue }
                let piece = text.append(tokens)
                if text.stopped {
                    job.cancel()
                    cancelledAt = monotonicSeconds()
                }
                if !piece.isEmpty || !request.stream {
                    guard emit(piece) else {
                        job.cancel()
                        record.note = "client gone"
                        return nil
                    }
                    if !piece.isEmpty { lastWrite = monotonicSeconds() }
                }
            case let .finished(reason, stats, timings):
                if text.stopped { return (text, End(reason: "stop", stats: stats, timings: timings, tail: "")) }
                switch reason {
                case .stop, .length:
                    let tail = text.finish()
                    return (text, End(reason: reason.rawValue, stats: stats, timings: timings, tail: tail))
                case .cancelled:
                    // Not cancelled by this connection: only the engine's shutdown ends a job that way.
                    fail(APIError(.serviceUnavailable, "the server is shutting down; the generation was cancelled"), &record)
                    return nil
                }
            case let .failed(message):
                fail(APIError(.internalServerError, "the generation failed: \(message)"), &record)
                return nil
            case .stopped:
                fail(APIError(.serviceUnavailable, "the server is shutting down; the generation was cancelled"), &record)
                return nil
            }
        }
    }

    private func fail(_ error: APIError, _ record: inout AccessRecord) {
        record.note = error.message
        if writer.hasStartedResponse {
            writer.writeErrorEvent(error.status, message: error.message, type: error.type, param: error.param)
            writer.finish()
        } else {
            writer.send(error)
        }
    }

    /// One line on how a request speculated, for the access log.
    static func summary(_ s: SpeculationStats) -> String {
        guard s.method != .none else { return "spec=none" }
        return String(format: "spec=%@ steps=%d accepted=%d/%d (%.0f%%) len=%.2f%@%@", s.method.rawValue, s.steps, s.accepted, s.drafted,
                      100 * s.acceptanceRate, s.meanAcceptanceLength, s.lossless ? "" : " lossy", s.autoDisabled ? " auto-off" : "")
    }
}

/// What the access log line says about a request beyond method, path, status and duration.
struct AccessRecord {
    var model: String?
    var promptTokens: Int?
    var completionTokens: Int?
    var speculation: String?
    var note: String?
}
