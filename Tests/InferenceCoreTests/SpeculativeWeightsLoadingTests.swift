import Foundation
import XCTest
@testable import InferenceCore

/// Loading MTP modules and Medusa heads: every layout problem is named with the file and the tensor.
final class SpeculativeWeightsLoadingTests: XCTestCase {
    let config = LlamaConfig(hiddenSize: 16, intermediateSize: 24, numHiddenLayers: 2, numAttentionHeads: 4,
                             numKeyValueHeads: 2, vocabSize: 40, maxPositionEmbeddings: 64, tieWordEmbeddings: true,
                             medusaNumHeads: 2, medusaNumLayers: 1, numNextnPredictLayers: 1)

    private func folder(_ file: String, _ tensors: [TestTensor]) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("specserve-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data(SafeTensorsTestWriter.encode(tensors)).write(to: dir.appendingPathComponent(file))
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    private func ones(_ name: String, _ shape: [Int]) -> TestTensor {
        .f32(name, shape, [Float](repeating: 0.01, count: shape.reduce(1, *)))
    }

    private func mtpTensors(ehProjShape: [Int]? = nil) -> [TestTensor] {
        let h = config.hiddenSize, p = "model.layers.2."
        return [ones(p + "enorm.weight", [h]), ones(p + "hnorm.weight", [h]), ones(p + "eh_proj.weight", ehProjShape ?? [h, 2 * h]),
                ones(p + "shared_head.norm.weight", [h])]
            + LayerWeights.expectedShapes(prefix: p, config: config).map { ones($0.name, $0.shape) }
    }

    func testMTPModuleLoadsFromLayerNumHiddenLayersAndRunsOneStep() throws {
        let target = LlamaModel(weights: .random(config: config, seed: 1))
        let module = try MTPModule.load(target: target, directory: try folder("model.safetensors", mtpTensors()))
        let cache = module.makeCache(capacity: 8)
        let out = module.forward(hidden: [[Float](repeating: 0.5, count: 16)], tokens: [3], positions: [0], cache: cache, logitsOfLastRow: true)
        XCTAssertEqual(out.hidden.shape, [1, 16])
        XCTAssertEqual(out.logits?.count, 40)
    }

    func testMTPWeightOfTheWrongShapeIsNamed() throws {
        let target = LlamaModel(weights: .random(config: config, seed: 1))
        let dir = try folder("model.safetensors", mtpTensors(ehProjShape: [16, 16]))
        XCTAssertThrowsError(try MTPModule.load(target: target, directory: dir)) {
            let e = $0 as? ModelLoadError
            XCTAssertEqual(e?.key, "model.layers.2.eh_proj.weight")
            XCTAssertTrue(e?.description.contains("[16, 32]") ?? false, "\(String(describing: e))")
        }
    }

    func testMedusaV2AndV1LayoutsLoadAndAMixedFileIsRefused() throws {
        let target = LlamaModel(weights: .random(config: config, seed: 2))
        let h = config.hiddenSize
        let blocks = (0..<2).flatMap { [ones("\($0).0.linear.weight", [h, h]), ones("\($0).0.linear.bias", [h])] }
        let v2 = try MedusaHeads.load(target: target, directory: try folder("medusa_lm_head.safetensors", blocks))
        XCTAssertEqual(v2.layout, .v2SharedHead)
        XCTAssertEqual(v2.logits(hidden: [Float](repeating: 1, count: h)).shape, [2, 40])
        let projections = (0..<2).map { ones("\($0).1.weight", [40, h]) }
        let v1 = try MedusaHeads.load(target: target, directory: try folder("medusa_lm_head.safetensors", blocks + projections))
        XCTAssertEqual(v1.layout, .v1OwnProjection)
        XCTAssertThrowsError(try MedusaHeads.load(target: target, directory: try folder("medusa_lm_head.safetensors", blocks + [projections[1]]))) {
            XCTAssertEqual(($0 as? ModelLoadError)?.key, "1.1.weight")
        }
        XCTAssertThrowsError(try MedusaHeads.load(target: target, directory: try folder("medusa_lm_head.safetensors", blocks + [ones("lm_head.weight", [40, h])]))) {
            XCTAssertEqual(($0 as? ModelLoadError)?.key, "lm_head.weight")
        }
        XCTAssertThrowsError(try MedusaHeads.load(target: target, directory: try folder("medusa_lm_head.safetensors", Array(blocks.dropLast())))) {
            XCTAssertEqual(($0 as? ModelLoadError)?.key, "1.0.linear.bias")
        }
    }
}
