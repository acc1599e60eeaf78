// swift-tools-version:6.0
// SpecServe: a CPU inference server for speculative decoding.
// Layers (each depends only on the one below): InferenceCore ← SpeculativeDecoding ← InferenceServer ← specserve.
import PackageDescription
import Foundation

// SIMD kernels compile for baseline x86-64 (SSE2) unless told otherwise, which made the matmul kernel 16×
// slower. haswell (AVX2 + FMA, i.e. x86-64-v3) is the portable default; `SPECSERVE_TARGET_CPU=znver4` (the Makefile picks it from /proc/cpuinfo) tunes for
// the build machine.
let targetCPU = ProcessInfo.processInfo.environment["SPECSERVE_TARGET_CPU"] ?? "haswell"
let kernelFlags: [SwiftSetting] = [.unsafeFlags(["-target-cpu", targetCPU])]

let package = Package(
    name: "SpecServe",
    products: [
        .executable(name: "specserve", targets: ["specserve"]),
        .library(name: "InferenceCore", targets: ["InferenceCore"]),
        .library(name: "SpeculativeDecoding", targets: ["SpeculativeDecoding"]),
        .library(name: "InferenceServer", targets: ["InferenceServer"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(
            name: "COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        .target(name: "InferenceCore", dependencies: ["COpenBLAS"], swiftSettings: kernelFlags),
        .target(name: "SpeculativeDecoding", dependencies: ["InferenceCore"], swiftSettings: kernelFlags),
        .target(name: "InferenceServer", dependencies: ["SpeculativeDecoding", "InferenceCore"], swiftSettings: kernelFlags),
        .executableTarget(
            name: "specserve",
            dependencies: [
                "InferenceServer", "SpeculativeDecoding", "InferenceCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: kernelFlags
        ),
        // Tests find Tests/Fixtures through #filePath (see Tests/*/Fixtures.swift). TestSupport: helpers that more
        // than one test target needs (no XCTest in it, so it builds like any library).
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "InferenceCoreTests", dependencies: ["InferenceCore", "TestSupport"], swiftSettings: kernelFlags),
        .testTarget(name: "SpeculativeDecodingTests", dependencies: ["SpeculativeDecoding", "InferenceCore", "TestSupport"],
                    swiftSettings: kernelFlags),
        .testTarget(name: "InferenceServerTests", dependencies: ["InferenceServer", "SpeculativeDecoding", "InferenceCore", "TestSupport"],
                    swiftSettings: kernelFlags),
    ],
    swiftLanguageModes: [.v6]
)
