import Foundation

// `specserve bench-kernels`: the kernels on the model's real shapes, and the roofline they are held to.
//
// The roofline is the time to stream every weight a decode step reads once, measured by this program with the
// same threads, so decode can be compared with what the memory system allows on this machine, in this run.

public struct KernelBenchmark {
    public let model: LlamaModel
    public var repeats: Int
    public var rowCounts = [1, 2, 4, 8, 16]
    public var contextLength = 256
    public var prefillLength = 256

    public init(model: LlamaModel, repeats: Int = 15) {
        self.model = model
        self.repeats = repeats
    }

    /// Runs everything and returns the report as text, line by line through `log` as it goes.
    public func run(log: (String) -> Void) -> Report {
        var report = Report()
        let config = model.config
        log("model: hidden \(config.hiddenSize), layers \(config.numHiddenLayers), heads \(config.numAttentionHeads)/\(config.numKeyValueHeads), intermediate \(config.intermediateSize), vocab \(config.vocabSize)")
        log("threads: \(model.pool.threadCount) (kernels), weights streamed per decode step: \(mb(model.weightBytes)); \(BLASCoreChoice.kernelsDescription())")

        // Roofline: stream every weight once.
        let stream = median { streamAll(model.streamedWeights, pool: model.pool) }
        report.rooflineMs = stream * 1e3
        report.bandwidthGBs = Double(model.weightBytes) / stream / 1e9
        log(String(format: "roofline: %.3f ms to stream the weights once (%.1f GB/s) → %.1f tokens/s at most",
                   report.rooflineMs, report.bandwidthGBs, 1 / stream))

        // Matmul paths on every weight of a step (all layers + lm_head), per row count.
        log("\nmatmul, all weights of one step (ms), by rows:")
        log(pad("path", 12) + rowCounts.map { pad("\($0)", 9) }.joined())
        let maxRows = rowCounts.max() ?? 16
        let input = Tensor(shape: [max(maxRows, prefillLength), max(config.hiddenSize, config.intermediateSize)])
        for i in 0..<input.count { input.data[i] = Float(i % 97) / 97 - 0.5 }
        let output = Tensor(shape: [max(maxRows, prefillLength), max(config.vocabSize, 2 * config.intermediateSize)])
        let weights = model.layers.flatMap { [$0.qkv, $0.o, $0.gateUp, $0.down] } + [model.lmHead]
        for path in MatmulPath.allCases {
            var line = pad(path.rawValue, 12)
            for m in rowCounts {
                let t = median { for w in weights { matmul(input.data, rows: m, weight: w, into: output.data, path: path, pool: model.pool) } }
                report.matmulMs[path.rawValue + "@\(m)"] = t * 1e3
                line += pad(String(format: "%.3f", t * 1e3), 9)
            }
            log(line)
        }

        // Decode and verify through the whole forward, at a realistic context. Memory bandwidth on a shared
        // machine drifts from second to second, so each ratio comes from interleaved pairs (A, B, A, B, …):
        // the median of the per-pair ratios compares like with like.
        let cache = model.makeCache()
        let context = min(contextLength, config.maxPositionEmbeddings - 20)
        prefill(cache, length: context)
        func verify(_ k: Int) {
            _ = model.forward((0..<k).map { Row(token: ($0 * 7) % config.vocabSize, position: context + $0, cache: cache) })
        }
        let (decode, overRoofline) = pairedRatio({ verify(1) }, over: { streamAll(model.streamedWeights, pool: model.pool) })
        report.decodeMs = decode * 1e3
        report.decodeTokensPerSecond = 1 / decode
        report.decodeOverRoofline = overRoofline
        log(String(format: "\ndecode step at context %d: %.3f ms = %.1f tokens/s, %.2f× the roofline (%.0f %% of it; paired median)",
                   context, decode * 1e3, 1 / decode, overRoofline, 100 / overRoofline))
        log("verify step cost relative to one decode step (k rows in one forward, paired medians):")
        var verifyLine = ""
        for k in 2...8 {
            let (_, ratio) = pairedRatio({ verify(k) }, over: { verify(1) })
            report.verifyRatio[k] = ratio
            verifyLine += String(format: "  k=%d %.2f×", k, ratio)
        }
        log(verifyLine)

        // Attention alone, one row, every layer, by context length.
        var attentionLine = "attention (one row, all layers):"
        let q = Tensor(shape: [1, config.numAttentionHeads * config.headDim])
        let out = Tensor(shape: [1, config.numAttentionHeads * config.headDim])
        let shape = AttentionShape(numHeads: config.numAttentionHeads, numKVHeads: config.numKeyValueHeads, headDim: config.headDim)
        for n in [128, 512, min(1024, config.maxPositionEmbeddings)] where n <= cache.capacity {
            let row = [Row(token: 0, position: n - 1, cache: cache)]
            let t = median { for l in 0..<config.numHiddenLayers { tiledAttention(q: q.data, rows: row, layer: l, shape: shape, out: out.data, pool: model.pool) } }
            report.attentionMs[n] = t * 1e3
            attentionLine += String(format: "  ctx %d %.3f ms", n, t * 1e3)
        }
        log(attentionLine)

        // Prefill against sgemm's own rate on the largest layer shape.
        let p = min(prefillLength, config.maxPositionEmbeddings)
        let big = model.layers[0].gateUp
        let sgemm = median { matmul(input.data, rows: p, weight: big, into: output.data, path: .blas, pool: model.pool) }
        report.sgemmGFLOPs = 2 * Double(p) * Double(big.count) / sgemm / 1e9
        let prefillCache = model.makeCache()
        let prefillTime = median(repeats: max(3, repeats / 3)) {
            prefillCache.reset()
            prefill(prefillCache, length: p)
        }
        let layerParams = Double(model.parameterCount - model.lmHead.count)
        let attentionFlops = Double(config.numHiddenLayers * config.numAttentionHeads * config.headDim) * 2 * Double(p * p)
        let prefillFlops = 2 * Double(p) * layerParams + attentionFlops + 2 * Double(model.lmHead.count)
        report.prefillTokensPerSecond = Double(p) / prefillTime
        report.prefillGFLOPs = prefillFlops / prefillTime / 1e9
        log(String(format: "prefill %d tokens: %.1f ms = %.0f tokens/s, %.1f GFLOP/s = %.0f %% of sgemm's %.1f GFLOP/s",
                   p, prefillTime * 1e3, report.prefillTokensPerSecond, report.prefillGFLOPs,
                   100 * report.prefillGFLOPs / report.sgemmGFLOPs, report.sgemmGFLOPs))
        return report
    }

    private func prefill(_ cache: KVCache, length: Int) {
        let rows = (0..<length).map { Row(token: ($0 * 13) % model.config.vocabSize, position: $0, cache: cache, isPrompt: true, wantsLogits: $0 == length - 1) }
        _ = model.forward(rows)
        cache.append(length)
    }

    /// Times `a` and `b` alternately; returns a's median seconds and the median of the per-pair ratios a / b.
    private func pairedRatio(_ a: () -> Void, over b: () -> Void) -> (seconds: Double, ratio: Double) {
        a(); b()
        var times: [Double] = [], ratios: [Double] = []
        for _ in 0..<repeats {
            let t0 = monotonicSeconds()
            a()
            let t1 = monotonicSeconds()
            b()
            let t2 = monotonicSeconds()
            times.append(t1 - t0)
            ratios.append((t1 - t0) / (t2 - t1))
        }
        return (times.sorted()[times.count / 2], ratios.sorted()[ratios.count / 2])
    }

    private func median(repeats: Int? = nil, _ body: () -> Void) -> Double {
        body()  // warm-up
        var times: [Double] = []
        for _ in 0..<(repeats ?? self.repeats) {
            let start = monotonicSeconds()
            body()
            times.append(monotonicSeconds() - start)
        }
        times.sort()
        return times[times.count / 2]
    }

    public struct Report: Sendable {
        public var rooflineMs = 0.0, bandwidthGBs = 0.0
        public var matmulMs: [String: Double] = [:]
        public var decodeMs = 0.0, decodeTokensPerSecond = 0.0, decodeOverRoofline = 0.0
        public var verifyRatio: [Int: Double] = [:]
        public var attentionMs: [Int: Double] = [:]
        public var sgemmGFLOPs = 0.0, prefillGFLOPs = 0.0, prefillTokensPerSecond = 0.0
    }
}

public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

func mb(_ bytes: Int) -> String { String(format: "%.1f MB", Double(bytes) / 1e6) }
func pad(_ s: String, _ width: Int) -> String { s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count) }
