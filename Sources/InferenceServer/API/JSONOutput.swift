// Response bodies written with their keys in a fixed order (`id` first, as OpenAI writes them), which
// JSONEncoder does not keep, and without its cost on every streamed chunk.

enum JSONOutput {
    case null
    case bool(Bool)
    case int(Int)
    /// Written as null when not finite (JSON has no NaN or infinity).
    case double(Double)
    case string(String)
    case array([JSONOutput])
    case object(KeyValuePairs<String, JSONOutput>)
    /// An object built at run time.
    case fields([(String, JSONOutput)])

    var bytes: [UInt8] {
        var out = ""
        write(to: &out)
        return Array(out.utf8)
    }

    var text: String {
        var out = ""
        write(to: &out)
        return out
    }

    func write(to out: inout String) {
        switch self {
        case .null: out += "null"
        case let .bool(b): out += b ? "true" : "false"
        case let .int(n): out += String(n)
        case let .double(d): out += d.isFinite ? (d == d.rounded() && abs(d) < 1e15 ? String(Int(d)) : String(d)) : "null"
        case let .string(s): out += JSONText.quoted(s)
        case let .array(items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                item.write(to: &out)
            }
            out += "]"
        case let .object(pairs):
            writeObject(pairs.map { ($0.key, $0.value) }, to: &out)
        case let .fields(pairs):
            writeObject(pairs, to: &out)
        }
    }

    private func writeObject(_ pairs: [(String, JSONOutput)], to out: inout String) {
        out += "{"
        for (i, (key, value)) in pairs.enumerated() {
            if i > 0 { out += "," }
            out += JSONText.quoted(key) + ":"
            value.write(to: &out)
        }
        out += "}"
    }

    static func optional(_ s: String?) -> JSONOutput { s.map { .string($0) } ?? .null }
}
