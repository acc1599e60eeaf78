// A dense, row-major F32 tensor that owns its memory.
//
// Weights are loaded once (from F32, F16 or BF16 storage, always computed as F32) and never change after
// that, so a `Tensor` is shared freely between threads. Activations use `Tensor` too, but each is owned by
// exactly one forward pass on the engine thread.

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

    deinit { UnsafeMutableRawPointer(data).deallocate() }

    /// Number of rows when viewed as a matrix `[shape[0], rest]`.
    public var rows: Int { shape.first ?? 1 }
    /// Row length when viewed as a matrix `[shape[0], rest]`.
    public var columns: Int { shape.count <= 1 ? count : count / max(shape[0], 1) }

    /// Pointer to row `i` of the `[rows, columns]` view.
    @inline(__always)
    public func row(_ i: Int) -> UnsafeMutablePointer<Float> { data + i * columns }

    public var array: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

    public var byteCount: Int { count * MemoryLayout<Float>.stride }
}
