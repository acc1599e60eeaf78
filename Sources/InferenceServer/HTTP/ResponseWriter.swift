import Foundation
import Synchronization

/// How a handler answers one request: either one whole response (`send`), or a stream (`startStream` /
/// `startEventStream`, then `write`/`writeEvent`, then `finish`). Every write goes straight to the socket in one
/// send (nothing is buffered), and returns false once the client is gone, which is also what `isConnected`
/// reports; a generation loop polls either to cancel within one step.
///
/// The handler runs on the connection's thread, and may pass the writer to another thread (an engine producing
/// tokens); calls are serialised by an internal lock. The writer is valid until the handler returns: after that
/// every call is a no-op that returns false. When the handler returns without responding the server answers 500;
/// an unfinished stream is finished for it.
///
/// `@unchecked Sendable`: all mutable state is read and written only under `lock`, and `invalidate()` (under the
/// same lock) happens before the connection closes the descriptor, so no call can reach a closed descriptor.
public final class ResponseWriter: @unchecked Sendable {
    private enum State { case pending, streaming(ResponseEncoding.BodyFraming), finished }

    /// `ip:port` of the client, for logs.
    public let remoteAddress: String

    private let lock = NSLock()
    private let socket: Socket
    private let draining: DrainFlag
    private let version: HTTPVersion
    private let isHead: Bool
    private let requestKeepAlive: Bool

    private var state = State.pending
    private var connected = true
    private var valid = true
    private var keepAlive = false
    private var status: HTTPStatus?

    init(socket: Socket, request: HTTPRequest, remoteAddress: String, draining: DrainFlag) {
        self.socket = socket
        self.remoteAddress = remoteAddress
        self.draining = draining
        self.version = request.version
        self.isHead = request.method == "HEAD"
        self.requestKeepAlive = request.keepAlive
    }

    // MARK: State

    /// False once a write failed, the client closed or reset the connection, or the server force-closed it at
    /// the end of a shutdown. Costs one poll(2) without blocking.
    public var isConnected: Bool {
        withLock {
            guard valid, connected else { return false }
            if socket.peerHasClosed() { connected = false }
            return connected
        }
    }

    /// Whether a status line has been sent.
    public var hasStartedResponse: Bool { withLock { if case .pending = state { false } else { true } } }

    /// True once the server has begun a graceful shutdown (a health route answers 503; this response will
    /// carry `Connection: close`).
    public var serverIsShuttingDown: Bool { draining.isSet }

    /// The status sent, for access logs (nil before a response starts).
    public var responseStatus: HTTPStatus? { withLock { status } }

    // MARK: Whole responses

    /// Sends a whole response with `Content-Length`. False if a response was already started or the client is gone.
    @discardableResult
    public func send(_ response: HTTPResponse) -> Bool {
        withLock { sendLocked(response) }
    }

    @discardableResult
    public func send(status: HTTPStatus, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) -> Bool {
        send(HTTPResponse(status: status, headers: headers, body: body))
    }

    /// Sends an OpenAI-style JSON error (OpenAIErrorBody) with `status` as its code.
    @discardableResult
    public func sendError(_ status: HTTPStatus, message: String, type: String? = nil, param: String? = nil) -> Bool {
        send(.error(status, message: message, type: type, param: param))
    }

    // MARK: Streams

    /// Starts a response whose body follows in `write` calls: chunked for HTTP/1.1, delimited by closing the
    /// connection for HTTP/1.0. The head is sent at once.
    @discardableResult
    public func startStream(status: HTTPStatus = .ok, headers: HTTPHeaders = HTTPHeaders()) -> Bool {
        withLock {
            guard valid, case .pending = state else { return false }
            let chunked = version == .http1_1
            let framing: ResponseEncoding.BodyFraming = chunked ? .chunked : .untilClose
            self.status = status
            keepAlive = chunked && requestKeepAlive && !Self.asksToClose(headers) && !draining.isSet
            state = .streaming(framing)
            guard connected else { return false }
            let head = ResponseEncoding.head(status: status, headers: headers, framing: framing,
                                             connection: keepAlive ? nil : "close")
            connected = socket.sendAll(head)
            return connected
        }
    }

    /// `startStream` with `Content-Type: text/event-stream` and `Cache-Control: no-cache`.
    @discardableResult
    public func startEventStream(status: HTTPStatus = .ok, headers: HTTPHeaders = HTTPHeaders()) -> Bool {
        var headers = headers
        headers["Content-Type"] = "text/event-stream"
        if !headers.contains("Cache-Control") { headers["Cache-Control"] = "no-cache" }
        return startStream(status: status, headers: headers)
    }

    /// Sends `bytes` as one chunk, now. False when no stream is open or the client is gone.
    @discardableResult
    public func write(_ bytes: [UInt8]) -> Bool {
        withLock {
            guard valid, connected, case .streaming(let framing) = state else { return false }
            if isHead || bytes.isEmpty { return true }
            if socket.peerHasClosed() {
                connected = false
                return false
            }
            connected = socket.sendAll(framing == .chunked ? ResponseEncoding.chunk(bytes) : bytes)
            return connected
        }
    }

    @discardableResult
    public func write(_ text: String) -> Bool { write(Array(text.utf8)) }

    @discardableResult
    public func writeEvent(_ event: ServerSentEvent) -> Bool { write(event.encoded) }

    /// One SSE event (`data: ...` lines and a blank line), flushed as one chunk.
    @discardableResult
    public func writeEvent(data: String, event: String? = nil, id: String? = nil) -> Bool {
        write(ServerSentEvent(data: data, event: event, id: id).encoded)
    }

    /// An SSE comment (`: ping`), the heartbeat that keeps proxies and clients from timing out.
    @discardableResult
    public func writeComment(_ text: String = "ping") -> Bool { write(ServerSentEvent.comment(text)) }

    /// An SSE event whose data is an OpenAI error object: how a stream reports a failure before it ends.
    @discardableResult
    public func writeErrorEvent(_ status: HTTPStatus, message: String, type: String? = nil, param: String? = nil) -> Bool {
        let json = OpenAIErrorBody.json(status: status, message: message, type: type, param: param)
        return writeEvent(data: String(decoding: json, as: UTF8.self))
    }

    /// Ends a stream (the last chunk for chunked framing). True if everything reached the socket.
    @discardableResult
    public func finish() -> Bool { withLock { finishLocked() } }

    // MARK: Server side

    /// Called by the connection after the handler returned: answers 500 when nothing was sent, finishes an open
    /// stream. Returns whether the connection may serve another request.
    func complete() -> Bool {
        withLock {
            switch state {
            case .pending:
                _ = sendLocked(.error(.internalServerError, message: "the handler produced no response"))
            case .streaming:
                _ = finishLocked()
            case .finished:
                break
            }
            return keepAlive && connected
        }
    }

    /// After this, every call is a no-op returning false; the connection may then close the descriptor.
    func invalidate() { withLock { valid = false } }

    private func sendLocked(_ response: HTTPResponse) -> Bool {
        guard valid, case .pending = state else { return false }
        state = .finished
        status = response.status
        keepAlive = requestKeepAlive && !Self.asksToClose(response.headers) && !draining.isSet
        guard connected else { return false }
        let allowsBody = response.status.allowsBody
        let connection = keepAlive ? (version == .http1_0 ? "keep-alive" : nil) : "close"
        var bytes = ResponseEncoding.head(status: response.status, headers: response.headers,
                                          framing: allowsBody ? .length(response.body.count) : .none,
                                          connection: connection)
        if allowsBody && !isHead { bytes += response.body }
        connected = socket.sendAll(bytes)
        return connected
    }

    private func finishLocked() -> Bool {
        guard valid, case .streaming(let framing) = state else { return false }
        state = .finished
        guard connected else { return false }
        if framing == .chunked && !isHead { connected = socket.sendAll(ResponseEncoding.lastChunk) }
        return connected
    }

    private static func asksToClose(_ headers: HTTPHeaders) -> Bool { headers.tokens(for: "Connection").contains("close") }

    private func withLock<T>(_ body: () -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }
}

/// Set once when the server starts shutting down; responses sent afterwards carry `Connection: close`.
final class DrainFlag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}
