import Foundation
import Synchronization

// GET /metrics: every model's engine metrics (EngineMetrics.prometheusText) labelled with `model_name` as vLLM
// does, merged so that each metric family appears once, then the HTTP request counter.

/// Requests answered, by route, method and status.
final class RequestCounters: Sendable {
    private struct Key: Hashable, Comparable {
        var route: String, method: String, status: Int
        static func < (a: Key, b: Key) -> Bool { (a.route, a.method, a.status) < (b.route, b.method, b.status) }
    }
    private let counts = Mutex<[Key: Int]>([:])

    func add(route: String, method: String, status: Int) {
        // Methods are client text: only the standard ones become label values.
        let known = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"].contains(method) ? method : "other"
        counts.withLock { $0[Key(route: route, method: known, status: status), default: 0] += 1 }
    }

    func prometheusText() -> String {
        let snapshot = counts.withLock { $0 }
        var out = "# HELP specserve:http_requests_total HTTP requests answered, by route, method and status.\n"
        out += "# TYPE specserve:http_requests_total counter\n"
        for key in snapshot.keys.sorted() {
            out += "specserve:http_requests_total{route=\"\(key.route)\",method=\"\(key.method)\",status=\"\(key.status)\"} \(snapshot[key]!)\n"
        }
        return out
    }
}

extension APIRouter {
    func metricsText(_ models: [ServedModel]) -> String {
        mergeMetrics(models.map { (labels: "model_name=\"\(escapeLabel($0.id))\"", text: $0.engine.metrics.prometheusText()) })
            + requestCounts.prometheusText()
    }
}

/// Merges Prometheus texts, adding `labels` to each text's samples; each family keeps its HELP and TYPE lines once,
/// followed by the samples of every text, in the order families first appear.
func mergeMetrics(_ texts: [(labels: String, text: String)]) -> String {
    var order: [String] = []
    var headers: [String: [String]] = [:]
    var samples: [String: [String]] = [:]
    for (labels, text) in texts {
        var family = ""
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.hasPrefix("#") {
                let parts = line.split(separator: " ", maxSplits: 3)
                guard parts.count >= 3 else { continue }
                family = String(parts[2])
                if headers[family] == nil {
                    order.append(family)
                    headers[family] = []
                }
                if !headers[family]!.contains(String(line)) {
                    headers[family]!.append(String(line))
                }
                continue
            }
            if headers[family] == nil {  // a sample without a header: its own family
                family = String(line.prefix { $0 != "{" && $0 != " " })
                order.append(family)
                headers[family] = []
            }
            samples[family, default: []].append(addLabels(String(line), labels))
        }
    }
    var out = ""
    for family in order {
        for h in headers[family]! { out += h + "\n" }
        for s in samples[family] ?? [] { out += s + "\n" }
    }
    return out
}

/// `name{a="1"} 2` → `name{labels,a="1"} 2`; `name 2` → `name{labels} 2`.
func addLabels(_ sample: String, _ labels: String) -> String {
    guard !labels.isEmpty else { return sample }
    if let brace = sample.firstIndex(of: "{") {
        let after = sample.index(after: brace)
        let empty = sample[after...].hasPrefix("}")
        return String(sample[...brace]) + labels + (empty ? "" : ",") + sample[after...]
    }
    guard let space = sample.firstIndex(of: " ") else { return sample }
    return String(sample[..<space]) + "{" + labels + "}" + sample[space...]
}

/// A label value with `\`, `"` and newlines escaped (the text format's rules).
func escapeLabel(_ value: String) -> String {
    value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        .replacingOccurrences(of: "\n", with: "\\n")
}
