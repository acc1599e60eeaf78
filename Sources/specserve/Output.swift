import Foundation

/// A failure to report as one line, without the usage text.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Unbuffered, so streamed tokens appear as they are produced.
func writeOut(_ text: String) {
    FileHandle.standardOutput.write(Data(text.utf8))
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}
