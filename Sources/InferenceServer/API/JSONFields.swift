// Typed reading of JSON objects with the path of every value, so that each error says exactly which value is
// wrong: `models[0].speculation.draft.p_min: expected a number, found string` in the config, the OpenAI `param`
// (`stream_options.include_usage`) in a request.

/// A value that is missing, unknown, of the wrong type or out of range, at `path` ("" for the whole document).
public struct JSONFieldError: Error, Equatable, CustomStringConvertible {
    public let path: String
    public let message: String
    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }
    public var description: String { path.isEmpty ? message : "\(path): \(message)" }
}

extension JSONValue {
    func mismatch(_ expected: String, at path: String) -> JSONFieldError {
        JSONFieldError(path: path, message: "expected \(expected), found \(typeName)")
    }

    func int(at path: String) throws(JSONFieldError) -> Int {
        switch self {
        case let .integer(v):
            guard let exact = Int(exactly: v) else { throw JSONFieldError(path: path, message: "\(v) is out of range") }
            return exact
        case let .number(v) where v == v.rounded() && abs(v) < 9e15:
            return Int(v)
        case let .number(v) where v == v.rounded():
            throw JSONFieldError(path: path, message: "\(v) is out of range")
        case .number:
            throw JSONFieldError(path: path, message: "expected an integer, found a fraction")
        default:
            throw mismatch("an integer", at: path)
        }
    }

    func double(at path: String) throws(JSONFieldError) -> Double {
        switch self {
        case let .integer(v): return Double(v)
        case let .number(v): return v
        default: throw mismatch("a number", at: path)
        }
    }

    func bool(at path: String) throws(JSONFieldError) -> Bool {
        guard case let .bool(v) = self else { throw mismatch("a boolean", at: path) }
        return v
    }

    func string(at path: String) throws(JSONFieldError) -> String {
        guard case let .string(v) = self else { throw mismatch("a string", at: path) }
        return v
    }

    func array(at path: String) throws(JSONFieldError) -> [JSONValue] {
        guard case let .array(v) = self else { throw mismatch("an array", at: path) }
        return v
    }

    var isNull: Bool { self == .null }
}

/// One JSON object being read: its keys are checked against the known ones up front.
struct JSONObjectReader {
    let fields: [String: JSONValue]
    let path: String
    /// Whether `null` reads as "not given" (OpenAI clients send `"stop": null`); otherwise it is a wrong type
    /// unless the field is read as nullable.
    let nullIsAbsent: Bool

    /// `value` must be an object whose keys are all in `keys`.
    init(_ value: JSONValue, at path: String, keys: Set<String>, nullIsAbsent: Bool) throws(JSONFieldError) {
        guard case let .object(fields) = value else { throw value.mismatch("an object", at: path) }
        if let unknown = fields.keys.filter({ !keys.contains($0) }).sorted().first {
            let known = keys.sorted().joined(separator: ", ")
            throw JSONFieldError(path: Self.join(path, unknown), message: "unknown key (known keys: \(known))")
        }
        self.fields = fields
        self.path = path
        self.nullIsAbsent = nullIsAbsent
    }

    static func join(_ path: String, _ key: String) -> String { path.isEmpty ? key : path + "." + key }

    func path(_ key: String) -> String { Self.join(path, key) }

    /// The value of `key`, nil when absent (or null, when null means absent).
    func value(_ key: String) -> JSONValue? {
        guard let v = fields[key] else { return nil }
        return nullIsAbsent && v.isNull ? nil : v
    }

    func has(_ key: String) -> Bool { value(key) != nil }

    func required<T>(_ key: String, _ read: (JSONValue, String) throws(JSONFieldError) -> T) throws(JSONFieldError) -> T {
        guard let v = value(key) else { throw JSONFieldError(path: path(key), message: "missing (required)") }
        return try read(v, path(key))
    }

    func optional<T>(_ key: String, _ read: (JSONValue, String) throws(JSONFieldError) -> T) throws(JSONFieldError) -> T? {
        guard let v = value(key) else { return nil }
        return try read(v, path(key))
    }

    /// A value that may be absent or explicitly null (nil either way).
    func nullable<T>(_ key: String, _ read: (JSONValue, String) throws(JSONFieldError) -> T) throws(JSONFieldError) -> T? {
        guard let v = fields[key], !v.isNull else { return nil }
        return try read(v, path(key))
    }

    func int(_ key: String, default fallback: Int, in range: ClosedRange<Int>) throws(JSONFieldError) -> Int {
        let v = try optional(key) { (v, p) throws(JSONFieldError) in try v.int(at: p) } ?? fallback
        guard range.contains(v) else { throw outOfRange(key, "\(v)", range.lowerBound, range.upperBound) }
        return v
    }

    func double(_ key: String, default fallback: Double, in range: ClosedRange<Double>) throws(JSONFieldError) -> Double {
        let v = try optional(key) { (v, p) throws(JSONFieldError) in try v.double(at: p) } ?? fallback
        guard range.contains(v) else { throw outOfRange(key, "\(v)", range.lowerBound, range.upperBound) }
        return v
    }

    func bool(_ key: String, default fallback: Bool) throws(JSONFieldError) -> Bool {
        try optional(key) { (v, p) throws(JSONFieldError) in try v.bool(at: p) } ?? fallback
    }

    func string(_ key: String, default fallback: String) throws(JSONFieldError) -> String {
        try optional(key) { (v, p) throws(JSONFieldError) in try v.string(at: p) } ?? fallback
    }

    /// A string that must be one of `choices`.
    func choice(_ key: String, default fallback: String, of choices: [String]) throws(JSONFieldError) -> String {
        let v = try string(key, default: fallback)
        guard choices.contains(v) else {
            throw JSONFieldError(path: path(key), message: "'\(v)' is not one of \(choices.joined(separator: ", "))")
        }
        return v
    }

    func outOfRange<N>(_ key: String, _ value: String, _ low: N, _ high: N) -> JSONFieldError {
        let bounds: String
        if let high = high as? Int, high == Int.max { bounds = "≥ \(low)" } else
        if let high = high as? Double, high == .infinity { bounds = "≥ \(low)" } else { bounds = "in \(low)...\(high)" }
        return JSONFieldError(path: path(key), message: "\(value) is out of range (must be \(bounds))")
    }
}
