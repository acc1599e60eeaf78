import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// safetensors files: an 8-byte little-endian header length N, N bytes of JSON
// `{"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {string: string}}`, then the data
// section that the offsets index. The file is memory-mapped; tensors are converted to F32 when read.
//
// `SafeTensorsHeader.parse` is pure (bytes in, entries or an error out) so that it can be fuzzed; it checks
// everything that can be checked without reading tensor data, against the actual file size.

/// The element types of the safetensors format. Only F32, F16 and BF16 can be read as tensors; the others
/// are known so that their sizes can be checked and a checkpoint carrying, say, an I64 buffer still opens.
public enum SafeTensorsDType: String, Sendable, CaseIterable {
    case F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL, F8_E5M2, F8_E4M3, F8_E8M0

    public var byteSize: Int {
        switch self {
        case .F64, .I64, .U64: 8
        case .F32, .I32, .U32: 4
        case .F16, .BF16, .I16, .U16: 2
        case .I8, .U8, .BOOL, .F8_E5M2, .F8_E4M3, .F8_E8M0: 1
        }
    }

    /// Whether `SafeTensorsFile.tensor` converts this type to F32.
    public var isSupported: Bool { self == .F32 || self == .F16 || self == .BF16 }
}

public struct TensorEntry: Sendable, Equatable {
    public let dtype: SafeTensorsDType
    public let shape: [Int]
    /// Byte range inside the data section (as `data_offsets` in the header).
    public let dataOffsets: Range<Int>

    public var elementCount: Int { shape.reduce(1, *) }
}

public struct SafeTensorsHeader: Sendable {
    public let entries: [String: TensorEntry]
    /// The `__metadata__` map (e.g. `{"format": "pt"}`), empty if absent.
    public let metadata: [String: String]
    /// File offset of the data section: 8 + header length.
    public let dataStart: Int

    /// Parses and checks the header of a whole safetensors file given as `bytes`: lengths, JSON shape, dtypes,
    /// offsets inside the data section, sizes equal to element count × dtype size, no two tensors overlapping.
    public static func parse(_ bytes: UnsafeRawBufferPointer, fileName file: String) throws -> SafeTensorsHeader {
        guard bytes.count >= 8 else {
            throw ModelLoadError.file(file, "file is \(bytes.count) bytes, shorter than the 8-byte header length")
        }
        let headerLength = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
        guard headerLength <= UInt64(bytes.count - 8) else {
            throw ModelLoadError.file(file, "header length \(headerLength) is larger than the file (\(bytes.count) bytes)")
        }
        let dataStart = 8 + Int(headerLength)
        let dataSize = bytes.count - dataStart
        let root = try JSONValue.parse(UnsafeRawBufferPointer(rebasing: bytes[8..<dataStart]), file: file, maxDepth: 8)
        guard case .object(let object) = root else {
            throw ModelLoadError.file(file, "header is not a JSON object (found \(root.kindName))")
        }

        var entries: [String: TensorEntry] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in object {
            if name == "__metadata__" {
                metadata = try parseMetadata(value, file: file)
            } else {
                entries[name] = try parseEntry(name, value, dataSize: dataSize, file: file)
            }
        }
        try checkNoOverlap(entries, file: file)
        return SafeTensorsHeader(entries: entries, metadata: metadata, dataStart: dataStart)
    }

    private static func parseMetadata(_ value: JSONValue, file: String) throws -> [String: String] {
        guard case .object(let map) = value else {
            throw ModelLoadError.key(file, "__metadata__", "expected an object of strings, found \(value.kindName)")
        }
        var metadata: [String: String] = [:]
        for (key, item) in map {
            guard case .string(let string) = item else {
                throw ModelLoadError.key(file, "__metadata__.\(key)", "expected a string, found \(item.kindName)")
            }
            metadata[key] = string
        }
        return metadata
    }

    private static func parseEntry(_ name: String, _ value: JSONValue, dataSize: Int, file: String) throws -> TensorEntry {
        func fail(_ message: String) -> ModelLoadError { .tensor(file, name, message) }
        guard case .object(let fields) = value else { throw fail("expected an object, found \(value.kindName)") }

        guard let dtypeValue = fields["dtype"] else { throw fail("missing 'dtype'") }
        guard case .string(let dtypeName) = dtypeValue else {
            throw fail("'dtype' must be a string, found \(dtypeValue.kindName)")
        }
        guard let dtype = SafeTensorsDType(rawValue: dtypeName) else { throw fail("unknown dtype '\(dtypeName)'") }

        guard let shapeValue = fields["shape"] else { throw fail("missing 'shape'") }
        guard let shape = nonNegativeInts(shapeValue) else {
            throw fail("'shape' must be a list of non-negative integers")
        }
        guard let offsetsValue = fields["data_offsets"] else { throw fail("missing 'data_offsets'") }
        guard let offsets = nonNegativeInts(offsetsValue), offsets.count == 2 else {
            throw fail("'data_offsets' must be two non-negative integers [begin, end]")
        }
        let (begin, end) = (offsets[0], offsets[1])
        guard begin <= end else { throw fail("data_offsets [\(begin), \(end)]: begin is after end") }
        guard end <= dataSize else {
            throw fail("data_offsets [\(begin), \(end)] run past the end of the data section (\(dataSize) bytes)")
        }

        var bytes = dtype.byteSize
        for dimension in shape {
            let (product, overflow) = bytes.multipliedReportingOverflow(by: dimension)
            guard !overflow else { throw fail("shape \(shape) is too large") }
            bytes = product
        }
        guard end - begin == bytes else {
            throw fail("data_offsets [\(begin), \(end)] hold \(end - begin) bytes, but \(dtypeName) \(shape) needs \(bytes)")
        }
        return TensorEntry(dtype: dtype, shape: shape, dataOffsets: begin..<end)
    }

    private static func nonNegativeInts(_ value: JSONValue) -> [Int]? {
        guard case .array(let items) = value else { return nil }
        var ints: [Int] = []
        ints.reserveCapacity(items.count)
        for item in items {
            guard case .int(let int) = item, int >= 0 else { return nil }
            ints.append(int)
        }
        return ints
    }

    /// No two tensors may share a byte (zero-sized tensors hold none).
    private static func checkNoOverlap(_ entries: [String: TensorEntry], file: String) throws {
        let sorted = entries.filter { !$0.value.dataOffsets.isEmpty }
            .sorted { ($0.value.dataOffsets.lowerBound, $0.key) < ($1.value.dataOffsets.lowerBound, $1.key) }
        for (previous, next) in zip(sorted, sorted.dropFirst())
        where next.value.dataOffsets.lowerBound < previous.value.dataOffsets.upperBound {
            let a = previous.value.dataOffsets, b = next.value.dataOffsets
            throw ModelLoadError.tensor(file, next.key,
                "data_offsets [\(b.lowerBound), \(b.upperBound)] overlap tensor '\(previous.key)' [\(a.lowerBound), \(a.upperBound)]")
        }
    }
}

/// A memory-mapped safetensors file whose header has been checked. Tensors are copied out as F32.
public struct SafeTensorsFile: Sendable {
    public let url: URL
    public let header: SafeTensorsHeader
    private let mapping: FileMapping

    /// The path used in error messages.
    public var fileName: String { url.path }

    public init(url: URL) throws {
        self.url = url
        mapping = try FileMapping(path: url.path)
        header = try SafeTensorsHeader.parse(mapping.bytes, fileName: url.path)
    }

    /// The tensor names, sorted.
    public var tensorNames: [String] { header.entries.keys.sorted() }

    public func info(_ name: String) -> (dtype: String, shape: [Int])? {
        header.entries[name].map { ($0.dtype.rawValue, $0.shape) }
    }

    /// Reads tensor `name` as F32 (from F32, F16 or BF16).
    public func tensor(_ name: String) throws -> Tensor {
        guard let entry = header.entries[name] else {
            throw ModelLoadError.tensor(fileName, name, "missing")
        }
        guard entry.dtype.isSupported else {
            throw ModelLoadError.tensor(fileName, name,
                "unsupported dtype '\(entry.dtype.rawValue)' (only F32, F16 and BF16 are read)")
        }
        let tensor = Tensor(shape: entry.shape)
        let start = header.dataStart + entry.dataOffsets.lowerBound
        let source = UnsafeRawBufferPointer(rebasing: mapping.bytes[start..<start + entry.dataOffsets.count])
        convertToF32(source, dtype: entry.dtype, into: tensor.data, count: entry.elementCount)
        return tensor
    }

    /// Reads tensor `name` and checks that its shape is `shape`.
    public func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        if let entry = header.entries[name], entry.shape != shape {
            throw ModelLoadError.tensor(fileName, name, "shape \(entry.shape) expected \(shape)")
        }
        return try tensor(name)
    }
}

/// Widens little-endian F32/F16/BF16 elements (at any alignment) to F32.
func convertToF32(_ source: UnsafeRawBufferPointer, dtype: SafeTensorsDType, into target: UnsafeMutablePointer<Float>,
                  count: Int) {
    guard count > 0, let base = source.baseAddress else { return }
    switch dtype {
    case .F32:
        UnsafeMutableRawPointer(target).copyMemory(from: base, byteCount: count * 4)
    case .F16:
        for i in 0..<count {
            let bits = UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
            target[i] = Float(Float16(bitPattern: bits))
        }
    case .BF16:
        // BF16 is the upper half of an F32.
        for i in 0..<count {
            let bits = UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
            target[i] = Float(bitPattern: UInt32(bits) << 16)
        }
    default:
        preconditionFailure("convertToF32 called for \(dtype.rawValue)")
    }
}

/// A read-only private mapping of a whole file, unmapped when the last `SafeTensorsFile` copy goes away.
/// Never written after `init`, so sharing it between threads is safe.
private final class FileMapping: @unchecked Sendable {
    let bytes: UnsafeRawBufferPointer

    init(path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw ModelLoadError.file(path, "cannot open (\(String(cString: strerror(errno))))")
        }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            throw ModelLoadError.file(path, "cannot stat (\(String(cString: strerror(errno))))")
        }
        guard (status.st_mode & S_IFMT) == S_IFREG else { throw ModelLoadError.file(path, "not a regular file") }
        let size = Int(status.st_size)
        guard size > 0 else {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), address != MAP_FAILED else {
            throw ModelLoadError.file(path, "cannot memory-map (\(String(cString: strerror(errno))))")
        }
        bytes = UnsafeRawBufferPointer(start: address, count: size)
    }

    deinit {
        if let address = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: address), bytes.count) }
    }
}
