import CLibFuzzer
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The signature of a fuzz target: one input, 0 to keep it in the corpus (libFuzzer's LLVMFuzzerTestOneInput).
public typealias FuzzTarget = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt

/// Runs libFuzzer with the process's command line (libFuzzer flags and corpus folders) on `target`.
public func runFuzzer(_ target: FuzzTarget) -> Never {
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, target))
}

/// Whether `FUZZ_VERBOSE` is set: targets then describe what each input came to (for checking seeds and
/// reading a saved crash input), which slows fuzzing down.
public let verbose = getenv("FUZZ_VERBOSE") != nil

/// Writes `message` to standard error when `verbose`.
public func note(_ message: @autoclosure () -> String) {
    guard verbose else { return }
    let line = Array((message() + "\n").utf8)
    _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}
