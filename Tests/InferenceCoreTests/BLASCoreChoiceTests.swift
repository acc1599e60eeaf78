import XCTest
@testable import InferenceCore

/// OpenBLAS kernels: a core OpenBLAS picked without AVX2/AVX-512 on a CPU that has them is replaced by one that uses
/// them; a vector core, or a CPU without those units, is left alone.
final class BLASCoreChoiceTests: XCTestCase {
    private let avx512: Set<String> = ["sse3", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl"]
    private let avx2: Set<String> = ["sse3", "avx", "avx2", "fma"]

    func testAGenericCoreOnAnAVX512MachineIsReplacedBySkylakeX() {
        XCTAssertEqual(BLASCoreChoice.override(detected: "Prescott", cpuFlags: avx512), "SkylakeX")
        XCTAssertEqual(BLASCoreChoice.override(detected: "Nehalem", cpuFlags: avx512), "SkylakeX")
    }

    func testAGenericCoreOnAnAVX2MachineIsReplacedByHaswell() {
        XCTAssertEqual(BLASCoreChoice.override(detected: "Prescott", cpuFlags: avx2), "Haswell")
        XCTAssertEqual(BLASCoreChoice.override(detected: "Sandybridge", cpuFlags: avx2), "Haswell")
        // AVX-512 without BW/VL (Knights Landing) is not what the SkylakeX kernels need.
        XCTAssertEqual(BLASCoreChoice.override(detected: "Prescott", cpuFlags: avx2.union(["avx512f", "avx512cd"])), "Haswell")
    }

    func testAVectorCoreIsKept() {
        for core in ["Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids", "HASWELL"] {
            XCTAssertNil(BLASCoreChoice.override(detected: core, cpuFlags: avx512), core)
        }
    }

    func testACPUWithoutAVX2IsLeftToOpenBLAS() {
        XCTAssertNil(BLASCoreChoice.override(detected: "Prescott", cpuFlags: ["sse3", "avx"]))
        XCTAssertNil(BLASCoreChoice.override(detected: "Prescott", cpuFlags: []))
    }

    func testTheFlagsComeFromTheFirstFlagsLineOfCpuinfo() {
        let cpuinfo = """
        processor\t: 0
        vendor_id\t: GenuineIntel
        flags\t\t: fpu sse3 avx2 fma avx512f
        bugs\t\t: spectre_v1

        processor\t: 1
        flags\t\t: something else
        """
        XCTAssertEqual(BLASCoreChoice.cpuFlags(cpuinfo: cpuinfo), ["fpu", "sse3", "avx2", "fma", "avx512f"])
        XCTAssertEqual(BLASCoreChoice.cpuFlags(cpuinfo: "no such line"), [])
    }

    func testAUserSetCoreTypeIsNeverOverridden() {
        XCTAssertNil(BLASCoreChoice.coreToRestartWith(environment: ["OPENBLAS_CORETYPE": "Prescott"]))
    }

    func testTheLoadLogSaysWhenSpecserveChoseTheCore() {
        let chosen = BLASCoreChoice.kernelsDescription(environment: ["OPENBLAS_CORETYPE": "SkylakeX", BLASCoreChoice.detectedVariable: "Prescott"])
        XCTAssertTrue(chosen.hasSuffix("(OPENBLAS_CORETYPE=SkylakeX: the library took this CPU for Prescott)"), chosen)
        XCTAssertEqual(BLASCoreChoice.kernelsDescription(environment: [:]), "OpenBLAS kernels \(blasCoreName)")
    }
}
