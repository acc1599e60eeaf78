// Randomly initialised weights of any LLaMA shape: for timing kernels on a shape before trained weights
// exist, and for toy models in tests. Deterministic for a seed.

extension LlamaWeights {
    /// Weights drawn uniformly in ±`scale`/√fan-in (norms near 1), from a seeded generator.
    public static func random(config: LlamaConfig, seed: UInt64 = 1, scale: Float = 1) -> LlamaWeights {
        var rng = SeededGenerator(seed: seed)
        func matrix(_ rows: Int, _ columns: Int) -> Tensor {
            let t = Tensor(shape: [rows, columns])
            let bound = scale / Float(columns).squareRoot() * 1.7
            for i in 0..<t.count { t.data[i] = Float(rng.nextUniform() * 2 - 1) * bound }
            return t
        }
        func norm(_ n: Int) -> Tensor {
            let t = Tensor(shape: [n])
            for i in 0..<n { t.data[i] = 1 + Float(rng.nextUniform() - 0.5) * 0.2 }
            return t
        }
        let h = config.hiddenSize, d = config.headDim, i = config.intermediateSize
        let q = config.numAttentionHeads * d, kv = config.numKeyValueHeads * d
        let embed = matrix(config.vocabSize, h)
        let layers = (0..<config.numHiddenLayers).map { _ in
            LayerWeights(inputNorm: norm(h), q: matrix(q, h), k: matrix(kv, h), v: matrix(kv, h), o: matrix(h, q),
                         postAttentionNorm: norm(h), gate: matrix(i, h), up: matrix(i, h), down: matrix(h, i))
        }
        let lmHead = config.tieWordEmbeddings ? embed : matrix(config.vocabSize, h)
        return LlamaWeights(config: config, embedTokens: embed, layers: layers, norm: norm(h), lmHead: lmHead)
    }
}
