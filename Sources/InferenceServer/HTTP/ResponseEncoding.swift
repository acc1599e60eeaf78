import Glibc

/// Serialises response heads and chunks (pure functions; the writer sends what they return in one call).
enum ResponseEncoding {
    enum BodyFraming: Equatable {
        /// `Content-Length: n`.
        case length(Int)
        /// `Transfer-Encoding: chunked`.
        case chunked
        /// No length: the body ends when the connection closes (streaming to HTTP/1.0 clients).
        case untilClose
        /// No body and no length field (1xx, 204, 304).
        case none
    }

    /// Fields the server owns; a handler's values for them are dropped.
    static let serverOwnedFields = ["Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "Date"]

    /// `HTTP/1.1 <status>` plus the handler's fields (sanitised), framing, `Connection` and `Date`.
    /// `connection` is "close", "keep-alive" or nil (HTTP/1.1's default, persistent).
    static func head(status: HTTPStatus, headers: HTTPHeaders, framing: BodyFraming, connection: String?,
                     date: String = httpDate()) -> [UInt8] {
        var out = "HTTP/1.1 \(status.code) \(singleLine(status.reasonPhrase))\r\n"
        for field in headers where !serverOwnedFields.contains(where: { HTTPHeaders.namesEqual($0, field.name) }) {
            guard !field.name.isEmpty, field.name.utf8.allSatisfy(ASCII.isTokenCharacter) else { continue }
            out += field.name + ": " + singleLine(field.value) + "\r\n"
        }
        switch framing {
        case .length(let n): out += "Content-Length: \(n)\r\n"
        case .chunked: out += "Transfer-Encoding: chunked\r\n"
        case .untilClose, .none: break
        }
        if let connection { out += "Connection: \(connection)\r\n" }
        out += "Date: \(date)\r\n\r\n"
        return Array(out.utf8)
    }

    /// One chunk: size in hex, CRLF, the bytes, CRLF. Empty input gives nothing (an empty chunk would end the body).
    static func chunk(_ bytes: [UInt8]) -> [UInt8] {
        guard !bytes.isEmpty else { return [] }
        var out = Array(String(bytes.count, radix: 16).utf8)
        out.reserveCapacity(out.count + bytes.count + 4)
        out += [ASCII.cr, ASCII.lf]
        out += bytes
        out += [ASCII.cr, ASCII.lf]
        return out
    }

    static let lastChunk: [UInt8] = Array("0\r\n\r\n".utf8)
    static let continueLine: [UInt8] = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)

    /// Replaces CR, LF and other control characters (except tab) with spaces, so no value can inject a field.
    static func singleLine(_ text: String) -> String {
        guard text.utf8.contains(where: { ASCII.isControl($0) && $0 != ASCII.tab }) else { return text }
        return String(decoding: text.utf8.map { ASCII.isControl($0) && $0 != ASCII.tab ? ASCII.space : $0 }, as: UTF8.self)
    }

    /// The IMF-fixdate of RFC 9110 §5.6.7, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
    static func httpDate(_ seconds: Int = Int(time(nil))) -> String {
        var t = time_t(seconds)
        var parts = tm()
        gmtime_r(&t, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let day = days[Int(max(0, min(6, parts.tm_wday)))]
        let month = months[Int(max(0, min(11, parts.tm_mon)))]
        return "\(day), \(two(parts.tm_mday)) \(month) \(parts.tm_year + 1900) \(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }
}
