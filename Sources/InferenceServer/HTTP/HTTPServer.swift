import Foundation
import Glibc

/// HTTP/1.1 over blocking POSIX sockets: one acceptor thread and one thread per connection up to
/// `maxConnections` (503 beyond it). The handler runs on the connection's thread, once per request, in order.
///
///     let server = HTTPServer(configuration: .init(port: 0)) { request, writer in
///         writer.send(.json(.ok, Array(#"{"status":"ok"}"#.utf8)))
///     }
///     try server.start()          // binds; server.port is the bound port
///     ...
///     server.shutdown(gracePeriod: 10)
///
/// `@unchecked Sendable`: every mutable property is guarded by `condition`; the configuration and handler are
/// immutable and Sendable.
public final class HTTPServer: @unchecked Sendable {
    public typealias Handler = @Sendable (HTTPRequest, ResponseWriter) -> Void

    public let configuration: HTTPServerConfiguration
    private let handler: Handler
    private let draining = DrainFlag()
    private let condition = NSCondition()

    private enum Phase { case created, running, draining, stopped }
    private var phase = Phase.created
    private var boundPort = 0
    private var wake: WakePipe?
    private var connections: [Int: Connection] = [:]
    private var rejecting = 0
    private var nextID = 0
    private var acceptorRunning = false

    /// At most this many over-capacity clients are being answered 503 at once; beyond that they are closed.
    static let maxRejectingThreads = 8

    public init(configuration: HTTPServerConfiguration = HTTPServerConfiguration(), handler: @escaping Handler) {
        self.configuration = configuration
        self.handler = handler
    }

    /// Binds, listens and starts accepting on a background thread. Ignores SIGPIPE process-wide.
    public func start() throws(HTTPServerError) {
        condition.lock()
        defer { condition.unlock() }
        guard phase == .created else { throw .alreadyStarted }
        signal(SIGPIPE, SIG_IGN)
        let (listener, port) = try Socket.listen(host: configuration.host, port: configuration.port,
                                                 backlog: configuration.backlog)
        let wake: WakePipe
        do throws(HTTPServerError) {
            wake = try WakePipe()
        } catch {
            listener.close()
            throw error
        }
        self.wake = wake
        boundPort = port
        phase = .running
        acceptorRunning = true
        let thread = Thread { [self] in acceptLoop(listener: listener, wake: wake) }
        thread.name = "http-accept"
        thread.start()
    }

    /// The bound port (after `start`); the one chosen by the system when configured with port 0.
    public var port: Int { locked { boundPort } }
    public var isRunning: Bool { locked { phase == .running } }
    /// True from the moment `shutdown` begins (a health route answers 503 then).
    public var isShuttingDown: Bool { draining.isSet }
    /// Connections being served now.
    public var connectionCount: Int { locked { connections.count } }

    /// Graceful shutdown: stop accepting, close idle keep-alive connections, let requests in flight finish (their
    /// responses carry `Connection: close`) for up to `gracePeriod` seconds, then force the remaining connections
    /// closed, which their handlers see as `isConnected == false`. Blocks until done; later calls return at once.
    ///
    /// `whenGraceExpires` runs when the grace period ends with requests still in flight, before any connection is
    /// cut: it tells them to end (a generation is cancelled, and its stream ends with an error event rather than a
    /// cut connection). They get one more second to do so.
    public func shutdown(gracePeriod: Double = 10, whenGraceExpires: (() -> Void)? = nil) {
        condition.lock()
        defer { condition.unlock() }
        switch phase {
        case .created:
            phase = .stopped
            condition.broadcast()
            return
        case .draining:
            while phase != .stopped { condition.wait() }
            return
        case .stopped:
            return
        case .running:
            break
        }
        phase = .draining
        draining.set()
        wake?.signal()
        let deadline = Date(timeIntervalSinceNow: max(0, gracePeriod))
        while busy && condition.wait(until: deadline) {}
        if !connections.isEmpty, let whenGraceExpires {
            condition.unlock()
            whenGraceExpires()
            condition.lock()
            let endDeadline = Date(timeIntervalSinceNow: 1)
            while busy && condition.wait(until: endDeadline) {}
        }
        if !connections.isEmpty {
            for connection in connections.values { connection.forceClose() }
            let hardDeadline = Date(timeIntervalSinceNow: 1)
            while busy && condition.wait(until: hardDeadline) {}
        }
        if !busy {
            // A handler that ignores its closed connection may still be running; its thread keeps the wake pipe
            // in use, so it is only closed once every thread is gone.
            wake?.close()
            wake = nil
        }
        phase = .stopped
        condition.broadcast()
    }

    /// Blocks until a `shutdown` has completed.
    public func waitUntilStopped() {
        condition.lock()
        defer { condition.unlock() }
        while phase != .stopped { condition.wait() }
    }

    private var busy: Bool { acceptorRunning || !connections.isEmpty || rejecting > 0 }

    // MARK: Accepting

    private func acceptLoop(listener: Socket, wake: WakePipe) {
        var lastResourceLog = -Double.infinity
        accepting: while true {
            switch listener.waitReadable(timeout: nil, wake: wake.readFD) {
            case .woken: break accepting
            case .failed: if wake.wait(timeout: 0.01) { break accepting } else { continue }
            case .timedOut: continue
            case .readable: break
            }
            switch listener.accept() {
            case .success(let (socket, peer)):
                admit(socket, peer: peer)
            case .failure(let error):
                switch error.code {
                case EINTR, EAGAIN, EWOULDBLOCK, ECONNABORTED, EPROTO:
                    continue
                default:
                    // Out of descriptors (EMFILE, ENFILE) or memory: back off and keep accepting, never exit.
                    let now = Monotonic.now()
                    if now - lastResourceLog >= 1 {
                        lastResourceLog = now
                        configuration.log?("accept failed: \(error); retrying")
                    }
                    if wake.wait(timeout: 0.1) { break accepting }
                }
            }
        }
        listener.close()
        locked { acceptorRunning = false }
    }

    private func admit(_ socket: Socket, peer: String) {
        condition.lock()
        guard phase == .running, let wake else {
            condition.unlock()
            socket.close()
            return
        }
        if connections.count >= configuration.maxConnections {
            guard rejecting < Self.maxRejectingThreads else {
                condition.unlock()
                socket.close()
                return
            }
            rejecting += 1
            condition.unlock()
            let thread = Thread { [self] in rejectOverCapacity(socket) }
            thread.name = "http-reject"
            thread.start()
            return
        }
        nextID += 1
        let connection = Connection(id: nextID, socket: socket, remoteAddress: peer, configuration: configuration,
                                    handler: handler, wakeFD: wake.readFD, draining: draining)
        connections[connection.id] = connection
        condition.unlock()
        let thread = Thread { [self] in
            connection.run()
            connectionEnded(connection)
        }
        thread.name = "http-conn-\(connection.id)"
        thread.start()
    }

    private func rejectOverCapacity(_ socket: Socket) {
        socket.setSendTimeout(1)
        let response = HTTPResponse.error(.serviceUnavailable,
                                          message: "the server is at its limit of \(configuration.maxConnections) connections; retry later",
                                          headers: ["Retry-After": "1"])
        let bytes = ResponseEncoding.head(status: response.status, headers: response.headers,
                                          framing: .length(response.body.count), connection: "close") + response.body
        if socket.sendAll(bytes) { socket.linger(timeout: min(configuration.lingerTimeout, 1)) }
        locked {
            rejecting -= 1
            socket.close()
        }
    }

    private func connectionEnded(_ connection: Connection) {
        locked {
            connections[connection.id] = nil
            connection.socket.close()
        }
    }

    /// Runs `body` under the lock and wakes every waiter (state may have changed).
    private func locked<T>(_ body: () -> T) -> T {
        condition.lock()
        defer {
            condition.broadcast()
            condition.unlock()
        }
        return body()
    }
}

/// A pipe whose read end becomes readable, for every poller at once and for good, when `signal()` is called:
/// it wakes the acceptor and idle connections at shutdown.
struct WakePipe: Sendable {
    let readFD: Int32
    let writeFD: Int32

    init() throws(HTTPServerError) {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw .socketCall("pipe", errno) }
        readFD = fds[0]
        writeFD = fds[1]
        _ = fcntl(readFD, F_SETFD, FD_CLOEXEC)
        _ = fcntl(writeFD, F_SETFD, FD_CLOEXEC)
    }

    func signal() {
        var byte: UInt8 = 1
        _ = Glibc.write(writeFD, &byte, 1)
    }

    /// Waits up to `timeout` seconds; true if signalled.
    func wait(timeout: Double) -> Bool {
        Socket(fd: readFD).waitReadable(timeout: timeout) == .readable
    }

    func close() {
        _ = Glibc.close(readFD)
        _ = Glibc.close(writeFD)
    }
}
