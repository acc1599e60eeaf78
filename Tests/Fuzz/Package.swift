// swift-tools-version:6.0
// libFuzzer targets for the byte-level parsers of SpecServe. A separate package so that the main build and
// `make test` never see them; `tools/fuzz.sh` builds it with `-sanitize=fuzzer,address` and runs each target.
// Every module (the root's libraries included) is compiled with the sanitizer flags passed on the command line,
// so coverage guides the fuzzer through the parsers themselves.
import PackageDescription

let fuzzTargets = [
    "fuzz-http-parser", "fuzz-chunked-decoder", "fuzz-completion-request", "fuzz-safetensors-header",
    "fuzz-tokenizer-json",
]

let package = Package(
    name: "SpecServeFuzz",
    products: fuzzTargets.map { .executable(name: $0, targets: [$0]) },
    dependencies: [.package(name: "SpecServe", path: "../..")],
    targets: [
        .target(name: "CLibFuzzer"),
        .target(name: "FuzzSupport", dependencies: ["CLibFuzzer"]),
    ] + fuzzTargets.map { name in
        .executableTarget(
            name: name,
            dependencies: [
                "FuzzSupport",
                .product(name: "InferenceServer", package: "SpecServe"),
                .product(name: "InferenceCore", package: "SpecServe"),
            ]
        )
    },
    swiftLanguageModes: [.v6]
)
