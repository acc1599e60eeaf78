// The shape of a Medusa draft tree, compiled once from a "choices" list (DESIGN §5): each choice is a path of
// top-k ranks, one per head — [0] is head 0's best token, [0, 1] head 1's second-best token after it, and so on.
// Every proper prefix of a choice must itself be a choice. At each step the tree is filled with the heads'
// top-k tokens and verified in one forward with the tree mask.

public struct MedusaTree: Sendable, Equatable {
    public struct Node: Sendable, Equatable {
        public var parent: Int   // -1: child of the pending token
        public var depth: Int    // = the head that proposes it
        public var rank: Int     // its rank in that head's top-k
    }

    public let choices: [[Int]]
    public let nodes: [Node]
    /// `ranks[h]`: how many of head h's top tokens the tree uses.
    public let ranksPerHead: [Int]

    public enum Invalid: Error, CustomStringConvertible, Equatable {
        case emptyChoice(index: Int)
        case negativeRank(choice: [Int])
        case missingPrefix(choice: [Int], prefix: [Int])
        case duplicate(choice: [Int])
        case tooDeep(choice: [Int], heads: Int)

        public var description: String {
            switch self {
            case let .emptyChoice(i): return "choice \(i) is empty"
            case let .negativeRank(c): return "choice \(c) has a negative rank"
            case let .missingPrefix(c, p): return "choice \(c) needs its prefix \(p) in the list"
            case let .duplicate(c): return "choice \(c) appears twice"
            case let .tooDeep(c, h): return "choice \(c) is deeper than the \(h) Medusa heads"
            }
        }
    }

    /// Compiles `choices` (any order); `heads` bounds the depth.
    public init(choices: [[Int]], heads: Int) throws {
        for (i, c) in choices.enumerated() where c.isEmpty { throw Invalid.emptyChoice(index: i) }
        let sorted = choices.sorted { $0.count != $1.count ? $0.count < $1.count : $0.lexicographicallyPrecedes($1) }
        var index: [[Int]: Int] = [:]
        var nodes: [Node] = []
        var ranks = [Int](repeating: 0, count: heads)
        for c in sorted {
            if c.contains(where: { $0 < 0 }) { throw Invalid.negativeRank(choice: c) }
            if c.count > heads { throw Invalid.tooDeep(choice: c, heads: heads) }
            if index[c] != nil { throw Invalid.duplicate(choice: c) }
            let prefix = Array(c.dropLast())
            var parent = -1
            if !prefix.isEmpty {
                guard let p = index[prefix] else { throw Invalid.missingPrefix(choice: c, prefix: prefix) }
                parent = p
            }
            index[c] = nodes.count
            nodes.append(Node(parent: parent, depth: c.count - 1, rank: c.last!))
            ranks[c.count - 1] = max(ranks[c.count - 1], c.last! + 1)
        }
        self.choices = sorted
        self.nodes = nodes
        self.ranksPerHead = ranks
    }

    public var maxDepth: Int { (nodes.map(\.depth).max() ?? -1) + 1 }

    /// The `size` most likely nodes when head h's rank-r token is right with probability `accuracy[h][r]`
    /// (independently): best-first over path probabilities, so the result is prefix-closed. This is how a tree
    /// is sized to the measured verify cost of this machine (`chooseSize`).
    public static func sparse(accuracy: [[Double]], size: Int) -> (choices: [[Int]], expectedAccepted: Double) {
        var chosen: [[Int]] = []
        var frontier: [(path: [Int], p: Double)] = accuracy.first.map { $0.enumerated().map { ([$0.offset], $0.element) } } ?? []
        var expected = 0.0
        while chosen.count < size, let best = frontier.indices.max(by: { frontier[$0].p < frontier[$1].p }) {
            let (path, p) = frontier.remove(at: best)
            chosen.append(path)
            expected += p
            if path.count < accuracy.count {
                for (r, a) in accuracy[path.count].enumerated() { frontier.append((path + [r], p * a)) }
            }
        }
        return (chosen, expected)
    }

    /// The tree size among `sizes` with the best expected tokens per step over verify cost (`verifyCost(rows)`,
    /// relative to one decode step; a tree of n nodes verifies n + 1 rows).
    public static func chooseSize(accuracy: [[Double]], sizes: [Int], verifyCost: (Int) -> Double)
        -> (size: Int, choices: [[Int]], expectedSpeedup: Double)
    {
        var best = (size: 0, choices: [[Int]](), expectedSpeedup: 1.0)
        for n in sizes {
            let (choices, expected) = sparse(accuracy: accuracy, size: n)
            let speedup = (1 + expected) / verifyCost(choices.count + 1)
            if speedup > best.expectedSpeedup { best = (n, choices, speedup) }
        }
        return best
    }
}
