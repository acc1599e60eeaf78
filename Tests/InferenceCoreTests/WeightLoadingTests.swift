import Foundation
import XCTest
@testable import InferenceCore

final class WeightLoadingTests: XCTestCase {
    /// 2 layers, GQA (4 heads over 2 KV heads), head_dim 4 given explicitly, so q/k/v/o shapes all differ.
    private let config = LlamaConfig(hiddenSize: 8, intermediateSize: 12, numHiddenLayers: 2, numAttentionHeads: 4,
                                     numKeyValueHeads: 2, headDim: 4, vocabSize: 10)

    private func writeCheckpoint(_ tensors: [TestTensor]) throws -> URL {
        let directory = try makeTemporaryDirectory(self)
        try SafeTensorsTestWriter.write(SafeTensorsTestWriter.encode(tensors, metadata: ["format": "pt"]),
                                        to: directory.appendingPathComponent("model.safetensors"))
        return directory
    }

    private func values(_ tensors: [TestTensor], _ name: String) -> [Float] {
        let tensor = tensors.first { $0.name == name }!
        return tensor.bytes.withUnsafeBytes { raw in
            (0..<tensor.bytes.count / 4).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
        }
    }

    func testLoadsEveryTensorWithTheShapeTheConfigImplies() throws {
        let tensors = SafeTensorsTestWriter.llamaTensors(config, includeLmHead: true)
        let weights = try LlamaWeights.load(directory: try writeCheckpoint(tensors), config: config)
        XCTAssertEqual(weights.layers.count, 2)
        XCTAssertEqual(weights.embedTokens.shape, [10, 8])
        XCTAssertEqual(weights.lmHead.shape, [10, 8])
        XCTAssertEqual(weights.norm.shape, [8])
        let layer = weights.layers[1]
        XCTAssertEqual(layer.q.shape, [16, 8])
        XCTAssertEqual(layer.k.shape, [8, 8])
        XCTAssertEqual(layer.v.shape, [8, 8])
        XCTAssertEqual(layer.o.shape, [8, 16])
        XCTAssertEqual(layer.gate.shape, [12, 8])
        XCTAssertEqual(layer.up.shape, [12, 8])
        XCTAssertEqual(layer.down.shape, [8, 12])
        XCTAssertEqual(layer.inputNorm.shape, [8])
        XCTAssertEqual(layer.postAttentionNorm.shape, [8])
        // Each tensor holds its own values (no mix-up of names).
        XCTAssertEqual(layer.k.array, values(tensors, "model.layers.1.self_attn.k_proj.weight"))
        XCTAssertEqual(layer.down.array, values(tensors, "model.layers.1.mlp.down_proj.weight"))
        XCTAssertEqual(weights.layers[0].postAttentionNorm.array,
                       values(tensors, "model.layers.0.post_attention_layernorm.weight"))
        XCTAssertEqual(weights.lmHead.array, values(tensors, "lm_head.weight"))
        XCTAssertFalse(weights.lmHead === weights.embedTokens)
    }

    func testTiedLmHeadIsTheEmbeddingObject() throws {
        var tied = config
        tied.tieWordEmbeddings = true
        let directory = try writeCheckpoint(SafeTensorsTestWriter.llamaTensors(tied, includeLmHead: false))
        let weights = try LlamaWeights.load(directory: directory, config: tied)
        XCTAssertTrue(weights.lmHead === weights.embedTokens)
    }

    func testUntiedCheckpointWithoutLmHeadNamesIt() throws {
        let directory = try writeCheckpoint(SafeTensorsTestWriter.llamaTensors(config, includeLmHead: false))
        let file = directory.appendingPathComponent("model.safetensors").path
        expectLoadError(try LlamaWeights.load(directory: directory, config: config), file: file, key: "lm_head.weight",
                        contains: ["tensor 'lm_head.weight': missing", "tie_word_embeddings is false"])
    }

    func testParameterAndByteCountsCountTiedTensorsOnce() throws {
        let perLayer = 8 + 16 * 8 + 8 * 8 + 8 * 8 + 8 * 16 + 8 + 12 * 8 * 3
        let untied = try LlamaWeights.load(
            directory: try writeCheckpoint(SafeTensorsTestWriter.llamaTensors(config, includeLmHead: true)),
            config: config)
        XCTAssertEqual(untied.parameterCount, 80 + 2 * perLayer + 8 + 80)
        XCTAssertEqual(untied.byteCount, 4 * untied.parameterCount)
        var tiedConfig = config
        tiedConfig.tieWordEmbeddings = true
        let tied = try LlamaWeights.load(
            directory: try writeCheckpoint(SafeTensorsTestWriter.llamaTensors(tiedConfig, includeLmHead: false)),
            config: tiedConfig)
        XCTAssertEqual(tied.parameterCount, 80 + 2 * perLayer + 8)
    }

    func testMissingLayerTensorIsNamed() throws {
        let tensors = SafeTensorsTestWriter.llamaTensors(config, includeLmHead: true)
            .filter { $0.name != "model.layers.1.self_attn.v_proj.weight" }
        let directory = try writeCheckpoint(tensors)
        expectLoadError(try LlamaWeights.load(directory: directory, config: config),
                        file: directory.appendingPathComponent("model.safetensors").path,
                        key: "model.layers.1.self_attn.v_proj.weight",
                        contains: ["tensor 'model.layers.1.self_attn.v_proj.weight': missing"])
    }

    func testTensorOfTheWrongShapeIsNamedWithBothShapes() throws {
        var tensors = SafeTensorsTestWriter.llamaTensors(config, includeLmHead: true)
        let index = tensors.firstIndex { $0.name == "model.layers.1.mlp.up_proj.weight" }!
        tensors[index] = .f32(tensors[index].name, [12, 7], [Float](repeating: 1, count: 84))
        let directory = try writeCheckpoint(tensors)
        let file = directory.appendingPathComponent("model.safetensors").path
        expectLoadError(try LlamaWeights.load(directory: directory, config: config), file: file,
                        key: "model.layers.1.mlp.up_proj.weight",
                        contains: ["\(file): tensor 'model.layers.1.mlp.up_proj.weight': shape [12, 7] expected [12, 8]"])
    }

    func testCheckpointOfAnotherConfigIsRefused() throws {
        let directory = try writeCheckpoint(SafeTensorsTestWriter.llamaTensors(config, includeLmHead: true))
        var wider = config
        wider.vocabSize = 11
        expectLoadError(try LlamaWeights.load(directory: directory, config: wider), key: "model.embed_tokens.weight",
                        contains: ["shape [10, 8] expected [11, 8]"])
        var deeper = config
        deeper.numHiddenLayers = 3
        expectLoadError(try LlamaWeights.load(directory: directory, config: deeper),
                        key: "model.layers.2.input_layernorm.weight", contains: ["missing"])
    }

    func testExtraTensorsSuchAsMTPLayersAreAllowedAndReadable() throws {
        var mtp = config
        mtp.numNextnPredictLayers = 1
        let extra = LayerWeights.expectedShapes(prefix: "model.layers.2.", config: mtp).map {
            TestTensor.f32($0.name, $0.shape, [Float](repeating: 0.5, count: $0.shape.reduce(1, *)))
        } + [.f32("model.layers.2.enorm.weight", [8], [Float](repeating: 2, count: 8))]
        let directory = try writeCheckpoint(SafeTensorsTestWriter.llamaTensors(mtp, includeLmHead: true) + extra)
        let weights = try LlamaWeights.load(directory: directory, config: mtp)
        XCTAssertEqual(weights.layers.count, 2)
        let checkpoint = try SafeTensorsCheckpoint(directory: directory)
        let block = try LayerWeights.load(from: checkpoint, prefix: "model.layers.2.", config: mtp)
        XCTAssertEqual(block.o.array, [Float](repeating: 0.5, count: 128))
        XCTAssertEqual(try checkpoint.tensor("model.layers.2.enorm.weight", shape: [8]).array,
                       [Float](repeating: 2, count: 8))
    }

    func testHalfPrecisionCheckpointLoadsAsF32() throws {
        let tensors = SafeTensorsTestWriter.llamaTensors(config, includeLmHead: true).enumerated().map { index, tensor in
            let floats = values([tensor], tensor.name)
            return index % 2 == 0
                ? TestTensor(name: tensor.name, dtype: "BF16", shape: tensor.shape, bytes: SafeTensorsTestWriter.bf16Bytes(floats))
                : TestTensor(name: tensor.name, dtype: "F16", shape: tensor.shape, bytes: SafeTensorsTestWriter.f16Bytes(floats))
        }
        let weights = try LlamaWeights.load(directory: try writeCheckpoint(tensors), config: config)
        // The test values (integers plus multiples of 1/1024 below 1) round to these in each format.
        let embed = values(SafeTensorsTestWriter.llamaTensors(config, includeLmHead: true), "model.embed_tokens.weight")
        XCTAssertEqual(weights.embedTokens.array, embed.map { Float(bitPattern: $0.bitPattern & 0xFFFF_0000) })
        let norm = values(SafeTensorsTestWriter.llamaTensors(config, includeLmHead: true), "model.norm.weight")
        let normIsF16 = SafeTensorsTestWriter.llamaTensors(config, includeLmHead: true)
            .firstIndex { $0.name == "model.norm.weight" }! % 2 == 1
        XCTAssertEqual(weights.norm.array,
                       normIsF16 ? norm.map { Float(Float16($0)) } : norm.map { Float(bitPattern: $0.bitPattern & 0xFFFF_0000) })
    }

    func testShardedCheckpointLoadsThroughItsIndex() throws {
        let tensors = SafeTensorsTestWriter.llamaTensors(config, includeLmHead: true)
        let directory = try makeTemporaryDirectory(self)
        let shards = ["model-00001-of-00002.safetensors": Array(tensors.prefix(7)),
                      "model-00002-of-00002.safetensors": Array(tensors.dropFirst(7))]
        var weightMap: [String: String] = [:]
        for (shard, part) in shards {
            try SafeTensorsTestWriter.write(SafeTensorsTestWriter.encode(part), to: directory.appendingPathComponent(shard))
            for tensor in part { weightMap[tensor.name] = shard }
        }
        let index = try JSONSerialization.data(withJSONObject: ["metadata": ["total_size": 0], "weight_map": weightMap])
        try index.write(to: directory.appendingPathComponent("model.safetensors.index.json"))
        let weights = try LlamaWeights.load(directory: directory, config: config)
        XCTAssertEqual(weights.lmHead.array, values(tensors, "lm_head.weight"))
        XCTAssertEqual(weights.embedTokens.array, values(tensors, "model.embed_tokens.weight"))

        // A tensor the index maps to a shard that lacks it names that shard.
        weightMap["model.norm.weight"] = "model-00001-of-00002.safetensors"
        try JSONSerialization.data(withJSONObject: ["weight_map": weightMap])
            .write(to: directory.appendingPathComponent("model.safetensors.index.json"))
        let shard = directory.appendingPathComponent("model-00001-of-00002.safetensors").path
        expectLoadError(try LlamaWeights.load(directory: directory, config: config), file: shard,
                        key: "model.norm.weight", contains: ["missing, though model.safetensors.index.json maps it here"])
    }

    func testShardIndexMayNotPointOutsideTheModelFolder() throws {
        let directory = try makeTemporaryDirectory(self)
        let index = directory.appendingPathComponent("model.safetensors.index.json")
        try Data(#"{"weight_map": {"model.norm.weight": "../elsewhere.safetensors"}}"#.utf8).write(to: index)
        expectLoadError(try SafeTensorsCheckpoint(directory: directory), file: index.path,
                        key: "weight_map.model.norm.weight", contains: ["not a plain file name"])
        try Data(#"{"metadata": {}}"#.utf8).write(to: index)
        expectLoadError(try SafeTensorsCheckpoint(directory: directory), file: index.path, key: "weight_map",
                        contains: ["required key is missing"])
    }

    // MARK: Checkpoints written by HF transformers (Tests/Fixtures/tiny-llama-*)

    func testLoadsHFTiedF32Fixture() throws {
        let weights = try LlamaWeights.load(directory: Fixtures.url("tiny-llama-tied"))
        XCTAssertEqual(weights.config.hiddenSize, 64)
        XCTAssertEqual(weights.config.ropeTheta, 10000)
        XCTAssertTrue(weights.lmHead === weights.embedTokens)
        // safetensors' own count of the stored elements; the tied output projection is not stored.
        XCTAssertEqual(weights.parameterCount, 106_816)
        XCTAssertEqual(weights.byteCount, 4 * 106_816)
        // Values as the Python safetensors library reads them.
        XCTAssertEqual(Array(weights.embedTokens.array.prefix(3)), [-0.0223437137901783, -0.0993180200457573, 0.03261474147439003])
        XCTAssertEqual(Array(weights.layers[1].q.array.suffix(2)), [-0.028491109609603882, 0.15373902022838593])
    }

    func testLoadsHFUntiedBF16Fixture() throws {
        let weights = try LlamaWeights.load(directory: Fixtures.url("tiny-llama-untied"))
        XCTAssertEqual(weights.config.ropeTheta, 500_000)
        XCTAssertEqual(weights.config.torchDtype, "bfloat16")
        XCTAssertFalse(weights.lmHead === weights.embedTokens)
        XCTAssertEqual(weights.parameterCount, 127_296)
        XCTAssertEqual(Array(weights.embedTokens.array.prefix(3)), [0.20703125, -0.0225830078125, -0.03759765625])
        XCTAssertEqual(Array(weights.layers[1].q.array.suffix(2)), [0.162109375, -0.0908203125])
        XCTAssertEqual(Array(weights.lmHead.array.suffix(2)), [-0.08056640625, -0.064453125])
    }

    func testFolderWithoutWeightsNamesTheExpectedFile() throws {
        let directory = try makeTemporaryDirectory(self)
        expectLoadError(try LlamaWeights.load(directory: directory, config: config),
                        file: directory.appendingPathComponent("model.safetensors").path, key: nil,
                        contains: ["not found"])
    }
}
