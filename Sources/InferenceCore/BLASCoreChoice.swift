import Foundation

// Which OpenBLAS kernels prefill runs on.
//
// OpenBLAS picks its kernels (its "core") from the CPU's family and model number when the library loads. A
// release does not know CPUs that came out after it, and then falls back to a core that has neither AVX2 nor
// AVX-512: Debian 12's OpenBLAS 0.3.21 takes an Intel Xeon of family 6, model 207 (Emerald Rapids, with AVX-512)
// for "Prescott" (SSE3), where sgemm ran at 31–37 GFLOP/s on two cores instead of ~200 with its SkylakeX kernels
// (docs/PERFORMANCE.md, session 9). The library reads the choice only once, at load, from the environment
// variable OPENBLAS_CORETYPE, so the executable sets it and starts itself again (`specserve`'s entry point).

public enum BLASCoreChoice {
    /// OpenBLAS's x86-64 cores whose sgemm uses AVX2 or AVX-512 (the names `openblas_get_corename` returns).
    public static let vectorCores: Set<String> = ["haswell", "zen", "skylakex", "cooperlake", "sapphirerapids"]

    /// The core to ask for instead of `detected`, or nil when `detected` already uses what the CPU has (or the CPU
    /// has neither AVX2 with FMA nor AVX-512). `cpuFlags`: the `flags` of /proc/cpuinfo.
    public static func override(detected: String, cpuFlags: Set<String>) -> String? {
        if vectorCores.contains(detected.lowercased()) { return nil }
        if cpuFlags.isSuperset(of: ["avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl"]) { return "SkylakeX" }
        if cpuFlags.isSuperset(of: ["avx2", "fma"]) { return "Haswell" }
        return nil
    }

    /// The first `flags` line of a /proc/cpuinfo text, as a set (empty when there is none: not Linux on x86).
    public static func cpuFlags(cpuinfo: String) -> Set<String> {
        guard let line = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") }),
              let colon = line.firstIndex(of: ":") else { return [] }
        return Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
    }

    /// This machine's CPU flags.
    public static func cpuFlags() -> Set<String> {
        cpuFlags(cpuinfo: (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? "")
    }

    /// Set beside OPENBLAS_CORETYPE by the start that chose it: the core OpenBLAS had detected.
    public static let detectedVariable = "SPECSERVE_BLAS_DETECTED"

    /// The kernels in use for the load logs, and why when specserve chose them.
    public static func kernelsDescription(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let detected = environment[detectedVariable], let asked = environment["OPENBLAS_CORETYPE"] {
            return "OpenBLAS kernels \(blasCoreName) (OPENBLAS_CORETYPE=\(asked): the library took this CPU for \(detected))"
        }
        return "OpenBLAS kernels \(blasCoreName)"
    }

    /// The OpenBLAS core to start this process again with, or nil to go on as it is: nil when OPENBLAS_CORETYPE
    /// is already set (by the user, or by the start that chose it) or when the detected core is fine.
    public static func coreToRestartWith(environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        guard environment["OPENBLAS_CORETYPE"] == nil else { return nil }
        return override(detected: blasCoreName, cpuFlags: cpuFlags())
    }
}
