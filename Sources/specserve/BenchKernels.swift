import ArgumentParser
import Foundation
import InferenceCore

struct BenchKernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-kernels",
        abstract: "Time the matmul paths, verify cost, attention, prefill and decode on a model's shapes, against the weight-streaming roofline.")

    @Option(help: "Model folder (HF layout).")
    var model: String?
    @Flag(help: "Use random weights of the shipped target's shape (hidden 384, 8 layers, 6/2 heads, SwiGLU 1024, vocab 8192) instead of a model folder.")
    var synthetic = false
    @Option(help: "Timed repetitions per figure (the median is reported).")
    var repeats = 15
    @Option(help: "Kernel threads (default: all cores).")
    var threads: Int?
    @Option(help: "Context length for the decode and verify figures.")
    var context = 256
    @OptionGroup var weights: WeightStreamingOption

    func validate() throws {
        guard (model != nil) != synthetic else { throw ValidationError("give either --model DIR or --synthetic") }
    }

    func run() throws {
        let pool = threads.map { WorkerPool(threadCount: $0) } ?? .shared
        let llama: LlamaModel
        if let model {
            do {
                llama = try LlamaModel.load(directory: URL(fileURLWithPath: model), pool: pool)
            } catch let error as ModelLoadError {
                throw CLIError(error.description)
            }
        } else {
            let config = LlamaConfig(hiddenSize: 384, intermediateSize: 1024, numHiddenLayers: 8, numAttentionHeads: 6,
                                     numKeyValueHeads: 2, rmsNormEps: 1e-5, vocabSize: 8192,
                                     maxPositionEmbeddings: 1024, tieWordEmbeddings: true)
            llama = LlamaModel(weights: .random(config: config), pool: pool)
        }
        try weights.apply(to: llama, path: model ?? "--synthetic")
        var bench = KernelBenchmark(model: llama, repeats: repeats)
        bench.contextLength = context
        _ = bench.run { writeOut($0 + "\n") }
    }
}
