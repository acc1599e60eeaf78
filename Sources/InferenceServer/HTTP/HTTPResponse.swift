import Foundation

/// A whole response: status, headers and a body of known length. The server adds `Content-Length`,
/// `Connection` and `Date` itself (any such fields set here are replaced).
public struct HTTPResponse: Sendable, Equatable {
    public var status: HTTPStatus
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(status: HTTPStatus = .ok, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public init(status: HTTPStatus = .ok, headers: HTTPHeaders = HTTPHeaders(), body: Data) {
        self.init(status: status, headers: headers, body: [UInt8](body))
    }

    /// `Content-Type: application/json` with the given encoded body.
    public static func json(_ status: HTTPStatus = .ok, _ body: [UInt8], headers: HTTPHeaders = HTTPHeaders()) -> HTTPResponse {
        var headers = headers
        headers["Content-Type"] = "application/json"
        return HTTPResponse(status: status, headers: headers, body: body)
    }

    public static func json(_ status: HTTPStatus = .ok, _ body: Data, headers: HTTPHeaders = HTTPHeaders()) -> HTTPResponse {
        json(status, [UInt8](body), headers: headers)
    }

    /// `Content-Type: text/plain; charset=utf-8`.
    public static func text(_ status: HTTPStatus = .ok, _ text: String, headers: HTTPHeaders = HTTPHeaders()) -> HTTPResponse {
        var headers = headers
        headers["Content-Type"] = "text/plain; charset=utf-8"
        return HTTPResponse(status: status, headers: headers, body: Array(text.utf8))
    }

    /// An OpenAI-style error object (see OpenAIErrorBody) with the status as its code.
    public static func error(_ status: HTTPStatus, message: String, type: String? = nil, param: String? = nil,
                             headers: HTTPHeaders = HTTPHeaders()) -> HTTPResponse {
        json(status, OpenAIErrorBody.json(status: status, message: message, type: type, param: param), headers: headers)
    }
}

/// The body `{"error": {"message": ..., "type": ..., "param": ..., "code": <status>}}` that OpenAI clients parse.
public enum OpenAIErrorBody {
    public static func json(status: HTTPStatus, message: String, type: String? = nil, param: String? = nil) -> [UInt8] {
        var out = "{\"error\":{\"message\":"
        out += JSONText.quoted(message)
        out += ",\"type\":" + JSONText.quoted(type ?? defaultType(for: status))
        out += ",\"param\":" + (param.map(JSONText.quoted) ?? "null")
        out += ",\"code\":\(status.code)}}"
        return Array(out.utf8)
    }

    /// The error type OpenAI uses for a status.
    public static func defaultType(for status: HTTPStatus) -> String {
        switch status.code {
        case 401: return "authentication_error"
        case 403: return "permission_error"
        case 404: return "not_found_error"
        case 429: return "rate_limit_error"
        case 503: return "service_unavailable_error"
        case 500...: return "server_error"
        default: return "invalid_request_error"
        }
    }
}

enum JSONText {
    /// A JSON string literal for `text` (RFC 8259 §7).
    static func quoted(_ text: String) -> String {
        var out = "\""
        out.reserveCapacity(text.utf8.count + 2)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

/// One Server-Sent Event (the `text/event-stream` format of the HTML standard, §9.2).
public struct ServerSentEvent: Sendable, Equatable {
    public var data: String
    public var event: String?
    public var id: String?

    public init(data: String, event: String? = nil, id: String? = nil) {
        self.data = data
        self.event = event
        self.id = id
    }

    /// `event:`/`id:` lines when set, one `data:` line per line of data, then a blank line.
    public var encoded: [UInt8] {
        var out = ""
        if let event { out += "event: " + ServerSentEvent.singleLine(event) + "\n" }
        if let id { out += "id: " + ServerSentEvent.singleLine(id) + "\n" }
        let normalized = data.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
        for line in normalized.split(separator: "\n", omittingEmptySubsequences: false) {
            out += "data: " + line + "\n"
        }
        return Array((out + "\n").utf8)
    }

    /// A comment line (`: text`), which clients ignore: the keep-alive heartbeat.
    public static func comment(_ text: String) -> [UInt8] { Array((": " + singleLine(text) + "\n\n").utf8) }

    static func singleLine(_ text: String) -> String {
        String(text.unicodeScalars.map { $0 == "\n" || $0 == "\r" ? " " : Character($0) })
    }
}
