import Foundation

/// The committed golden fixtures under Tests/Fixtures, found from this file's path so that no resource
/// bundle is needed.
enum Fixtures {
    static let directory: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func url(_ relativePath: String) -> URL { directory.appendingPathComponent(relativePath) }

    /// The repository root (for the shipped models under models/).
    static let repositoryRoot: URL = directory.deletingLastPathComponent().deletingLastPathComponent()
}
