// An ordered list of header fields. Duplicates are kept in arrival order; names compare ASCII
// case-insensitively (RFC 9110 §5.1).

public struct HTTPHeaders: Sendable, Equatable, Sequence, ExpressibleByDictionaryLiteral, CustomStringConvertible {
    public struct Field: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    public private(set) var fields: [Field]

    public init() { fields = [] }
    public init(_ pairs: [(String, String)]) { fields = pairs.map { Field(name: $0.0, value: $0.1) } }
    public init(dictionaryLiteral elements: (String, String)...) { self.init(elements) }

    public var count: Int { fields.count }
    public var isEmpty: Bool { fields.isEmpty }
    public func makeIterator() -> IndexingIterator<[Field]> { fields.makeIterator() }
    public var description: String { fields.map { "\($0.name): \($0.value)" }.joined(separator: "\n") }

    /// The first value of `name`; setting replaces every field of that name (nil removes them).
    public subscript(name: String) -> String? {
        get { fields.first { HTTPHeaders.namesEqual($0.name, name) }?.value }
        set {
            remove(name)
            if let newValue { add(name, newValue) }
        }
    }

    /// Every value of `name` in arrival order.
    public func values(for name: String) -> [String] {
        fields.filter { HTTPHeaders.namesEqual($0.name, name) }.map(\.value)
    }

    /// Every comma-separated element of every `name` field, trimmed and lowercased, empty elements dropped
    /// (how list-valued fields such as `Connection` and `Transfer-Encoding` are read).
    public func tokens(for name: String) -> [String] {
        values(for: name).flatMap { value in
            value.split(separator: ",").map { HTTPHeaders.trimmingWhitespace(Substring($0)).lowercased() }
        }.filter { !$0.isEmpty }
    }

    public func contains(_ name: String) -> Bool { fields.contains { HTTPHeaders.namesEqual($0.name, name) } }

    public mutating func add(_ name: String, _ value: String) { fields.append(Field(name: name, value: value)) }

    public mutating func remove(_ name: String) { fields.removeAll { HTTPHeaders.namesEqual($0.name, name) } }

    public static func namesEqual(_ a: String, _ b: String) -> Bool {
        let x = a.utf8, y = b.utf8
        guard x.count == y.count else { return false }
        for (p, q) in zip(x, y) where p != q {
            if asciiLower(p) != asciiLower(q) { return false }
        }
        return true
    }

    static func asciiLower(_ byte: UInt8) -> UInt8 { (byte >= 65 && byte <= 90) ? byte + 32 : byte }

    static func trimmingWhitespace(_ s: Substring) -> String {
        var view = s.utf8[...]
        while let first = view.first, first == 0x20 || first == 0x09 { view = view.dropFirst() }
        while let last = view.last, last == 0x20 || last == 0x09 { view = view.dropLast() }
        return String(Substring(view))
    }
}
