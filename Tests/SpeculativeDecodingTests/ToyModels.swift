import InferenceCore
@testable import SpeculativeDecoding

/// Small randomly initialised models for the loop's tests: the loop's guarantees hold for any weights.
enum ToyModels {
    static func config(vocab: Int = 96, hidden: Int = 32, layers: Int = 2, context: Int = 256) -> LlamaConfig {
        LlamaConfig(hiddenSize: hidden, intermediateSize: 2 * hidden, numHiddenLayers: layers, numAttentionHeads: 4,
                    numKeyValueHeads: 2, rmsNormEps: 1e-5, vocabSize: vocab, maxPositionEmbeddings: context,
                    tieWordEmbeddings: true)
    }

    static func model(seed: UInt64, vocab: Int = 96, hidden: Int = 32, layers: Int = 2, scale: Float = 2) -> LlamaModel {
        LlamaModel(weights: .random(config: config(vocab: vocab, hidden: hidden, layers: layers), seed: seed, scale: scale))
    }

    /// A copy of `model`'s weights with every value nudged by up to ±`noise` (relative): a draft that agrees
    /// with the target often but not always.
    static func perturbed(seed: UInt64, noise: Float, vocab: Int = 96, hidden: Int = 32, layers: Int = 2) -> LlamaModel {
        let weights = LlamaWeights.random(config: config(vocab: vocab, hidden: hidden, layers: layers), seed: seed, scale: 2)
        var rng = SeededGenerator(seed: seed &+ 99)
        let tensors = [weights.embedTokens, weights.norm] + weights.layers.flatMap {
            [$0.inputNorm, $0.q, $0.k, $0.v, $0.o, $0.postAttentionNorm, $0.gate, $0.up, $0.down]
        }
        for t in tensors {
            for i in 0..<t.count { t.data[i] *= 1 + noise * Float(rng.nextUniform() * 2 - 1) }
        }
        return LlamaModel(weights: weights)
    }

    /// A randomly initialised MTP module for `target` (a block of the target's shape, near-one norms).
    static func mtpModule(target: LlamaModel, seed: UInt64 = 9) -> MTPModule {
        let config = target.config
        let block = LlamaWeights.random(config: config, seed: seed, scale: 2).layers[0]
        let h = config.hiddenSize
        func vector(_ n: Int, _ seed: UInt64) -> Tensor {
            var rng = SeededGenerator(seed: seed)
            return Tensor(shape: [n], values: (0..<n).map { _ in 1 + Float(rng.nextUniform() - 0.5) * 0.2 })
        }
        let proj = LlamaWeights.random(config: LlamaConfig(hiddenSize: 2 * h, intermediateSize: 8, numHiddenLayers: 1,
                                                         numAttentionHeads: 2, vocabSize: h), seed: seed &+ 1).embedTokens
        return MTPModule(target: target, index: 0, enorm: vector(h, seed &+ 2), hnorm: vector(h, seed &+ 3), ehProj: proj,
                         block: block, sharedNorm: vector(h, seed &+ 4))
    }
}
