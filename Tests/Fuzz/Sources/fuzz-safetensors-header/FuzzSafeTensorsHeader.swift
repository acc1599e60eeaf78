import FuzzSupport
@testable import InferenceCore

// Input: [mode][rest]. Mode byte even: `rest` is a whole safetensors file. Mode byte odd: `rest` is the header JSON,
// optionally followed by a 0 byte and the data section, and the 8-byte length is written in front of it, so that
// mutations of the JSON are not all spent on a length that no longer matches.
// Checked: no trap; an accepted header has every tensor inside the data section, sized element count × dtype
// size, no two sharing a byte; and every tensor of a supported dtype converts to F32 from where it lies.

func file(from input: [UInt8]) -> [UInt8] {
    let rest = input.dropFirst()
    guard input[0] & 1 == 1 else { return Array(rest) }
    let json = rest.firstIndex(of: 0).map { rest[..<$0] } ?? rest[...]
    let data = rest[json.endIndex...].dropFirst()
    var bytes: [UInt8] = []
    withUnsafeBytes(of: UInt64(json.count).littleEndian) { bytes += $0 }
    return bytes + json + data
}

func check(_ header: SafeTensorsHeader, fileSize: Int, bytes: UnsafeRawBufferPointer) {
    require(header.dataStart >= 8 && header.dataStart <= fileSize, "data section at \(header.dataStart) of \(fileSize)")
    let dataSize = fileSize - header.dataStart
    var ranges: [Range<Int>] = []
    for (name, entry) in header.entries {
        let range = entry.dataOffsets
        require(range.lowerBound >= 0 && range.upperBound <= dataSize, "\(name) at \(range) of \(dataSize)")
        require(entry.elementCount * entry.dtype.byteSize == range.count, "\(name): \(entry.shape) in \(range.count) bytes")
        if !range.isEmpty { ranges.append(range) }
        guard entry.dtype.isSupported else { continue }
        let source = UnsafeRawBufferPointer(rebasing: bytes[(header.dataStart + range.lowerBound)..<(header.dataStart + range.upperBound)])
        let target = UnsafeMutablePointer<Float>.allocate(capacity: max(1, entry.elementCount))
        defer { target.deallocate() }
        convertToF32(source, dtype: entry.dtype, into: target, count: entry.elementCount)
    }
    ranges.sort { $0.lowerBound < $1.lowerBound }
    for (a, b) in zip(ranges, ranges.dropFirst()) { require(a.upperBound <= b.lowerBound, "\(a) overlaps \(b)") }
}

func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    guard size >= 1 else { return 0 }
    let bytes = file(from: Array(UnsafeBufferPointer(start: data, count: size)))
    bytes.withUnsafeBytes { raw in
        do {
            let header = try SafeTensorsHeader.parse(raw, fileName: "fuzz.safetensors")
            note("tensors \(header.entries.keys.sorted()), metadata \(header.metadata)")
            check(header, fileSize: raw.count, bytes: raw)
        } catch let error as ModelLoadError {
            note("refused: \(error)")
            require(error.file == "fuzz.safetensors", "error that does not name the file: \(error)")
        } catch {
            require(false, "unexpected error type: \(error)")
        }
    }
    return 0
}
