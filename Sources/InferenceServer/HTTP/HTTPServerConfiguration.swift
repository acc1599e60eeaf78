import Foundation

/// Where the server listens and how it bounds connections. Times are in seconds.
public struct HTTPServerConfiguration: Sendable {
    /// A numeric IPv4 or IPv6 address, or `localhost`. Loopback unless told otherwise.
    public var host: String
    /// 0 picks a free port; `HTTPServer.port` reports the one bound.
    public var port: Int
    public var backlog: Int32
    /// Connections served at once (one thread each); beyond it a client gets 503 and the connection closes.
    public var maxConnections: Int
    public var limits: HTTPLimits
    /// From the first byte of a request to the end of its head → 408 and close (slow-head protection).
    public var headTimeout: Double
    /// Longest wait for the next byte of a body → 408 and close.
    public var bodyTimeout: Double
    /// A keep-alive connection with no request in progress is closed, silently, after this long.
    public var idleTimeout: Double
    /// Longest a single send may block on a client that does not read; then the client counts as gone.
    public var writeTimeout: Double
    /// After an error response, how long to drain what the client still sends before closing, so the
    /// response is not destroyed by a reset.
    public var lingerTimeout: Double
    /// Server-side problems (accept failures): one line each. nil discards them.
    public var log: (@Sendable (String) -> Void)?

    public init(host: String = "127.0.0.1", port: Int = 8080, backlog: Int32 = 128, maxConnections: Int = 64,
                limits: HTTPLimits = HTTPLimits(), headTimeout: Double = 10, bodyTimeout: Double = 30,
                idleTimeout: Double = 10, writeTimeout: Double = 30, lingerTimeout: Double = 2,
                log: (@Sendable (String) -> Void)? = HTTPServerConfiguration.standardErrorLog) {
        self.host = host
        self.port = port
        self.backlog = backlog
        self.maxConnections = maxConnections
        self.limits = limits
        self.headTimeout = headTimeout
        self.bodyTimeout = bodyTimeout
        self.idleTimeout = idleTimeout
        self.writeTimeout = writeTimeout
        self.lingerTimeout = lingerTimeout
        self.log = log
    }

    public static let standardErrorLog: @Sendable (String) -> Void = { message in
        FileHandle.standardError.write(Data(("http: " + message + "\n").utf8))
    }
}

public enum HTTPServerError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidHost(String)
    case invalidPort(Int)
    case socketCall(String, Int32)
    case alreadyStarted
    case signalHandlerAlreadyInstalled

    public var description: String {
        switch self {
        case .invalidHost(let host): return "invalid host \(host): expected a numeric IPv4/IPv6 address or localhost"
        case .invalidPort(let port): return "invalid port \(port): expected 0...65535"
        case .socketCall(let call, let code): return "\(call) failed: \(Errno(code: code))"
        case .alreadyStarted: return "the server was already started"
        case .signalHandlerAlreadyInstalled: return "a shutdown signal handler is already installed"
        }
    }
}
