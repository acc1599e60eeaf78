import ArgumentParser
import Foundation
import InferenceServer

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the configured models over the OpenAI-compatible HTTP API (completions, streaming, metrics, benchmark).")

    @Option(help: "Config file (relative paths in it start at the parent of its folder).")
    var config = "config/default.json"
    @Option(help: "Port to listen on (overrides server.port; 0 picks a free one).")
    var port: Int?
    @Option(help: "Address to bind (overrides server.host).")
    var host: String?

    func validate() throws {
        if let port, !(0...65535).contains(port) { throw ValidationError("--port must be in 0...65535") }
        if let host, host.isEmpty { throw ValidationError("--host is empty") }
    }

    func run() throws {
        var settings: ServerConfig
        do {
            settings = try ServerConfig.load(file: config)
        } catch {
            throw CLIError(error.description)
        }
        if let port { settings.server.port = port }
        if let host { settings.server.host = host }
        let server: Server
        do {
            server = try Server(config: settings)
        } catch {
            throw CLIError(error.description)
        }
        do {
            try server.start()
        } catch let error as CustomStringConvertible {
            throw CLIError(error.description)
        }
        let signals = try server.installSignalHandlers()
        withExtendedLifetime(signals) { server.http.waitUntilStopped() }
        // waitUntilStopped returns once a shutdown completed; the signal handler then exits 0. Park until it does.
        while true { sleep(60) }
    }
}
