// The key/value cache of one sequence, preallocated to its capacity.
//
// Layout: keys and values each `[layer][slot][kvDim]` row-major, kvDim = numKeyValueHeads · headDim, K and V
// stored after RoPE (keys) exactly as attention reads them. A slot is a storage row; slots `0..<count` hold the
// committed sequence, position i in slot i. A forward pass writes the K/V of its rows into slots at or beyond
// `count` (a verify chain, a draft tree); the caller then commits what was accepted:
//   - `append(n)`            the n rows written at count..<count+n are accepted (plain decode, prefill, chains);
//   - `truncate(to:)`        roll back to a shorter committed prefix (rejected draft tokens);
//   - `compact(keeping:)`    move accepted tree slots into place, in order, after the committed prefix.

public final class KVCache {
    public let layers: Int
    public let kvDim: Int
    public let capacity: Int
    public private(set) var count: Int = 0
    let keys: UnsafeMutablePointer<Float>
    let values: UnsafeMutablePointer<Float>

    public init(layers: Int, kvDim: Int, capacity: Int) {
        precondition(layers > 0 && kvDim > 0 && capacity > 0)
        self.layers = layers
        self.kvDim = kvDim
        self.capacity = capacity
        let n = layers * capacity * kvDim
        keys = .allocate(capacity: n)
        values = .allocate(capacity: n)
        keys.initialize(repeating: 0, count: n)
        values.initialize(repeating: 0, count: n)
    }

    public convenience init(config: LlamaConfig, capacity: Int) {
        self.init(layers: config.numHiddenLayers, kvDim: config.numKeyValueHeads * config.headDim, capacity: capacity)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    /// Bytes held by this cache.
    public var byteCount: Int { 2 * layers * capacity * kvDim * MemoryLayout<Float>.stride }

    @inline(__always)
    public func key(layer: Int, slot: Int) -> UnsafeMutablePointer<Float> { keys + (layer * capacity + slot) * kvDim }

    @inline(__always)
    public func value(layer: Int, slot: Int) -> UnsafeMutablePointer<Float> { values + (layer * capacity + slot) * kvDim }

    /// Commits the `n` slots written after the committed prefix.
    public func append(_ n: Int) {
        precondition(n >= 0 && count + n <= capacity, "KV cache overflow: \(count) + \(n) > \(capacity)")
        count += n
    }

    /// Rolls the sequence back to its first `length` positions.
    public func truncate(to length: Int) {
        precondition(length >= 0 && length <= count, "truncate(to: \(length)) beyond count \(count)")
        count = length
    }

    /// Moves the K/V of `slots` (written by a forward beyond `count`, e.g. an accepted path of a draft tree)
    /// to `count, count+1, …` in the order given, and commits them.
    public func compact(keeping slots: [Int]) {
        precondition(count + slots.count <= capacity)
        for (i, slot) in slots.enumerated() {
            precondition(slot >= count + i && slot < capacity, "slot \(slot) cannot move to \(count + i)")
            let target = count + i
            if slot == target { continue }
            for layer in 0..<layers {
                key(layer: layer, slot: target).update(from: key(layer: layer, slot: slot), count: kvDim)
                value(layer: layer, slot: target).update(from: value(layer: layer, slot: slot), count: kvDim)
            }
        }
        count += slots.count
    }

    /// Forgets everything (the cache is reused for another request).
    public func reset() { count = 0 }
}
