import Foundation
import SpeculativeDecoding

// The server's counters (DESIGN §6), in Prometheus text format under the `specserve:` prefix. Speculation
// counters are named like vLLM's so existing dashboards read them.

public final class EngineMetrics: @unchecked Sendable {
    private let lock = NSLock()
    private var promptTokens = 0, generationTokens = 0
    private var requests: [String: Int] = [:]           // by finish reason
    private var speculation = SpeculationStats()
    private var perMethod: [String: Int] = [:]
    private var running = 0, waiting = 0
    private var forwardRows = 0, forwards = 0
    private var draftForwardRows = 0, draftForwards = 0
    private var ttft = Histogram(bounds: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10])
    private var perToken = Histogram(bounds: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25])

    public init() {}

    func setRunning(_ n: Int) { lock.withLock { running = n } }
    func setWaiting(_ n: Int) { lock.withLock { waiting = n } }
    func observeForward(rows: Int, seconds: Double) { lock.withLock { forwards += 1; forwardRows += rows } }
    func observeDraftForward(rows: Int) { lock.withLock { draftForwards += 1; draftForwardRows += rows } }
    func observeTimeToFirstToken(_ seconds: Double) { lock.withLock { ttft.observe(seconds) } }

    func record(finished reason: FinishReason, stats: SpeculationStats, timings: JobTimings) {
        lock.withLock {
            promptTokens += timings.promptTokens
            generationTokens += timings.generatedTokens
            requests[reason.rawValue, default: 0] += 1
            perMethod[stats.method.rawValue, default: 0] += 1
            speculation.add(stats)
            if timings.generatedTokens > 1 {
                perToken.observe(timings.generationMs / 1e3 / Double(timings.generatedTokens - 1))
            }
        }
    }

    /// Totals of every finished request's speculation.
    public var speculationTotals: SpeculationStats { lock.withLock { speculation } }

    public func prometheusText() -> String {
        lock.withLock {
            var out = ""
            func metric(_ name: String, _ type: String, _ help: String, _ samples: [(String, Double)]) {
                out += "# HELP specserve:\(name) \(help)\n# TYPE specserve:\(name) \(type)\n"
                for (labels, value) in samples { out += "specserve:\(name)\(labels) \(format(value))\n" }
            }
            metric("prompt_tokens_total", "counter", "Prompt tokens processed.", [("", Double(promptTokens))])
            metric("generation_tokens_total", "counter", "Tokens generated.", [("", Double(generationTokens))])
            metric("request_success_total", "counter", "Finished requests by finish reason.",
                   requests.keys.sorted().map { ("{finished_reason=\"\($0)\"}", Double(requests[$0]!)) })
            metric("requests_by_method_total", "counter", "Finished requests by speculative method.",
                   perMethod.keys.sorted().map { ("{method=\"\($0)\"}", Double(perMethod[$0]!)) })
            metric("num_requests_running", "gauge", "Requests decoding now.", [("", Double(running))])
            metric("num_requests_waiting", "gauge", "Requests queued.", [("", Double(waiting))])
            metric("forward_passes_total", "counter", "Batched forward passes run by the engine.", [("", Double(forwards))])
            metric("forward_rows_total", "counter", "Rows computed in those passes (prompt, verify and tree rows).", [("", Double(forwardRows))])
            metric("draft_forward_passes_total", "counter", "Batched forward passes of draft models.", [("", Double(draftForwards))])
            metric("draft_forward_rows_total", "counter", "Rows computed in those passes.", [("", Double(draftForwardRows))])
            metric("spec_decode_num_drafts_total", "counter", "Speculative steps that carried a draft.", [("", Double(speculation.steps))])
            metric("spec_decode_num_draft_tokens_total", "counter", "Draft tokens offered for verification.", [("", Double(speculation.drafted))])
            metric("spec_decode_num_accepted_tokens_total", "counter", "Draft tokens accepted.", [("", Double(speculation.accepted))])
            metric("spec_decode_num_accepted_tokens_per_pos_total", "counter", "Accepted draft tokens by draft position.",
                   speculation.acceptedPerPosition.enumerated().map { ("{position=\"\($0.offset)\"}", Double($0.element)) })
            out += ttft.render(name: "specserve:time_to_first_token_seconds", help: "Time from request to first token.")
            out += perToken.render(name: "specserve:time_per_output_token_seconds", help: "Decode time per output token after the first.")
            return out
        }
    }
}

struct Histogram {
    let bounds: [Double]
    var counts: [Int]
    var sum = 0.0
    var total = 0

    init(bounds: [Double]) {
        self.bounds = bounds
        counts = Array(repeating: 0, count: bounds.count)
    }

    mutating func observe(_ v: Double) {
        for (i, b) in bounds.enumerated() where v <= b { counts[i] += 1 }
        sum += v
        total += 1
    }

    func render(name: String, help: String) -> String {
        var out = "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
        for (b, c) in zip(bounds, counts) { out += "\(name)_bucket{le=\"\(format(b))\"} \(c)\n" }
        out += "\(name)_bucket{le=\"+Inf\"} \(total)\n\(name)_sum \(format(sum))\n\(name)_count \(total)\n"
        return out
    }
}

func format(_ v: Double) -> String {
    v == v.rounded() && abs(v) < 1e15 ? String(Int(v)) : String(v)
}
