import Foundation
import Glibc
import XCTest
@testable import InferenceServer

/// End to end over loopback: framing, keep-alive, limits and timeouts as a client sees them.
final class HTTPServerTests: XCTestCase {
    private var servers: [HTTPServer] = []

    override func tearDown() {
        for server in servers { server.shutdown(gracePeriod: 1) }
        servers = []
        super.tearDown()
    }

    private func start(maxConnections: Int = 8, headTimeout: Double = 2, bodyTimeout: Double = 2,
                       idleTimeout: Double = 5, handler: @escaping HTTPServer.Handler = HTTPTesting.echo) throws -> HTTPServer {
        let server = try HTTPTesting.makeServer(maxConnections: maxConnections, headTimeout: headTimeout,
                                                bodyTimeout: bodyTimeout, idleTimeout: idleTimeout, handler: handler)
        servers.append(server)
        return server
    }

    func testPortZeroBindsAFreePortOnLoopback() throws {
        let server = try start()
        XCTAssertGreaterThan(server.port, 0)
        XCTAssertTrue(server.isRunning)
        XCTAssertThrowsError(try server.start()) { XCTAssertEqual($0 as? HTTPServerError, .alreadyStarted) }
        XCTAssertThrowsError(try HTTPServer(configuration: .init(host: "no.such.host", port: 0), handler: HTTPTesting.echo).start())
    }

    func testKeepAliveServesTwoRequestsOnOneConnection() throws {
        let server = try start()
        let client = try HTTPTestClient(port: server.port)
        client.send("GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
        let first = try client.readResponse()
        XCTAssertEqual(first.status, 200)
        XCTAssertEqual(first.text, "GET /one ")
        XCTAssertNil(first.header("Connection"))
        XCTAssertNotNil(first.header("Date"))
        client.send("POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody")
        XCTAssertEqual(try client.readResponse().text, "POST /two body")
        XCTAssertEqual(server.connectionCount, 1)
    }

    func testPipelinedRequestsAreAnsweredInOrder() throws {
        let server = try start()
        let client = try HTTPTestClient(port: server.port)
        client.send("GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + "3\r\nxyz\r\n0\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        XCTAssertEqual(try client.readResponse().text, "GET /a ")
        XCTAssertEqual(try client.readResponse().text, "POST /b xyz")
        let last = try client.readResponse()
        XCTAssertEqual(last.text, "GET /c ")
        XCTAssertEqual(last.header("Connection"), "close")
        XCTAssertTrue(client.waitForClose())
    }

    func testExpectContinueGets100BeforeTheBodyIsSent() throws {
        let server = try start()
        let client = try HTTPTestClient(port: server.port)
        client.send("POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        XCTAssertEqual(try client.readResponse().status, 100)
        client.send("hello")
        XCTAssertEqual(try client.readResponse().text, "POST /up hello")
    }

    func testBodyOverTheLimitIs413BeforeTheBodyIsSent() throws {
        let server = try start()
        let client = try HTTPTestClient(port: server.port)
        client.send("POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1000000\r\n\r\n")
        let response = try client.readResponse()
        XCTAssertEqual(response.status, 413)
        XCTAssertEqual(response.header("Connection"), "close")
        XCTAssertTrue(response.text.contains(#""code":413"#))
        XCTAssertTrue(client.waitForClose())
    }

    func testOversizedHeadersGet431AndLongRequestLineGets414() throws {
        let server = try start()
        let headers = try HTTPTestClient(port: server.port)
        headers.send("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + String(repeating: "b", count: 2000) + "\r\n\r\n")
        XCTAssertEqual(try headers.readResponse().status, 431)
        XCTAssertTrue(headers.waitForClose())
        let line = try HTTPTestClient(port: server.port)
        line.send("GET /" + String(repeating: "a", count: 300) + " HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(try line.readResponse().status, 414)
        XCTAssertTrue(line.waitForClose())
    }

    func testMalformedRequestGets400AndTheConnectionCloses() throws {
        let server = try start()
        let client = try HTTPTestClient(port: server.port)
        client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\nPOST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
        XCTAssertEqual(try client.readResponse().status, 200)
        let rejected = try client.readResponse()
        XCTAssertEqual(rejected.status, 400)
        XCTAssertEqual(rejected.header("Connection"), "close")
        XCTAssertTrue(client.waitForClose())
    }

    func testSlowHeadGets408() throws {
        let server = try start(headTimeout: 0.3)
        let client = try HTTPTestClient(port: server.port)
        let began = Monotonic.now()
        client.send("GET / HTTP/1.1\r\nHo")
        usleep(100_000)
        client.send("st: x\r\n")  // still trickling: the deadline counts from the first byte
        let response = try client.readResponse(timeout: 3)
        XCTAssertEqual(response.status, 408)
        XCTAssertGreaterThanOrEqual(Monotonic.now() - began, 0.28)
        XCTAssertTrue(client.waitForClose())
    }

    func testStalledBodyGets408() throws {
        let server = try start(bodyTimeout: 0.3)
        let client = try HTTPTestClient(port: server.port)
        client.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        let began = Monotonic.now()
        XCTAssertEqual(try client.readResponse().status, 408)
        XCTAssertGreaterThanOrEqual(Monotonic.now() - began, 0.25)
        XCTAssertTrue(client.waitForClose())
    }

    func testIdleKeepAliveConnectionIsClosedSilently() throws {
        let server = try start(idleTimeout: 0.3)
        let client = try HTTPTestClient(port: server.port)
        client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(try client.readResponse().status, 200)
        let idleFrom = Monotonic.now()
        XCTAssertTrue(client.waitForClose(timeout: 3))
        XCTAssertGreaterThanOrEqual(Monotonic.now() - idleFrom, 0.25)
        XCTAssertTrue(HTTPTesting.eventually { server.connectionCount == 0 })
    }

    func testConnectionsOverTheCapGet503() throws {
        let server = try start(maxConnections: 1)
        let holder = try HTTPTestClient(port: server.port)
        holder.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(try holder.readResponse().status, 200)  // now it holds the only slot, idle
        let rejected = try HTTPTestClient(port: server.port)
        rejected.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        let response = try rejected.readResponse()
        XCTAssertEqual(response.status, 503)
        XCTAssertEqual(response.header("Connection"), "close")
        XCTAssertEqual(response.header("Retry-After"), "1")
        XCTAssertTrue(rejected.waitForClose())
        holder.close()
        XCTAssertTrue(HTTPTesting.eventually { server.connectionCount == 0 })
        let next = try HTTPTestClient(port: server.port)
        next.send("GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(try next.readResponse().status, 200)
    }

    func testConcurrentClientsEachGetTheirOwnResponses() throws {
        let server = try start()
        let failures = Failures()
        let done = DispatchGroup()
        for c in 0..<6 {
            done.enter()
            Thread.detachNewThread {
                defer { done.leave() }
                do {
                    let client = try HTTPTestClient(port: server.port)
                    for r in 0..<20 {
                        let body = "client\(c)-request\(r)"
                        client.send("POST /\(c) HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
                        let text = try client.readResponse().text
                        if text != "POST /\(c) \(body)" { failures.add("\(c)/\(r): \(text)") }
                    }
                } catch {
                    failures.add("\(c): \(error)")
                }
            }
        }
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(failures.all, [])
    }

    func testHostsParseAsIPv4OrIPv6() throws {
        XCTAssertEqual(try SocketAddress(host: "127.0.0.1", port: 80).family, AF_INET)
        XCTAssertEqual(try SocketAddress(host: "localhost", port: 80).family, AF_INET)
        XCTAssertEqual(try SocketAddress(host: "::1", port: 80).family, AF_INET6)
        XCTAssertEqual(try SocketAddress(host: "[::]", port: 80).family, AF_INET6)
        XCTAssertThrowsError(try SocketAddress(host: "example.com", port: 80))
        XCTAssertThrowsError(try Socket.listen(host: "127.0.0.1", port: 70000, backlog: 1))
    }

    func testHTTP10ClosesUnlessKeepAliveIsAsked() throws {
        let server = try start()
        let plain = try HTTPTestClient(port: server.port)
        plain.send("GET / HTTP/1.0\r\n\r\n")
        let closing = try plain.readResponse()
        XCTAssertEqual(closing.header("Connection"), "close")
        XCTAssertTrue(plain.waitForClose())
        let kept = try HTTPTestClient(port: server.port)
        kept.send("GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        XCTAssertEqual(try kept.readResponse().header("Connection"), "keep-alive")
        kept.send("GET /2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        XCTAssertEqual(try kept.readResponse().text, "GET /2 ")
    }

    func testHandlerThatSendsNothingGets500AndHeadGetsNoBody() throws {
        let server = try start { request, writer in
            if request.path == "/silent" { return }
            writer.send(.text(.ok, "twelve bytes"))
        }
        let client = try HTTPTestClient(port: server.port)
        client.send("GET /silent HTTP/1.1\r\nHost: x\r\n\r\n")
        let silent = try client.readResponse()
        XCTAssertEqual(silent.status, 500)
        XCTAssertTrue(silent.text.contains("server_error"))
        client.send("HEAD /x HTTP/1.1\r\nHost: x\r\n\r\nGET /y HTTP/1.1\r\nHost: x\r\n\r\n")
        let head = try client.readResponse(isHead: true)
        XCTAssertEqual(head.header("Content-Length"), "12")
        XCTAssertEqual(try client.readResponse().text, "twelve bytes")  // no stray body bytes in between
    }

    func testHandlerCanAskToClose() throws {
        let server = try start { _, writer in
            writer.send(HTTPResponse(status: .ok, headers: ["Connection": "close"], body: Array("bye".utf8)))
        }
        let client = try HTTPTestClient(port: server.port)
        client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(try client.readResponse().header("Connection"), "close")
        XCTAssertTrue(client.waitForClose())
    }
}

/// Collects failures from client threads.
private final class Failures: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func add(_ line: String) { lock.lock(); lines.append(line); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return lines }
}
