import Foundation
import XCTest
@testable import InferenceCore

final class ModelConfigTests: XCTestCase {
    /// TinyLlama-1.1B-Chat-v1.0's config.json as published (transformers 4 layout).
    static let tinyLlamaConfig = """
        {
          "architectures": ["LlamaForCausalLM"],
          "attention_bias": false,
          "bos_token_id": 1,
          "eos_token_id": 2,
          "hidden_act": "silu",
          "hidden_size": 2048,
          "initializer_range": 0.02,
          "intermediate_size": 5632,
          "max_position_embeddings": 2048,
          "model_type": "llama",
          "num_attention_heads": 32,
          "num_hidden_layers": 22,
          "num_key_value_heads": 4,
          "pretraining_tp": 1,
          "rms_norm_eps": 1e-05,
          "rope_scaling": null,
          "rope_theta": 10000.0,
          "tie_word_embeddings": false,
          "torch_dtype": "bfloat16",
          "transformers_version": "4.35.0",
          "use_cache": true,
          "vocab_size": 32000
        }
        """

    /// What transformers 5 `save_pretrained` writes for a small tied LlamaForCausalLM.
    static let transformers5Config = """
        {
          "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
          "bos_token_id": 1, "dtype": "float32", "eos_token_id": 2, "head_dim": 16, "hidden_act": "silu",
          "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 128, "max_position_embeddings": 2048,
          "mlp_bias": false, "model_type": "llama", "num_attention_heads": 4, "num_hidden_layers": 2,
          "num_key_value_heads": 2, "pad_token_id": null, "pretraining_tp": 1, "rms_norm_eps": 1e-06,
          "rope_parameters": {"rope_theta": 500000.0, "rope_type": "default"}, "tie_word_embeddings": true,
          "transformers_version": "5.23.0", "use_cache": true, "vocab_size": 100
        }
        """

    private let file = "config.json"

    private func parse(_ text: String) throws -> LlamaConfig {
        try LlamaConfig.parse(Data(text.utf8), fileName: file)
    }

    /// The TinyLlama config with `key` set to the JSON text `value` (nil removes the key).
    private func tinyLlama(_ changes: [String: String?]) -> String {
        var object = try! JSONSerialization.jsonObject(with: Data(Self.tinyLlamaConfig.utf8)) as! [String: Any]
        for (key, value) in changes {
            object[key] = value.map { try! JSONSerialization.jsonObject(with: Data($0.utf8), options: .fragmentsAllowed) }
        }
        return String(decoding: try! JSONSerialization.data(withJSONObject: object), as: UTF8.self)
    }

    func testDecodesRealisticHFLlamaConfig() throws {
        let config = try parse(Self.tinyLlamaConfig)
        XCTAssertEqual(config, LlamaConfig(
            hiddenSize: 2048, intermediateSize: 5632, numHiddenLayers: 22, numAttentionHeads: 32,
            numKeyValueHeads: 4, headDim: 64, rmsNormEps: 1e-5, ropeTheta: 10000, vocabSize: 32000,
            maxPositionEmbeddings: 2048, tieWordEmbeddings: false, torchDtype: "bfloat16", bosTokenId: 1,
            eosTokenIds: [2], medusaNumHeads: nil, medusaNumLayers: nil, numNextnPredictLayers: 0))
    }

    func testDecodesTransformers5LayoutWithRopeParametersAndDtype() throws {
        let config = try parse(Self.transformers5Config)
        XCTAssertEqual(config.ropeTheta, 500000)
        XCTAssertEqual(config.torchDtype, "float32")
        XCTAssertEqual(config.headDim, 16)
        XCTAssertEqual(config.numKeyValueHeads, 2)
        XCTAssertTrue(config.tieWordEmbeddings)
        XCTAssertEqual(config.rmsNormEps, 1e-6)
    }

    func testLoadsFromFile() throws {
        let url = try makeTemporaryDirectory(self).appendingPathComponent("config.json")
        try Data(Self.transformers5Config.utf8).write(to: url)
        XCTAssertEqual(try LlamaConfig.load(from: url), try parse(Self.transformers5Config))
    }

    func testAppliesHFDefaultsForOptionalKeys() throws {
        let config = try parse(tinyLlama(["num_key_value_heads": nil, "rope_theta": nil, "tie_word_embeddings": nil,
                                          "torch_dtype": nil, "hidden_act": nil, "bos_token_id": "null",
                                          "eos_token_id": nil]))
        XCTAssertEqual(config.numKeyValueHeads, 32)
        XCTAssertEqual(config.headDim, 64)
        XCTAssertEqual(config.ropeTheta, 10000)
        XCTAssertFalse(config.tieWordEmbeddings)
        XCTAssertNil(config.torchDtype)
        XCTAssertNil(config.bosTokenId)
        XCTAssertEqual(config.eosTokenIds, [])
    }

    func testExplicitHeadDimWins() throws {
        XCTAssertEqual(try parse(tinyLlama(["head_dim": "128"])).headDim, 128)
    }

    func testEosTokenIdMayBeAList() throws {
        XCTAssertEqual(try parse(tinyLlama(["eos_token_id": "[2, 7, 31999]"])).eosTokenIds, [2, 7, 31999])
        expectLoadError(try parse(tinyLlama(["eos_token_id": "[2, \"x\"]"])), file: file, key: "eos_token_id",
                        contains: ["expected an integer or a list of integers, found string"])
        expectLoadError(try parse(tinyLlama(["eos_token_id": "32000"])), key: "eos_token_id",
                        contains: ["token id 32000 is outside the vocabulary (vocab_size 32000)"])
    }

    func testReadsMedusaAndMTPKeys() throws {
        let config = try parse(tinyLlama(["medusa_num_heads": "4", "medusa_num_layers": "1",
                                          "num_nextn_predict_layers": "1"]))
        XCTAssertEqual(config.medusaNumHeads, 4)
        XCTAssertEqual(config.medusaNumLayers, 1)
        XCTAssertEqual(config.numNextnPredictLayers, 1)
        expectLoadError(try parse(tinyLlama(["num_nextn_predict_layers": "-1"])), key: "num_nextn_predict_layers",
                        contains: ["must not be negative"])
    }

    func testNamesMissingKey() {
        for key in ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size",
                    "rms_norm_eps", "max_position_embeddings"] {
            expectLoadError(try parse(tinyLlama([key: nil])), file: file, key: key,
                            contains: ["config.json: key '\(key)': required key is missing"])
        }
    }

    func testNamesKeyOfWrongJSONType() {
        expectLoadError(try parse(tinyLlama(["num_attention_heads": "\"32\""])), file: file, key: "num_attention_heads",
                        contains: ["config.json: key 'num_attention_heads': expected an integer, found string"])
        expectLoadError(try parse(tinyLlama(["hidden_size": "2048.5"])), key: "hidden_size",
                        contains: ["expected an integer, found number"])
        expectLoadError(try parse(tinyLlama(["rms_norm_eps": "true"])), key: "rms_norm_eps",
                        contains: ["expected a number, found boolean"])
        expectLoadError(try parse(tinyLlama(["tie_word_embeddings": "1"])), key: "tie_word_embeddings",
                        contains: ["expected a boolean, found integer"])
        expectLoadError(try parse(tinyLlama(["architectures": "\"LlamaForCausalLM\""])), key: "architectures",
                        contains: ["expected a list of strings, found string"])
        expectLoadError(try parse(tinyLlama(["vocab_size": "0"])), key: "vocab_size", contains: ["must be positive"])
    }

    func testNamesNestedKeyPath() {
        expectLoadError(try parse(tinyLlama(["rope_parameters": "{\"rope_theta\": \"big\"}"])),
                        key: "rope_parameters.rope_theta",
                        contains: ["key 'rope_parameters.rope_theta': expected a number, found string"])
    }

    func testRejectsUnsupportedArchitecture() {
        expectLoadError(try parse(tinyLlama(["architectures": "[\"MistralForCausalLM\"]", "model_type": "\"mistral\""])),
                        file: file, key: "architectures",
                        contains: ["MistralForCausalLM", "model_type 'mistral'", "only LlamaForCausalLM"])
        expectLoadError(try parse(tinyLlama(["architectures": nil, "model_type": nil])), key: "architectures",
                        contains: ["no architectures", "no model_type"])
    }

    func testAcceptsModelTypeLlamaWithoutArchitectures() throws {
        XCTAssertEqual(try parse(tinyLlama(["architectures": nil])).hiddenSize, 2048)
        XCTAssertEqual(try parse(tinyLlama(["architectures": "[\"MedusaModel\"]"])).hiddenSize, 2048)
    }

    func testRejectsRopeScaling() throws {
        expectLoadError(try parse(tinyLlama(["rope_scaling": "{\"rope_type\": \"llama3\", \"factor\": 8.0}"])),
                        key: "rope_scaling", contains: ["rope scaling 'llama3' is not implemented"])
        expectLoadError(try parse(tinyLlama(["rope_scaling": "{\"type\": \"linear\", \"factor\": 2.0}"])),
                        key: "rope_scaling", contains: ["'linear'"])
        expectLoadError(try parse(tinyLlama(["rope_parameters": "{\"rope_type\": \"yarn\", \"rope_theta\": 1e4}"])),
                        key: "rope_parameters.rope_type", contains: ["rope type 'yarn' is not implemented"])
        XCTAssertEqual(try parse(tinyLlama(["rope_scaling": "{\"rope_type\": \"default\"}"])).ropeTheta, 10000)
    }

    func testRejectsAttentionBias() {
        expectLoadError(try parse(tinyLlama(["attention_bias": "true"])), key: "attention_bias",
                        contains: ["not implemented"])
    }

    func testRejectsMLPBias() {
        expectLoadError(try parse(tinyLlama(["mlp_bias": "true"])), key: "mlp_bias", contains: ["not implemented"])
    }

    func testRejectsActivationOtherThanSiLU() {
        expectLoadError(try parse(tinyLlama(["hidden_act": "\"gelu\""])), key: "hidden_act",
                        contains: ["activation 'gelu' is not implemented"])
    }

    func testRejectsHiddenSizeNotDivisibleByHeads() {
        expectLoadError(try parse(tinyLlama(["hidden_size": "2050"])), key: "hidden_size",
                        contains: ["2050 is not divisible by num_attention_heads 32"])
    }

    func testRejectsHeadsNotDivisibleByKeyValueHeads() {
        expectLoadError(try parse(tinyLlama(["num_key_value_heads": "5"])), key: "num_key_value_heads",
                        contains: ["num_attention_heads 32 is not divisible by 5"])
    }

    func testRejectsFileThatIsNotAJSONObject() throws {
        expectLoadError(try parse("{\"hidden_size\": "), file: file, key: nil, contains: ["config.json: not valid JSON"])
        expectLoadError(try parse("[1]"), key: nil, contains: ["expected a JSON object", "found array"])
        let missing = try makeTemporaryDirectory(self).appendingPathComponent("config.json")
        expectLoadError(try LlamaConfig.load(from: missing), file: missing.path, key: nil, contains: ["file not found"])
    }
}
