import Foundation

public enum HTTPVersion: Sendable, Hashable, CustomStringConvertible {
    case http1_0
    case http1_1

    public var description: String { self == .http1_0 ? "HTTP/1.0" : "HTTP/1.1" }
}

/// A complete request: head and fully read body (de-chunked when it arrived chunked).
public struct HTTPRequest: Sendable, Equatable {
    /// The method token exactly as sent (methods are case-sensitive).
    public var method: String
    /// The request-target exactly as sent, e.g. `/v1/completions?x=1`.
    public var target: String
    public var version: HTTPVersion
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(method: String, target: String, version: HTTPVersion = .http1_1,
                headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.body = body
    }

    public var bodyData: Data { Data(body) }

    /// The target up to (not including) `?`.
    public var path: String {
        guard let q = target.firstIndex(of: "?") else { return target }
        return String(target[..<q])
    }

    /// The raw query after `?`, or nil when there is none.
    public var query: String? {
        guard let q = target.firstIndex(of: "?") else { return nil }
        return String(target[target.index(after: q)...])
    }

    /// Whether the client allows the connection to persist after this request (RFC 9112 §9.3): HTTP/1.1
    /// unless `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`.
    public var keepAlive: Bool {
        let tokens = headers.tokens(for: "Connection")
        if tokens.contains("close") { return false }
        return version == .http1_1 || tokens.contains("keep-alive")
    }
}
