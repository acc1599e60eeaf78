import Foundation
import XCTest
@testable import InferenceCore

final class SafeTensorsTests: XCTestCase {
    private let fileName = "test.safetensors"

    private func parse(_ bytes: [UInt8]) throws -> SafeTensorsHeader {
        try bytes.withUnsafeBytes { try SafeTensorsHeader.parse($0, fileName: fileName) }
    }

    /// A file whose header is `entry` for tensor "w" over `dataBytes` bytes of data.
    private func single(_ entry: String, dataBytes: Int = 16) -> [UInt8] {
        SafeTensorsTestWriter.file(header: "{\"w\":\(entry)}", data: [UInt8](repeating: 0, count: dataBytes))
    }

    private func writeFile(_ bytes: [UInt8]) throws -> URL {
        let url = try makeTemporaryDirectory(self).appendingPathComponent("model.safetensors")
        try SafeTensorsTestWriter.write(bytes, to: url)
        return url
    }

    // MARK: Values

    func testF32ValuesRoundTripBitExactly() throws {
        let values: [Float] = [0, -0.0, 1, -2.5, .pi, .infinity, -.infinity, .leastNonzeroMagnitude,
                               .greatestFiniteMagnitude, 1e-30]
        let url = try writeFile(SafeTensorsTestWriter.encode([.f32("a", [2, 5], values)]))
        let tensor = try SafeTensorsFile(url: url).tensor("a")
        XCTAssertEqual(tensor.shape, [2, 5])
        XCTAssertEqual(tensor.array.map(\.bitPattern), values.map(\.bitPattern))
    }

    func testF16ValuesWidenExactlyToF32() throws {
        // Every value is representable in F16, including a subnormal and the largest finite value.
        let values: [Float] = [0, -0.0, 1, -1.5, 0.099975586, 65504, -65504, 5.9604645e-8, .infinity, 1000.5]
        let tensor = TestTensor(name: "h", dtype: "F16", shape: [10], bytes: SafeTensorsTestWriter.f16Bytes(values))
        let url = try writeFile(SafeTensorsTestWriter.encode([tensor]))
        let read = try SafeTensorsFile(url: url).tensor("h")
        XCTAssertEqual(read.array.map(\.bitPattern), values.map(\.bitPattern))
        XCTAssertTrue(try SafeTensorsFile(url: url).info("h")! == ("F16", [10]))
    }

    func testBF16ValuesAreTheUpperHalfOfF32() throws {
        let values: [Float] = [0, -0.0, 1, -3.0, 0.15625, 3.3895314e38, -1.1754944e-38, .infinity, 24.5, -7.25]
        let tensor = TestTensor(name: "b", dtype: "BF16", shape: [5, 2], bytes: SafeTensorsTestWriter.bf16Bytes(values))
        let read = try SafeTensorsFile(url: try writeFile(SafeTensorsTestWriter.encode([tensor]))).tensor("b")
        XCTAssertEqual(read.shape, [5, 2])
        XCTAssertEqual(read.array.map(\.bitPattern), values.map(\.bitPattern))
    }

    func testReadsUnalignedDataAndSeveralDtypesFromOneFile() throws {
        // The odd-sized first tensor leaves the F32 and F16 tensors after it at odd file offsets.
        let odd = TestTensor(name: "flags", dtype: "U8", shape: [3], bytes: [1, 2, 3])
        let half = TestTensor(name: "half", dtype: "F16", shape: [3], bytes: SafeTensorsTestWriter.f16Bytes([1, 2, 3]))
        let file = try SafeTensorsFile(url: try writeFile(SafeTensorsTestWriter.encode(
            [odd, .f32("full", [2], [4.25, -8]), half], metadata: ["format": "pt"])))
        XCTAssertEqual(file.tensorNames, ["flags", "full", "half"])
        XCTAssertEqual(file.header.metadata, ["format": "pt"])
        XCTAssertEqual(try file.tensor("full").array, [4.25, -8])
        XCTAssertEqual(try file.tensor("half", shape: [3]).array, [1, 2, 3])
        XCTAssertNil(file.info("absent"))
    }

    func testReadsScalarAndEmptyTensors() throws {
        let file = try SafeTensorsFile(url: try writeFile(SafeTensorsTestWriter.encode(
            [.f32("scalar", [], [7]), .f32("empty", [0, 4], []), .f32("after", [1], [9])])))
        XCTAssertEqual(try file.tensor("scalar").array, [7])
        XCTAssertEqual(try file.tensor("empty").count, 0)
        XCTAssertEqual(try file.tensor("after").array, [9])
    }

    // MARK: Malformed files

    func testRejectsFileShorterThanEightBytes() throws {
        expectLoadError(try parse([1, 0, 0]), file: fileName, key: nil, contains: ["3 bytes", "shorter than"])
        let url = try writeFile([])
        expectLoadError(try SafeTensorsFile(url: url), file: url.path, key: nil, contains: ["0 bytes"])
    }

    func testRejectsHeaderLengthLargerThanFile() {
        let bytes = SafeTensorsTestWriter.littleEndianBytes(UInt64(100)) + Array("{}".utf8)
        expectLoadError(try parse(bytes), key: nil, contains: ["header length 100", "larger than the file (10 bytes)"])
        let huge = SafeTensorsTestWriter.littleEndianBytes(UInt64.max) + Array("{}".utf8)
        expectLoadError(try parse(huge), key: nil, contains: ["header length 18446744073709551615"])
    }

    func testRejectsHeaderThatIsNotJSON() {
        expectLoadError(try parse(SafeTensorsTestWriter.file(header: "{\"w\": {\"dtype\": ", data: [])),
                        file: fileName, key: nil, contains: ["not valid JSON"])
        let invalidUTF8: [UInt8] = SafeTensorsTestWriter.littleEndianBytes(UInt64(7)) + [0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x31, 0x7D]
        expectLoadError(try parse(invalidUTF8), key: nil, contains: ["not valid JSON"])
        expectLoadError(try parse(SafeTensorsTestWriter.littleEndianBytes(UInt64(0))), key: nil, contains: ["not valid JSON"])
    }

    func testRejectsHeaderThatIsNotAnObject() {
        expectLoadError(try parse(SafeTensorsTestWriter.file(header: "[1, 2]", data: [])),
                        key: nil, contains: ["not a JSON object", "array"])
        expectLoadError(try parse(single("[\"F32\"]")), key: "w", contains: ["tensor 'w'", "expected an object"])
    }

    func testRejectsDeeplyNestedHeaderWithoutRecursing() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        expectLoadError(try parse(SafeTensorsTestWriter.file(header: deep, data: [])), key: nil, contains: ["nested deeper"])
    }

    func testRejectsEntryMissingAField() {
        expectLoadError(try parse(single("{\"shape\":[4],\"data_offsets\":[0,16]}")),
                        file: fileName, key: "w", contains: ["tensor 'w'", "missing 'dtype'"])
        expectLoadError(try parse(single("{\"dtype\":\"F32\",\"data_offsets\":[0,16]}")),
                        key: "w", contains: ["missing 'shape'"])
        expectLoadError(try parse(single("{\"dtype\":\"F32\",\"shape\":[4]}")),
                        key: "w", contains: ["missing 'data_offsets'"])
    }

    func testRejectsEntryFieldsOfWrongType() {
        expectLoadError(try parse(single("{\"dtype\":4,\"shape\":[4],\"data_offsets\":[0,16]}")),
                        key: "w", contains: ["'dtype' must be a string, found integer"])
        for shape in ["4", "[\"4\"]", "[-4]", "[4.5]", "null"] {
            expectLoadError(try parse(single("{\"dtype\":\"F32\",\"shape\":\(shape),\"data_offsets\":[0,16]}")),
                            key: "w", contains: ["'shape' must be a list of non-negative integers"])
        }
        for offsets in ["[0]", "[0,16,32]", "[0,\"16\"]", "[-1,15]", "{}"] {
            expectLoadError(try parse(single("{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":\(offsets)}")),
                            key: "w", contains: ["'data_offsets' must be two non-negative integers"])
        }
    }

    func testAcceptsStringMetadataAndRejectsOtherMetadata() throws {
        let good = SafeTensorsTestWriter.file(header: "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"x\"}}", data: [])
        XCTAssertEqual(try parse(good).metadata, ["format": "pt", "note": "x"])
        XCTAssertTrue(try parse(good).entries.isEmpty)
        expectLoadError(try parse(SafeTensorsTestWriter.file(header: "{\"__metadata__\":{\"step\":3}}", data: [])),
                        key: "__metadata__.step", contains: ["key '__metadata__.step'", "expected a string, found integer"])
        expectLoadError(try parse(SafeTensorsTestWriter.file(header: "{\"__metadata__\":[]}", data: [])),
                        key: "__metadata__", contains: ["expected an object of strings"])
    }

    func testRejectsDataOffsetsPastEndOfData() {
        expectLoadError(try parse(single("{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}", dataBytes: 16)),
                        key: "w", contains: ["[8, 24]", "past the end of the data section (16 bytes)"])
    }

    func testRejectsDataOffsetsWithBeginAfterEnd() {
        expectLoadError(try parse(single("{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[12,4]}")),
                        key: "w", contains: ["[12, 4]", "begin is after end"])
    }

    func testRejectsSizeThatDisagreesWithShapeAndDtype() {
        expectLoadError(try parse(single("{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,16]}")),
                        key: "w", contains: ["16 bytes", "F16 [4] needs 8"])
        expectLoadError(try parse(single("{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,16]}")),
                        key: "w", contains: ["too large"])
    }

    func testRejectsOverlappingTensors() {
        let header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            + "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}"
        expectLoadError(try parse(SafeTensorsTestWriter.file(header: header, data: [UInt8](repeating: 0, count: 16))),
                        key: "b", contains: ["tensor 'b'", "overlap tensor 'a' [0, 8]"])
    }

    func testRejectsUnknownDtypeNamingIt() {
        expectLoadError(try parse(single("{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,16]}")),
                        key: "w", contains: ["tensor 'w'", "unknown dtype 'F128'"])
    }

    func testRejectsUnsupportedDtypeWhenReadButStillOpensTheFile() throws {
        let ids = TestTensor(name: "ids", dtype: "I64", shape: [2], bytes: [UInt8](repeating: 0, count: 16))
        let url = try writeFile(SafeTensorsTestWriter.encode([ids, .f32("w", [1], [1])]))
        let file = try SafeTensorsFile(url: url)
        XCTAssertEqual(try file.tensor("w").array, [1])
        expectLoadError(try file.tensor("ids"), file: url.path, key: "ids",
                        contains: ["tensor 'ids'", "unsupported dtype 'I64'"])
    }

    func testRejectsMissingTensor() throws {
        let url = try writeFile(SafeTensorsTestWriter.encode([.f32("w", [1], [1])]))
        expectLoadError(try SafeTensorsFile(url: url).tensor("model.norm.weight"), file: url.path,
                        key: "model.norm.weight", contains: ["tensor 'model.norm.weight': missing"])
    }

    func testRejectsTensorOfTheWrongShape() throws {
        let url = try writeFile(SafeTensorsTestWriter.encode([.f32("w", [2, 3], [1, 2, 3, 4, 5, 6])]))
        let file = try SafeTensorsFile(url: url)
        XCTAssertEqual(try file.tensor("w", shape: [2, 3]).shape, [2, 3])
        expectLoadError(try file.tensor("w", shape: [3, 2]), file: url.path, key: "w",
                        contains: ["\(url.path): tensor 'w': shape [2, 3] expected [3, 2]"])
    }

    func testRejectsMissingFileAndDirectory() throws {
        let directory = try makeTemporaryDirectory(self)
        let missing = directory.appendingPathComponent("absent.safetensors")
        expectLoadError(try SafeTensorsFile(url: missing), file: missing.path, key: nil, contains: ["cannot open"])
        expectLoadError(try SafeTensorsFile(url: directory), file: directory.path, key: nil,
                        contains: ["not a regular file"])
    }

    func testEveryTruncationOfAValidFileThrowsInsteadOfCrashing() throws {
        let bytes = SafeTensorsTestWriter.encode([.f32("a", [3], [1, 2, 3]), .f32("b", [2], [4, 5])],
                                                 metadata: ["format": "pt"])
        XCTAssertEqual(try parse(bytes).entries.count, 2)
        for length in 0..<bytes.count {
            XCTAssertThrowsError(try parse(Array(bytes[0..<length])), "length \(length)") { error in
                XCTAssertTrue(error is ModelLoadError)
            }
        }
    }
}
