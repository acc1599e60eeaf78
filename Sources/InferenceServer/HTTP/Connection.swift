/// One client connection, served on its own thread: read, parse, answer each request in order (keep-alive and
/// pipelining), enforce the timeouts, and close after any framing error.
///
/// `@unchecked Sendable`: the parser and buffers are used only by the thread running `run()`. The one call made
/// from another thread, `forceClose()`, only shuts the descriptor down; HTTPServer makes it while holding its
/// lock and unregisters the connection under that lock before closing the descriptor, so it never reaches a
/// closed one.
final class Connection: @unchecked Sendable {
    let id: Int
    let socket: Socket
    let remoteAddress: String

    private let configuration: HTTPServerConfiguration
    private let handler: HTTPServer.Handler
    private let wakeFD: Int32
    private let draining: DrainFlag
    private var parser: HTTPRequestParser
    private var readBuffer = [UInt8](repeating: 0, count: 64 * 1024)

    init(id: Int, socket: Socket, remoteAddress: String, configuration: HTTPServerConfiguration,
         handler: @escaping HTTPServer.Handler, wakeFD: Int32, draining: DrainFlag) {
        self.id = id
        self.socket = socket
        self.remoteAddress = remoteAddress
        self.configuration = configuration
        self.handler = handler
        self.wakeFD = wakeFD
        self.draining = draining
        self.parser = HTTPRequestParser(limits: configuration.limits)
    }

    /// Makes blocked reads and writes fail at once (the end of a shutdown's grace period).
    func forceClose() { socket.shutdownBoth() }

    /// Serves the connection until it should close. Does not close the descriptor (the server does).
    func run() {
        socket.setSendTimeout(configuration.writeTimeout)
        var idleSince = Monotonic.now()
        var headStarted: Double?
        while true {
            let event: HTTPParserEvent?
            do {
                event = try parser.next()
            } catch {
                reject(error.status, message: error.description)
                return
            }
            switch event {
            case .sendContinue:
                guard socket.sendAll(ResponseEncoding.continueLine) else { return }
                continue
            case .request(let request):
                guard serve(request) else { return }
                headStarted = nil
                idleSince = Monotonic.now()
                continue
            case nil:
                break
            }

            let phase = parser.phase
            let now = Monotonic.now()
            let result: Socket.WaitResult
            switch phase {
            case .idle:
                if draining.isSet { return }
                result = socket.waitReadable(timeout: idleSince + configuration.idleTimeout - now, wake: wakeFD)
            case .head:
                let started = headStarted ?? now
                headStarted = started
                result = socket.waitReadable(timeout: started + configuration.headTimeout - now)
            case .body:
                result = socket.waitReadable(timeout: configuration.bodyTimeout)
            }
            switch result {
            case .readable:
                break
            case .timedOut where phase != .idle:
                reject(.requestTimeout, message: "the request did not arrive in time")
                return
            case .timedOut, .woken, .failed:
                return
            }
            let n = socket.receive(into: &readBuffer)
            guard n > 0 else { return }
            if headStarted == nil { headStarted = Monotonic.now() }
            parser.feed(readBuffer[0..<n])
        }
    }

    /// Runs the handler; returns whether the connection may carry another request.
    private func serve(_ request: HTTPRequest) -> Bool {
        let writer = ResponseWriter(socket: socket, request: request, remoteAddress: remoteAddress, draining: draining)
        handler(request, writer)
        let keepAlive = writer.complete()
        writer.invalidate()
        if !keepAlive { socket.linger(timeout: configuration.lingerTimeout) }
        return keepAlive
    }

    /// Answers a request that cannot be served (framing error, timeout) and closes: after a framing error the
    /// position of the next request is unknown, so the connection is never reused.
    private func reject(_ status: HTTPStatus, message: String) {
        let response = HTTPResponse.error(status, message: message)
        let bytes = ResponseEncoding.head(status: status, headers: response.headers,
                                          framing: .length(response.body.count), connection: "close") + response.body
        if socket.sendAll(bytes) { socket.linger(timeout: configuration.lingerTimeout) }
    }
}
