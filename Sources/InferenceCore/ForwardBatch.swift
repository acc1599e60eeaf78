// What one forward pass computes: a batch of rows. A row is one token of one sequence at one position,
// with what it may attend to. Prefill, a decode step, a verify chain, a draft tree and the rows of several
// concurrent requests are all just batches of rows (DESIGN §2).

/// The positions a row attends to, in logical-position order. Attention tiles these by logical position,
/// so a row sees exactly the same keys in the same tiles whether it is computed alone, in a chain or in a tree.
public enum Visibility: Sendable, Equatable {
    /// Slots `0...position` of the row's cache, where slot i holds position i (prompts, decode, chains).
    case causal
    /// A draft-tree node: the committed prefix (slots `0..<prefixLength`), then the slots of its ancestors from
    /// the root down and its own slot last. Its position is `prefixLength + path.count - 1`.
    case tree(prefixLength: Int, path: [Int])
}

public struct Row {
    public var token: Int
    /// Logical position in the sequence (RoPE angle and tiling).
    public var position: Int
    public var cache: KVCache
    /// Where this row's K/V is written in `cache`.
    public var slot: Int
    public var visibility: Visibility
    /// Part of a prompt: runs of ≥ `LlamaModel.blasMinimumRows` prompt rows of one cache use sgemm.
    public var isPrompt: Bool
    /// Whether the caller needs this row's logits (the lm_head is ~20 % of the weights; prefill skips it).
    public var wantsLogits: Bool

    public init(token: Int, position: Int, cache: KVCache, slot: Int? = nil, visibility: Visibility = .causal,
                isPrompt: Bool = false, wantsLogits: Bool = true) {
        self.token = token
        self.position = position
        self.cache = cache
        self.slot = slot ?? position
        self.visibility = visibility
        self.isPrompt = isPrompt
        self.wantsLogits = wantsLogits
    }

    /// The number of positions this row attends to, itself included.
    var visibleCount: Int { position + 1 }

    /// The cache slot holding logical position `j` (0 ≤ j ≤ position) for this row.
    @inline(__always)
    func slot(ofLogical j: Int) -> Int {
        switch visibility {
        case .causal: return j
        case let .tree(prefixLength, path): return j < prefixLength ? j : path[j - prefixLength]
        }
    }

    /// Checks the row is well formed against its cache.
    func validate() {
        precondition(slot >= 0 && slot < cache.capacity, "slot \(slot) outside cache capacity \(cache.capacity)")
        switch visibility {
        case .causal:
            precondition(slot == position, "a causal row must be written at its own position")
        case let .tree(prefixLength, path):
            precondition(!path.isEmpty && path.last == slot, "a tree row's path must end with its own slot")
            precondition(position == prefixLength + path.count - 1, "tree row position must be prefix + depth")
            precondition(prefixLength <= cache.count, "tree prefix beyond the committed cache")
        }
    }
}

/// The result of a forward pass, indexed by the batch's row order.
public struct ForwardOutput {
    /// `[rows, vocab]`; rows that did not ask for logits hold zeros.
    public let logits: Tensor
    /// `[rows, hidden]`, the final hidden states after the final norm (Medusa heads and MTP read these).
    public let hidden: Tensor
    /// Pre-norm final hidden states `[rows, hidden]` (the residual stream after the last layer).
    public let residual: Tensor

    /// A copy of one row's logits (a copy, so it outlives this output).
    public func logits(row: Int) -> [Float] {
        Array(UnsafeBufferPointer(start: logits.row(row), count: logits.columns))
    }
    /// A copy of one row's final hidden state.
    public func hidden(row: Int) -> [Float] {
        Array(UnsafeBufferPointer(start: hidden.row(row), count: hidden.columns))
    }
}
