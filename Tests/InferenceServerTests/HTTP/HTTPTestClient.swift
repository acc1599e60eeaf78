import Foundation
import Glibc
import XCTest
@testable import InferenceServer

/// A raw loopback HTTP client for end-to-end tests: it writes exactly the bytes a test gives it and reads
/// responses with its own small decoder (independent of the server's code), every read bounded by a deadline.
final class HTTPTestClient {
    struct Response {
        var status: Int
        var headers: [(String, String)]
        var body: [UInt8]

        func header(_ name: String) -> String? {
            headers.first { $0.0.lowercased() == name.lowercased() }?.1
        }
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    enum Failure: Error { case connect(Int32), timedOut(String), closed(String), malformed(String) }

    let fd: Int32
    private var buffer: [UInt8] = []
    private var isClosed = false

    /// Connects to 127.0.0.1:port.
    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure.connect(errno) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            let code = errno
            Glibc.close(fd)
            throw Failure.connect(code)
        }
    }

    /// Wraps an already created (possibly unconnected) descriptor.
    init(descriptor: Int32) { fd = descriptor }

    deinit { close() }

    func close() {
        if !isClosed {
            isClosed = true
            Glibc.close(fd)
        }
    }

    func send(_ text: String) { send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }

    /// Reads one response (status line, headers and body framed by Content-Length, chunks, or close).
    /// A 1xx response is returned on its own; call again for the final one.
    func readResponse(timeout: Double = 3, isHead: Bool = false) throws -> Response {
        var response = try readHead(timeout: timeout)
        if (100..<200).contains(response.status) || response.status == 204 || response.status == 304 || isHead {
            return response
        }
        let deadline = Monotonic.now() + timeout
        if response.header("Transfer-Encoding")?.lowercased() == "chunked" {
            while let chunk = try readChunk(timeout: deadline - Monotonic.now()) { response.body += chunk }
        } else if let length = response.header("Content-Length").flatMap(Int.init) {
            response.body = try take(length, deadline: deadline)
        } else {
            response.body = readUntilClosed(timeout: deadline - Monotonic.now())
        }
        return response
    }

    /// Reads a status line and headers only.
    func readHead(timeout: Double = 3) throws -> Response {
        let deadline = Monotonic.now() + timeout
        let end: Int = try {
            while true {
                if let range = find([13, 10, 13, 10]) { return range }
                try fill(deadline: deadline, context: "response head")
            }
        }()
        let head = String(decoding: buffer[..<end], as: UTF8.self)
        buffer.removeFirst(end + 4)
        var lines = head.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ", maxSplits: 2)
        guard statusLine.count >= 2, statusLine[0] == "HTTP/1.1", let status = Int(statusLine[1]) else {
            throw Failure.malformed(head)
        }
        let headers: [(String, String)] = lines.compactMap { line in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        return Response(status: status, headers: headers, body: [])
    }

    /// Reads one chunk of a chunked body; nil at the last chunk (after its trailer section).
    func readChunk(timeout: Double = 3) throws -> [UInt8]? {
        let deadline = Monotonic.now() + timeout
        while find([13, 10]) == nil { try fill(deadline: deadline, context: "chunk size") }
        let lineEnd = find([13, 10])!
        let sizeText = String(decoding: buffer[..<lineEnd], as: UTF8.self)
        buffer.removeFirst(lineEnd + 2)
        guard let size = Int(sizeText, radix: 16) else { throw Failure.malformed("chunk size \(sizeText)") }
        if size == 0 {
            while find([13, 10]) == nil { try fill(deadline: deadline, context: "last chunk") }
            buffer.removeFirst(find([13, 10])! + 2)
            return nil
        }
        let data = try take(size + 2, deadline: deadline)
        guard data.suffix(2) == [13, 10] else { throw Failure.malformed("chunk not ended by CRLF") }
        return Array(data.prefix(size))
    }

    /// Everything until the server closes (or the timeout passes).
    func readUntilClosed(timeout: Double = 3) -> [UInt8] {
        let deadline = Monotonic.now() + timeout
        while (try? fill(deadline: deadline, context: "")) != nil {}
        defer { buffer.removeAll() }
        return buffer
    }

    /// True when the server closes the connection within `timeout` without sending anything more.
    func waitForClose(timeout: Double = 3) -> Bool {
        let deadline = Monotonic.now() + timeout
        do {
            try fill(deadline: deadline, context: "")
            return false
        } catch Failure.closed {
            return buffer.isEmpty
        } catch {
            return false
        }
    }

    private func take(_ count: Int, deadline: Double) throws -> [UInt8] {
        while buffer.count < count { try fill(deadline: deadline, context: "\(count) body bytes") }
        defer { buffer.removeFirst(count) }
        return Array(buffer[..<count])
    }

    private func find(_ pattern: [UInt8]) -> Int? {
        guard buffer.count >= pattern.count else { return nil }
        for i in 0...(buffer.count - pattern.count) where buffer[i] == pattern[0] {
            if Array(buffer[i..<(i + pattern.count)]) == pattern { return i }
        }
        return nil
    }

    private func fill(deadline: Double, context: String) throws {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let left = deadline - Monotonic.now()
        guard left > 0, poll(&p, 1, Int32(left * 1000) + 1) > 0 else { throw Failure.timedOut(context) }
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { throw Failure.closed(context) }
        buffer += chunk[..<n]
    }
}

/// Helpers shared by the end-to-end HTTP tests.
enum HTTPTesting {
    /// Starts a server on 127.0.0.1 with a free port and short timeouts suited to tests.
    static func makeServer(maxConnections: Int = 8, headTimeout: Double = 2, bodyTimeout: Double = 2,
                           idleTimeout: Double = 5,
                           limits: HTTPLimits = HTTPLimits(maxRequestLineBytes: 256, maxHeaderBytes: 1024,
                                                           maxHeaderCount: 20, maxBodyBytes: 4096),
                           handler: @escaping HTTPServer.Handler) throws -> HTTPServer {
        let configuration = HTTPServerConfiguration(host: "127.0.0.1", port: 0, maxConnections: maxConnections,
                                                    limits: limits, headTimeout: headTimeout, bodyTimeout: bodyTimeout,
                                                    idleTimeout: idleTimeout, writeTimeout: 2, lingerTimeout: 0.5, log: nil)
        let server = HTTPServer(configuration: configuration, handler: handler)
        try server.start()
        return server
    }

    /// Echoes method, path and body as `METHOD path body`.
    static let echo: HTTPServer.Handler = { request, writer in
        writer.send(.text(.ok, "\(request.method) \(request.target) \(String(decoding: request.body, as: UTF8.self))"))
    }

    /// Polls `condition` every 10 ms until it holds or `timeout` passes.
    static func eventually(timeout: Double = 3, _ condition: () -> Bool) -> Bool {
        let deadline = Monotonic.now() + timeout
        while Monotonic.now() < deadline {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }
}
