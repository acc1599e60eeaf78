// A dense, row-major F32 tensor that owns its memory.
//
// Weights are loaded once (from F32, F16 or BF16 storage, always computed as F32) and never change after
// that, so a `Tensor` is shared freely between threads. Activations use `Tensor` too, but each is owned by
// exactly one forward pass on the engine thread.
//
// A weight whose every value is exactly a BF16 (as all weights read from BF16 storage are) can also keep a BF16
// copy (`keepBF16Copy`): the streaming matmul then reads 2 bytes per weight instead of 4 and widens them to the
// same F32 values, so its results are bitwise unchanged. The drafters always use it (their decode steps are bound
// by the bytes they stream), the target when asked (`dtype` bf16). The F32 values stay for everything else.

/// A bfloat16 value as stored: the upper 16 bits of an F32.
public struct BF16: Sendable, Equatable {
    public var bits: UInt16
    @inline(__always) public var float: Float { Float(bitPattern: UInt32(bits) << 16) }
}

public final class Tensor: @unchecked Sendable {
    /// Row-major shape: `shape[0]` is the slowest-varying dimension. A weight `[out, in]` as stored by HF.
    public let shape: [Int]
    public let count: Int
    /// 64-byte aligned, so SIMD loads of whole rows never straddle a cache line at the start.
    public let data: UnsafeMutablePointer<Float>

    public init(shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        self.count = shape.reduce(1, *)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * MemoryLayout<Float>.stride, alignment: 64)
        self.data = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        self.data.initialize(repeating: 0, count: max(count, 1))
    }

    public convenience init(shape: [Int], values: [Float]) {
        self.init(shape: shape)
        precondition(values.count == count, "\(values.count) values for shape \(shape)")
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: count) }
    }

    /// The same values as BF16, when `keepBF16Copy` made them (set once, at load, before the tensor is shared).
    public private(set) var bf16: UnsafeMutablePointer<BF16>?

    deinit {
        UnsafeMutableRawPointer(data).deallocate()
        if let bf16 { UnsafeMutableRawPointer(bf16).deallocate() }
    }

    /// Keeps a BF16 copy of the values for the streaming matmul, if every value is exactly a BF16; returns whether
    /// there is one. Call at load time only.
    @discardableResult
    public func keepBF16Copy() -> Bool {
        if bf16 != nil { return true }
        for i in 0..<count where data[i].bitPattern & 0xFFFF != 0 { return false }
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * MemoryLayout<BF16>.stride, alignment: 64)
        let copy = raw.bindMemory(to: BF16.self, capacity: max(count, 1))
        for i in 0..<count { copy[i] = BF16(bits: UInt16(truncatingIfNeeded: data[i].bitPattern >> 16)) }
        bf16 = copy
        return true
    }

    /// Number of rows when viewed as a matrix `[shape[0], rest]`.
    public var rows: Int { shape.first ?? 1 }
    /// Row length when viewed as a matrix `[shape[0], rest]`.
    public var columns: Int { shape.count <= 1 ? count : count / max(shape[0], 1) }

    /// Pointer to row `i` of the `[rows, columns]` view.
    @inline(__always)
    public func row(_ i: Int) -> UnsafeMutablePointer<Float> { data + i * columns }

    public var array: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

    public var byteCount: Int { count * MemoryLayout<Float>.stride }

    /// Bytes the streaming matmul reads for this weight (its BF16 copy when it has one).
    public var streamedByteCount: Int { bf16 != nil ? count * MemoryLayout<BF16>.stride : byteCount }
}
