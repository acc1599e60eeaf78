import Foundation
import Glibc

/// A thin wrapper over a blocking TCP socket descriptor. It is a value holding an Int32: whoever created it owns
/// closing it. Connection, ResponseWriter and HTTPServer together guarantee that no call reaches a descriptor
/// after it was closed (see Connection).
struct Socket: Sendable {
    let fd: Int32

    enum WaitResult: Equatable { case readable, timedOut, woken, failed }

    /// Binds and listens on host:port (port 0 picks a free port); returns the socket and the bound port.
    static func listen(host: String, port: Int, backlog: Int32) throws(HTTPServerError) -> (Socket, Int) {
        guard (0...65535).contains(port) else { throw .invalidPort(port) }
        var address = try SocketAddress(host: host, port: UInt16(port))
        let fd = Glibc.socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .socketCall("socket", errno) }
        let socket = Socket(fd: fd)
        var one: Int32 = 1
        guard setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            let code = errno
            socket.close()
            throw .socketCall("setsockopt(SO_REUSEADDR)", code)
        }
        let bound = address.withSockAddr { Glibc.bind(fd, $0, $1) }
        guard bound == 0 else {
            let code = errno
            socket.close()
            throw .socketCall("bind \(host):\(port)", code)
        }
        guard Glibc.listen(fd, backlog) == 0 else {
            let code = errno
            socket.close()
            throw .socketCall("listen", code)
        }
        // Non-blocking, so an accept after poll never blocks when the client has already gone.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else {
            let code = errno
            socket.close()
            throw .socketCall("getsockname", code)
        }
        return (socket, SocketAddress.port(of: storage))
    }

    /// One accept; the new socket is blocking, close-on-exec, TCP_NODELAY. Returns errno on failure.
    func accept() -> Result<(Socket, String), Errno> {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let client = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.accept(fd, $0, &length) }
        }
        guard client >= 0 else { return .failure(Errno(code: errno)) }
        _ = fcntl(client, F_SETFD, FD_CLOEXEC)
        _ = fcntl(client, F_SETFL, fcntl(client, F_GETFL) & ~O_NONBLOCK)
        var one: Int32 = 1
        _ = setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return .success((Socket(fd: client), SocketAddress.describe(storage)))
    }

    /// Bounds how long one send may block on a peer that does not read (SO_SNDTIMEO).
    func setSendTimeout(_ seconds: Double) {
        var tv = Socket.timeval(seconds)
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Sends every byte (MSG_NOSIGNAL: a vanished peer is an error, never SIGPIPE). False when the peer is
    /// gone or the send timed out.
    func sendAll(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                if n > 0 {
                    offset += n
                } else if n < 0 && errno == EINTR {
                    continue
                } else {
                    return false
                }
            }
            return true
        }
    }

    /// Reads what is available into `buffer` (blocking if nothing is): > 0 bytes, 0 at end of stream, -1 on error.
    func receive(into buffer: inout [UInt8]) -> Int {
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            return n
        }
    }

    /// Waits until the socket is readable, `wake` (a descriptor, or -1 for none) becomes readable, or
    /// `timeout` seconds pass (nil: forever).
    func waitReadable(timeout: Double?, wake: Int32 = -1) -> WaitResult {
        var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: wake, events: Int16(POLLIN), revents: 0)]
        let count: nfds_t = wake >= 0 ? 2 : 1
        let deadline = timeout.map { Monotonic.now() + $0 }
        while true {
            var ms: Int32 = -1
            if let deadline {
                let left = deadline - Monotonic.now()
                if left <= 0 { return .timedOut }
                ms = Int32(min(left * 1000 + 1, Double(Int32.max)))
            }
            let n = poll(&fds, count, ms)
            if n < 0 {
                if errno == EINTR { continue }
                return .failed
            }
            if n == 0 { continue }  // re-check the deadline
            if wake >= 0 && fds[1].revents != 0 { return .woken }
            return .readable
        }
    }

    /// Whether the peer has closed (or reset) its side: POLLRDHUP/POLLHUP/POLLERR, or a readable socket whose
    /// next read would be end of stream. Bytes of a pipelined request do not count as closed. A client that
    /// only half-closes (shutdown(SHUT_WR)) while awaiting its response is treated as gone.
    func peerHasClosed() -> Bool {
        let pollRDHUP: Int16 = 0x2000
        var p = pollfd(fd: fd, events: Int16(POLLIN) | pollRDHUP, revents: 0)
        guard poll(&p, 1, 0) > 0 else { return false }
        if p.revents & (pollRDHUP | Int16(POLLHUP) | Int16(POLLERR) | Int16(POLLNVAL)) != 0 { return true }
        var byte: UInt8 = 0
        let n = Glibc.recv(fd, &byte, 1, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT))
        return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
    }

    func shutdownWrite() { _ = Glibc.shutdown(fd, Int32(SHUT_WR)) }
    func shutdownBoth() { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
    func close() { _ = Glibc.close(fd) }

    /// Ends a connection without losing the last response: stop sending (FIN), then discard what the peer still
    /// sends until it closes or `timeout` passes, so unread input does not turn our close into a reset that
    /// destroys the response in flight. Does not close the descriptor.
    func linger(timeout: Double, maxDiscardBytes: Int = 1 << 20) {
        shutdownWrite()
        let deadline = Monotonic.now() + timeout
        var scratch = [UInt8](repeating: 0, count: 16 * 1024)
        var discarded = 0
        while discarded < maxDiscardBytes {
            let left = deadline - Monotonic.now()
            guard left > 0, waitReadable(timeout: left) == .readable else { return }
            let n = receive(into: &scratch)
            if n <= 0 { return }
            discarded += n
        }
    }

    static func timeval(_ seconds: Double) -> Glibc.timeval {
        let clamped = max(0, min(seconds, 86_400))
        let whole = Int(clamped)
        return Glibc.timeval(tv_sec: whole, tv_usec: Int((clamped - Double(whole)) * 1_000_000))
    }
}

struct Errno: Error, Equatable, CustomStringConvertible {
    let code: Int32
    var description: String { String(cString: strerror(code)) + " (errno \(code))" }
}

enum Monotonic {
    /// Seconds on the monotonic clock.
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

/// An IPv4 or IPv6 socket address parsed from a numeric host (or `localhost`).
struct SocketAddress {
    private var storage = sockaddr_storage()
    private(set) var family: Int32
    private let length: socklen_t

    init(host: String, port: UInt16) throws(HTTPServerError) {
        let name = host == "localhost" ? "127.0.0.1" : host.trimmingCharacters(in: ["[", "]"])
        var v4 = sockaddr_in()
        var v6 = sockaddr_in6()
        if inet_pton(AF_INET, name, &v4.sin_addr) == 1 {
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = port.bigEndian
            family = AF_INET
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
            withUnsafeMutableBytes(of: &storage) { dst in withUnsafeBytes(of: v4) { dst.copyMemory(from: $0) } }
        } else if inet_pton(AF_INET6, name, &v6.sin6_addr) == 1 {
            v6.sin6_family = sa_family_t(AF_INET6)
            v6.sin6_port = port.bigEndian
            family = AF_INET6
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
            withUnsafeMutableBytes(of: &storage) { dst in withUnsafeBytes(of: v6) { dst.copyMemory(from: $0) } }
        } else {
            throw .invalidHost(host)
        }
    }

    mutating func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        let length = self.length
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }

    static func port(of storage: sockaddr_storage) -> Int {
        var storage = storage
        return withUnsafeBytes(of: &storage) { raw in
            // sin_port and sin6_port sit at the same offset, right after the family.
            Int(UInt16(bigEndian: raw.load(fromByteOffset: 2, as: UInt16.self)))
        }
    }

    /// `address:port` (IPv6 in brackets) for logs.
    static func describe(_ storage: sockaddr_storage) -> String {
        var storage = storage
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let family = Int32(storage.ss_family)
        let port = port(of: storage)
        let ok: Bool = withUnsafeBytes(of: &storage) { raw in
            let base = raw.baseAddress!
            if family == AF_INET {
                return inet_ntop(AF_INET, base + 4, &text, socklen_t(text.count)) != nil
            } else if family == AF_INET6 {
                return inet_ntop(AF_INET6, base + 8, &text, socklen_t(text.count)) != nil
            }
            return false
        }
        guard ok else { return "unknown" }
        let address = text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return family == AF_INET6 ? "[\(address)]:\(port)" : "\(address):\(port)"
    }
}
