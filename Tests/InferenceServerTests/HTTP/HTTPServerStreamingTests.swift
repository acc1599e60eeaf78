import Foundation
import Glibc
import XCTest
@testable import InferenceServer

/// Streaming responses end to end: SSE flushed per event, disconnects seen by the handler.
final class HTTPServerStreamingTests: XCTestCase {
    private var servers: [HTTPServer] = []

    override func tearDown() {
        for server in servers { server.shutdown(gracePeriod: 1) }
        servers = []
        super.tearDown()
    }

    private func start(handler: @escaping HTTPServer.Handler) throws -> HTTPServer {
        let server = try HTTPTesting.makeServer(handler: handler)
        servers.append(server)
        return server
    }

    private func text(_ bytes: [UInt8]?) -> String? { bytes.map { String(decoding: $0, as: UTF8.self) } }

    func testServerSentEventsArriveOneAtATime() throws {
        let proceed = DispatchSemaphore(value: 0)
        let server = try start { request, writer in
            guard request.path == "/stream" else { return HTTPTesting.echo(request, writer) }
            writer.startEventStream()
            writer.writeEvent(data: "first")
            _ = proceed.wait(timeout: .now() + 3)  // the next event is produced only after the client saw this one
            writer.writeComment()
            writer.writeEvent(data: "second", event: "token", id: "2")
            writer.writeEvent(data: "[DONE]")
            writer.finish()
        }
        let client = try HTTPTestClient(port: server.port)
        client.send("POST /stream HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        let head = try client.readHead()
        XCTAssertEqual(head.status, 200)
        XCTAssertEqual(head.header("Content-Type"), "text/event-stream")
        XCTAssertEqual(head.header("Cache-Control"), "no-cache")
        XCTAssertEqual(head.header("Transfer-Encoding"), "chunked")
        XCTAssertEqual(text(try client.readChunk(timeout: 2)), "data: first\n\n")
        proceed.signal()
        XCTAssertEqual(text(try client.readChunk()), ": ping\n\n")
        XCTAssertEqual(text(try client.readChunk()), "event: token\nid: 2\ndata: second\n\n")
        XCTAssertEqual(text(try client.readChunk()), "data: [DONE]\n\n")
        XCTAssertNil(try client.readChunk())
        client.send("GET /after HTTP/1.1\r\nHost: x\r\n\r\n")  // the stream left the connection reusable
        XCTAssertEqual(try client.readResponse().text, "GET /after ")
    }

    func testStreamingHandlerLearnsTheClientWentAway() throws {
        let sawDisconnect = expectation(description: "handler saw the disconnect")
        let server = try start { _, writer in
            writer.startEventStream()
            writer.writeEvent(data: "token")
            let deadline = Monotonic.now() + 5
            while Monotonic.now() < deadline {  // a generation loop: one check per step
                if !writer.isConnected {
                    XCTAssertFalse(writer.writeEvent(data: "late"))
                    sawDisconnect.fulfill()
                    return
                }
                usleep(5_000)
            }
        }
        let client = try HTTPTestClient(port: server.port)
        client.send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        _ = try client.readHead()
        XCTAssertEqual(text(try client.readChunk()), "data: token\n\n")
        client.close()
        wait(for: [sawDisconnect], timeout: 2)
    }

    func testHandlerThatHasNotRespondedYetLearnsTheClientWentAway() throws {
        let sawDisconnect = expectation(description: "handler saw the disconnect before responding")
        let server = try start { _, writer in
            let deadline = Monotonic.now() + 5
            while Monotonic.now() < deadline {  // queued or in prefill: nothing sent yet
                if !writer.isConnected {
                    XCTAssertFalse(writer.hasStartedResponse)
                    sawDisconnect.fulfill()
                    return
                }
                usleep(5_000)
            }
        }
        let client = try HTTPTestClient(port: server.port)
        client.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        usleep(50_000)
        client.close()
        wait(for: [sawDisconnect], timeout: 2)
    }

    func testWritesFailOnceTheClientIsGone() throws {
        let failedWrite = expectation(description: "a write reported the disconnect")
        let server = try start { _, writer in
            writer.startEventStream()
            for i in 0..<1000 {
                if !writer.writeEvent(data: "event \(i)") {
                    failedWrite.fulfill()
                    return
                }
                usleep(2_000)
            }
        }
        let client = try HTTPTestClient(port: server.port)
        client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        _ = try client.readHead()
        _ = try client.readChunk()
        client.close()
        wait(for: [failedWrite], timeout: 2)
    }

    func testErrorEventThenEndOfStream() throws {
        let server = try start { _, writer in
            writer.startEventStream()
            writer.writeErrorEvent(.internalServerError, message: "engine failed")
        }  // returning finishes the stream
        let client = try HTTPTestClient(port: server.port)
        client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        _ = try client.readHead()
        XCTAssertEqual(text(try client.readChunk()),
                       "data: {\"error\":{\"message\":\"engine failed\",\"type\":\"server_error\",\"param\":null,\"code\":500}}\n\n")
        XCTAssertNil(try client.readChunk())
    }

    func testHTTP10StreamEndsByClosing() throws {
        let server = try start { _, writer in
            writer.startEventStream()
            writer.writeEvent(data: "a")
            writer.writeEvent(data: "b")
        }
        let client = try HTTPTestClient(port: server.port)
        client.send("GET / HTTP/1.0\r\n\r\n")
        let head = try client.readHead()
        XCTAssertNil(head.header("Transfer-Encoding"))
        XCTAssertNil(head.header("Content-Length"))
        XCTAssertEqual(head.header("Connection"), "close")
        XCTAssertEqual(text(client.readUntilClosed()), "data: a\n\ndata: b\n\n")
    }

    func testWriterIsInertAfterTheHandlerReturns() throws {
        final class Box: @unchecked Sendable { var writer: ResponseWriter? }  // written before the response is read
        let box = Box()
        let server = try start { _, writer in
            box.writer = writer
            writer.send(.text(.ok, "ok"))
        }
        let client = try HTTPTestClient(port: server.port)
        client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(try client.readResponse().text, "ok")
        let writer = try XCTUnwrap(box.writer)
        XCTAssertTrue(HTTPTesting.eventually { !writer.isConnected })
        XCTAssertFalse(writer.startStream())
        XCTAssertFalse(writer.write("late"))
        XCTAssertEqual(writer.responseStatus, .ok)
    }
}
