import Foundation

// Hands a job's events from the engine thread to the connection thread, which does all the writing. The engine
// only appends (never blocks); the connection thread waits with a timeout, so it can send heartbeats and notice
// a client that left while nothing is produced.

final class EventChannel: @unchecked Sendable {
    // `@unchecked Sendable`: `events` is only touched under `condition`.
    private let condition = NSCondition()
    private var events: [EngineEvent] = []

    func push(_ event: EngineEvent) {
        condition.lock()
        events.append(event)
        condition.signal()
        condition.unlock()
    }

    /// The next event, or nil when none arrived within `timeout` seconds.
    func next(timeout: Double) -> EngineEvent? {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: timeout)
        while events.isEmpty {
            if !condition.wait(until: deadline) { break }
        }
        return events.isEmpty ? nil : events.removeFirst()
    }
}
