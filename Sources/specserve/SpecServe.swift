import ArgumentParser

@main
struct SpecServe: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "specserve",
        abstract: "A CPU inference server for LLM speculative decoding.",
        subcommands: [Serve.self, Generate.self, Bench.self, BenchKernels.self]
    )
}
