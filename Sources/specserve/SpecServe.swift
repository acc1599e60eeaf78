import ArgumentParser
import Foundation
import InferenceCore

@main
struct SpecServe: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "specserve",
        abstract: "A CPU inference server for LLM speculative decoding.",
        subcommands: [Serve.self, Generate.self, Bench.self, BenchKernels.self]
    )

    static func main() {
        restartWithVectorBLASKernelsIfNeeded()
        main(nil)
    }
}

/// OpenBLAS reads OPENBLAS_CORETYPE only when it loads, before any of our code runs; when it took this CPU for one
/// without AVX2/AVX-512 (BLASCoreChoice), set the variable and start this same program again, same pid and
/// arguments. The variable is then set, so the second start goes on. If the exec fails, the generic kernels stay.
func restartWithVectorBLASKernelsIfNeeded() {
    guard let core = BLASCoreChoice.coreToRestartWith() else { return }
    setenv("OPENBLAS_CORETYPE", core, 1)
    setenv(BLASCoreChoice.detectedVariable, blasCoreName, 1)
    execv("/proc/self/exe", CommandLine.unsafeArgv)
}
