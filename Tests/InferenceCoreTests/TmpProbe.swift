import XCTest
@testable import InferenceCore

final class TmpProbe: XCTestCase {
    func testProbe() {
        let config = LlamaConfig(hiddenSize: 384, intermediateSize: 1024, numHiddenLayers: 8, numAttentionHeads: 6,
                                 numKeyValueHeads: 2, rmsNormEps: 1e-5, vocabSize: 8192, maxPositionEmbeddings: 1024, tieWordEmbeddings: true)
        let model = LlamaModel(weights: .random(config: config))
        let weights = model.layers.flatMap { [$0.qkv, $0.o, $0.gateUp, $0.down] } + [model.lmHead]
        let a = Tensor(shape: [16, 1024]), c = Tensor(shape: [16, 8192])
        for m in [1, 5] {
            var ratios: [Double] = [], times: [Double] = []
            for _ in 0..<41 {
                let t0 = monotonicSeconds()
                for w in weights { matmul(a.data, rows: m, weight: w, into: c.data, path: .streaming, pool: model.pool) }
                let t1 = monotonicSeconds()
                streamAll(model.streamedWeights, pool: model.pool)
                let t2 = monotonicSeconds()
                ratios.append((t1 - t0) / (t2 - t1)); times.append(t1 - t0)
            }
            print("rows \(m): matmul \(times.sorted()[20] * 1e3) ms, over stream \(ratios.sorted()[20])")
        }
    }
}
