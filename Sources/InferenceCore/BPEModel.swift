import Foundation

// The BPE model of a byte-level tokenizer: a word (the raw bytes of one pre-tokenized piece) starts as one
// symbol per byte and pairs are merged lowest rank first, leftmost first among equal ranks, one merge at a
// time, exactly as HF `tokenizers` does (its priority-queue merge loop). Vocabulary tokens are written in
// the ByteLevel alphabet; the model works on raw bytes and token ids, so no strings are built while
// encoding.

struct BPEModel: Sendable {
    /// The id of each byte's one-character token (the loader makes sure there is one for every byte).
    let byteIDs: [Int32]
    /// (left id << 32 | right id) → (rank << 32 | merged id).
    let merges: [UInt64: UInt64]
    /// `ignore_merges`: a word that is itself a vocabulary token becomes that token.
    let ignoreMerges: Bool
    /// Vocabulary tokens by their raw bytes (used only with `ignoreMerges`).
    let idsByBytes: [[UInt8]: Int32]

    @inline(__always)
    static func pairKey(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }

    /// Appends the ids of `word` to `ids`.
    func encode(word: UnsafeBufferPointer<UInt8>, into ids: inout [Int], scratch: inout BPEScratch) {
        guard !word.isEmpty else { return }
        if ignoreMerges, let id = idsByBytes[Array(word)] {
            ids.append(Int(id))
            return
        }
        scratch.reset()
        for byte in word { scratch.append(byteIDs[Int(byte)]) }
        mergeAll(&scratch)
        var index = 0
        while index >= 0 {
            ids.append(Int(scratch.symbols[index]))
            index = Int(scratch.next[index])
        }
    }

    private func mergeAll(_ s: inout BPEScratch) {
        let count = s.count
        guard count > 1 else { return }
        for position in 0..<(count - 1) {
            if let merge = merges[Self.pairKey(s.symbols[position], s.symbols[position + 1])] {
                s.heap.push(merge & 0xFFFF_FFFF_0000_0000 | UInt64(position))
            }
        }
        while let top = s.heap.pop() {
            let position = Int(top & 0xFFFF_FFFF)
            let rank = top >> 32
            guard !s.removed[position] else { continue }
            let right = Int(s.next[position])
            guard right >= 0 else { continue }
            // An entry whose pair has changed since it was queued is stale. (The pair's text only grows,
            // so equal ranks mean the very same pair.)
            guard let merge = merges[Self.pairKey(s.symbols[position], s.symbols[right])], merge >> 32 == rank else {
                continue
            }
            s.symbols[position] = Int32(truncatingIfNeeded: merge & 0xFFFF_FFFF)
            s.removed[right] = true
            let after = s.next[right]
            s.next[position] = after
            if after >= 0 { s.previous[Int(after)] = Int32(position) }
            let before = s.previous[position]
            if before >= 0, let merge = merges[Self.pairKey(s.symbols[Int(before)], s.symbols[position])] {
                s.heap.push(merge & 0xFFFF_FFFF_0000_0000 | UInt64(before))
            }
            if after >= 0, let merge = merges[Self.pairKey(s.symbols[position], s.symbols[Int(after)])] {
                s.heap.push(merge & 0xFFFF_FFFF_0000_0000 | UInt64(position))
            }
        }
    }
}

/// Working memory for merging one word, reused across the words of one encode call.
struct BPEScratch {
    var symbols: [Int32] = []
    var previous: [Int32] = []
    var next: [Int32] = []
    var removed: [Bool] = []
    var heap = MinHeap()

    var count: Int { symbols.count }

    mutating func reset() {
        symbols.removeAll(keepingCapacity: true)
        previous.removeAll(keepingCapacity: true)
        next.removeAll(keepingCapacity: true)
        removed.removeAll(keepingCapacity: true)
        heap.removeAll()
    }

    /// Appends a symbol linked after the last one.
    mutating func append(_ id: Int32) {
        let index = Int32(symbols.count)
        if index > 0 { next[Int(index) - 1] = index }
        symbols.append(id)
        previous.append(index - 1)
        next.append(-1)
        removed.append(false)
    }
}

/// A binary min-heap of (rank << 32 | position) keys: lowest rank first, then leftmost.
struct MinHeap {
    private var items: [UInt64] = []

    mutating func removeAll() { items.removeAll(keepingCapacity: true) }

    mutating func push(_ item: UInt64) {
        items.append(item)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child] < items[parent] else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> UInt64? {
        guard let last = items.popLast() else { return nil }
        guard !items.isEmpty else { return last }
        let top = items[0]
        items[0] = last
        var parent = 0
        let count = items.count
        while true {
            let left = 2 * parent + 1
            guard left < count else { break }
            let right = left + 1
            let smaller = right < count && items[right] < items[left] ? right : left
            guard items[smaller] < items[parent] else { break }
            items.swapAt(smaller, parent)
            parent = smaller
        }
        return top
    }
}

/// Encodings of words seen before, shared by all callers of one tokenizer. Like the reference, it stops
/// taking new words once full and skips long words.
final class BPEWordCache: @unchecked Sendable {
    static let capacity = 10_000
    static let maxWordLength = 256

    private let lock = NSLock()
    private var entries: [[UInt8]: [Int32]] = [:]

    func lookup(_ word: [UInt8]) -> [Int32]? {
        lock.lock()
        defer { lock.unlock() }
        return entries[word]
    }

    func store(_ word: [UInt8], _ ids: [Int32]) {
        lock.lock()
        defer { lock.unlock() }
        if entries.count < Self.capacity { entries[word] = ids }
    }
}
