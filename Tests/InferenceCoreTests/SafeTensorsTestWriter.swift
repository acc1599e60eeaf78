import Foundation
import XCTest
@testable import InferenceCore

/// One tensor to write: raw little-endian element bytes under a dtype name (any string, so that malformed
/// files can be written too).
struct TestTensor {
    var name: String
    var dtype: String
    var shape: [Int]
    var bytes: [UInt8]

    static func f32(_ name: String, _ shape: [Int], _ values: [Float]) -> TestTensor {
        TestTensor(name: name, dtype: "F32", shape: shape, bytes: SafeTensorsTestWriter.f32Bytes(values))
    }
}

/// A minimal safetensors writer for tests: header JSON with contiguous offsets in the order given.
enum SafeTensorsTestWriter {
    static func f32Bytes(_ values: [Float]) -> [UInt8] {
        values.flatMap { littleEndianBytes($0.bitPattern) }
    }

    static func f16Bytes(_ values: [Float]) -> [UInt8] {
        values.flatMap { littleEndianBytes(Float16($0).bitPattern) }
    }

    /// Truncates to the upper 16 bits; tests pass values that BF16 holds exactly.
    static func bf16Bytes(_ values: [Float]) -> [UInt8] {
        values.flatMap { littleEndianBytes(UInt16($0.bitPattern >> 16)) }
    }

    static func littleEndianBytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        withUnsafeBytes(of: value.littleEndian) { Array($0) }
    }

    static func encode(_ tensors: [TestTensor], metadata: [String: String]? = nil) -> [UInt8] {
        var fields: [String] = []
        if let metadata {
            let items = metadata.keys.sorted().map { "\"\($0)\":\"\(metadata[$0]!)\"" }
            fields.append("\"__metadata__\":{\(items.joined(separator: ","))}")
        }
        var offset = 0
        var data: [UInt8] = []
        for tensor in tensors {
            let shape = tensor.shape.map(String.init).joined(separator: ",")
            fields.append("\"\(tensor.name)\":{\"dtype\":\"\(tensor.dtype)\",\"shape\":[\(shape)],"
                + "\"data_offsets\":[\(offset),\(offset + tensor.bytes.count)]}")
            offset += tensor.bytes.count
            data += tensor.bytes
        }
        return file(header: "{\(fields.joined(separator: ","))}", data: data)
    }

    /// A file with the given header text (padded with spaces to a multiple of 8, as the format suggests).
    static func file(header: String, data: [UInt8]) -> [UInt8] {
        var headerBytes = Array(header.utf8)
        while headerBytes.count % 8 != 0 { headerBytes.append(UInt8(ascii: " ")) }
        return littleEndianBytes(UInt64(headerBytes.count)) + headerBytes + data
    }

    static func write(_ bytes: [UInt8], to url: URL) throws {
        try Data(bytes).write(to: url)
    }

    /// Every tensor of a LLaMA checkpoint for `config`, with distinct deterministic values; `lm_head.weight`
    /// only when `includeLmHead`.
    static func llamaTensors(_ config: LlamaConfig, includeLmHead: Bool) -> [TestTensor] {
        let h = config.hiddenSize, vocab = config.vocabSize
        var shapes: [(String, [Int])] = [("model.embed_tokens.weight", [vocab, h])]
        for layer in 0..<config.numHiddenLayers {
            shapes += LayerWeights.expectedShapes(prefix: "model.layers.\(layer).", config: config)
                .map { ($0.name, $0.shape) }
        }
        shapes.append(("model.norm.weight", [h]))
        if includeLmHead { shapes.append(("lm_head.weight", [vocab, h])) }
        return shapes.enumerated().map { index, item in
            .f32(item.0, item.1, deterministicValues(count: item.1.reduce(1, *), seed: index))
        }
    }

    static func deterministicValues(count: Int, seed: Int) -> [Float] {
        (0..<count).map { Float(seed) + Float($0 % 997) / 1024 }
    }
}

/// A fresh directory under the system temporary directory, removed when the test ends.
func makeTemporaryDirectory(_ test: XCTestCase) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("specserve-load-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
}

/// Asserts that `body` throws a `ModelLoadError` for `file` whose key is `key` and whose description
/// contains every fragment.
func expectLoadError<T>(_ body: @autoclosure () throws -> T, file: String? = nil, key: String?,
                        contains fragments: [String], sourceFile: StaticString = #filePath, line: UInt = #line) {
    do {
        _ = try body()
        XCTFail("expected a ModelLoadError", file: sourceFile, line: line)
    } catch let error as ModelLoadError {
        if let file { XCTAssertEqual(error.file, file, file: sourceFile, line: line) }
        XCTAssertEqual(error.key, key, "\(error)", file: sourceFile, line: line)
        for fragment in fragments {
            XCTAssertTrue(error.description.contains(fragment), "'\(error)' lacks '\(fragment)'",
                          file: sourceFile, line: line)
        }
    } catch {
        XCTFail("expected a ModelLoadError, got \(error)", file: sourceFile, line: line)
    }
}
