import Foundation
import Glibc
import Synchronization
import XCTest
@testable import InferenceServer

/// Graceful shutdown, the signal helper, and an accept loop that outlives descriptor exhaustion.
final class HTTPServerShutdownTests: XCTestCase {
    func testGracefulShutdownFinishesTheRequestInFlightAndClosesIdleConnections() throws {
        let entered = DispatchSemaphore(value: 0)
        let server = try HTTPTesting.makeServer { request, writer in
            guard request.path == "/slow" else { return HTTPTesting.echo(request, writer) }
            XCTAssertFalse(writer.serverIsShuttingDown)
            entered.signal()
            usleep(300_000)
            XCTAssertTrue(writer.serverIsShuttingDown)
            writer.send(.text(.ok, "done"))
        }
        let port = server.port
        let idle = try HTTPTestClient(port: port)
        idle.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(try idle.readResponse().status, 200)
        let slow = try HTTPTestClient(port: port)
        slow.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(entered.wait(timeout: .now() + 2), .success)

        let stopped = expectation(description: "shutdown returned")
        Thread.detachNewThread {
            server.shutdown(gracePeriod: 5)
            stopped.fulfill()
        }
        XCTAssertTrue(HTTPTesting.eventually { server.isShuttingDown })
        XCTAssertTrue(idle.waitForClose(timeout: 1))  // idle keep-alive: closed at once
        let response = try slow.readResponse()
        XCTAssertEqual(response.text, "done")
        XCTAssertEqual(response.header("Connection"), "close")
        slow.close()
        wait(for: [stopped], timeout: 3)
        XCTAssertFalse(server.isRunning)
        XCTAssertEqual(server.connectionCount, 0)
        XCTAssertThrowsError(try HTTPTestClient(port: port))  // no longer listening
    }

    func testShutdownForceClosesAStuckStreamAfterTheGracePeriod() throws {
        let sawDisconnect = expectation(description: "stuck handler saw its connection closed")
        let server = try HTTPTesting.makeServer { _, writer in
            writer.startEventStream()
            writer.writeEvent(data: "first")
            let deadline = Monotonic.now() + 10
            while Monotonic.now() < deadline {
                if !writer.isConnected {
                    sawDisconnect.fulfill()
                    return
                }
                usleep(5_000)
            }
        }
        let client = try HTTPTestClient(port: server.port)
        client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        _ = try client.readHead()
        _ = try client.readChunk()
        let began = Monotonic.now()
        server.shutdown(gracePeriod: 0.2)
        XCTAssertLessThan(Monotonic.now() - began, 2)
        wait(for: [sawDisconnect], timeout: 1)
        XCTAssertEqual(server.connectionCount, 0)
        _ = client.readUntilClosed(timeout: 1)
        server.waitUntilStopped()  // already stopped: returns at once
    }

    func testSignalStartsGracefulShutdownThenCallsOnStopped() throws {
        let server = try HTTPTesting.makeServer(handler: HTTPTesting.echo)
        let stopped = expectation(description: "onStopped called")
        let signals = try ShutdownSignalHandler.install(server: server, gracePeriod: 1, signals: [SIGUSR2],
                                                        onStopped: { stopped.fulfill() })
        defer { signals.uninstall() }
        XCTAssertThrowsError(try ShutdownSignalHandler.install(server: server)) {
            XCTAssertEqual($0 as? HTTPServerError, .signalHandlerAlreadyInstalled)
        }
        raise(SIGUSR2)
        wait(for: [stopped], timeout: 3)
        XCTAssertFalse(server.isRunning)
        XCTAssertTrue(server.isShuttingDown)
    }

    func testSignalHandlerCanBeUninstalledAndInstalledAgain() throws {
        let server = try HTTPTesting.makeServer(handler: HTTPTesting.echo)
        defer { server.shutdown(gracePeriod: 1) }
        try ShutdownSignalHandler.install(server: server, signals: [SIGUSR2], onStopped: {}).uninstall()
        let again = try ShutdownSignalHandler.install(server: server, signals: [SIGUSR2], onStopped: {})
        again.uninstall()
        XCTAssertTrue(server.isRunning)
    }

    func testAcceptLoopSurvivesRunningOutOfDescriptors() throws {
        final class Lines: Sendable { let lines = Mutex<[String]>([]) }
        let logged = Lines()
        var configuration = HTTPServerConfiguration(host: "127.0.0.1", port: 0, log: { line in
            logged.lines.withLock { $0.append(line) }
        })
        configuration.lingerTimeout = 0.5
        let server = HTTPServer(configuration: configuration, handler: HTTPTesting.echo)
        try server.start()
        defer { server.shutdown(gracePeriod: 1) }

        // The client's descriptor exists before the table fills; connecting needs no new one.
        let client = HTTPTestClient(descriptor: socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0))
        var saved = rlimit()
        XCTAssertEqual(getrlimit(Int32(RLIMIT_NOFILE.rawValue), &saved), 0)
        let lowestFree = open("/dev/null", O_RDONLY)  // every descriptor below it is in use
        close(lowestFree)
        var lowered = saved
        lowered.rlim_cur = rlim_t(lowestFree)
        XCTAssertEqual(setrlimit(Int32(RLIMIT_NOFILE.rawValue), &lowered), 0)
        var restored = false
        defer { if !restored { setrlimit(Int32(RLIMIT_NOFILE.rawValue), &saved) } }
        XCTAssertEqual(open("/dev/null", O_RDONLY), -1)
        XCTAssertEqual(errno, EMFILE)

        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(server.port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(client.fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        XCTAssertEqual(connected, 0)  // completed by the kernel; the server cannot accept it yet
        XCTAssertTrue(HTTPTesting.eventually { logged.lines.withLock { $0.contains { $0.contains("accept failed") } } })
        usleep(200_000)
        XCTAssertTrue(server.isRunning)

        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &saved)
        restored = true
        client.send("GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(try client.readResponse().text, "GET /after ")
    }
}
