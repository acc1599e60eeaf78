import InferenceCore

// A drafter's proposal: a tree of draft tokens hanging off the pending token (the token the target chose last,
// which is decided but not yet in the target's cache). A chain is a tree with one branch.
//
// Verification lays the tree out as one batch: row 0 is the pending token at position n (slot n), node i is row
// i + 1 at slot n + 1 + i and position n + 1 + depth(i). A node attends to the committed prefix, the pending
// token, its ancestors and itself (DESIGN §2), so its logits are bitwise those of the same tokens decoded in order.

public struct DraftTree: Sendable, Equatable {
    /// Node i's token.
    public private(set) var tokens: [Int] = []
    /// Node i's parent node, or -1 when its parent is the pending token (the root).
    public private(set) var parents: [Int] = []
    /// Node i's depth below the root: 0 for the root's children.
    public private(set) var depths: [Int] = []
    /// For rejection sampling: the drafter's full distribution that node i was drawn from (nil when the drafter
    /// has none: greedy-only drafters, or a deterministic guess such as n-gram lookup, treated as one-hot).
    public private(set) var draftDistributions: [[Float]?] = []

    public init() {}

    /// A chain: each token's parent is the one before it.
    public init(chain: [Int], distributions: [[Float]?]? = nil) {
        for (i, token) in chain.enumerated() {
            _ = add(token: token, parent: i - 1, distribution: distributions?[i] ?? nil)
        }
    }

    /// Adds a node and returns its index.
    @discardableResult
    public mutating func add(token: Int, parent: Int, distribution: [Float]? = nil) -> Int {
        precondition(parent >= -1 && parent < tokens.count, "a parent must be added before its children")
        tokens.append(token)
        parents.append(parent)
        depths.append(parent < 0 ? 0 : depths[parent] + 1)
        draftDistributions.append(distribution)
        return tokens.count - 1
    }

    public var count: Int { tokens.count }
    public var isEmpty: Bool { tokens.isEmpty }
    public var maxDepth: Int { (depths.max() ?? -1) + 1 }
    /// True when every node's parent is the node before it.
    public var isChain: Bool { parents.enumerated().allSatisfy { $0.element == $0.offset - 1 } }

    /// Children of `node` (-1 for the root) in insertion order.
    public func children(of node: Int) -> [Int] { parents.indices.filter { parents[$0] == node } }

    /// Node indices from the root's child down to `node`.
    public func path(to node: Int) -> [Int] {
        var path: [Int] = []
        var i = node
        while i >= 0 { path.append(i); i = parents[i] }
        return path.reversed()
    }

    /// The verification batch: the pending token, then every node (see the layout above).
    public func verificationRows(pending: Int, position n: Int, cache: KVCache) -> [Row] {
        var rows = [Row(token: pending, position: n, cache: cache)]
        if isChain {
            for (i, token) in tokens.enumerated() { rows.append(Row(token: token, position: n + 1 + i, cache: cache)) }
        } else {
            for i in tokens.indices {
                let slots = [n] + path(to: i).map { n + 1 + $0 }
                rows.append(Row(token: tokens[i], position: n + 1 + depths[i], cache: cache, slot: n + 1 + i,
                                visibility: .tree(prefixLength: n, path: slots)))
            }
        }
        return rows
    }
}
