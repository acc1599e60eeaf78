import Foundation

// Medusa heads (DESIGN §3): head h reads the target's final hidden state (after the final norm) at the row that
// produced the pending token and predicts the token h + 1 places after it. Each head is `medusa_num_layers`
// ResBlocks `x + SiLU(W x + b)`, then a vocabulary projection: its own `{h}.{L}.weight` (layout v1) or the
// target's lm_head (layout v2, no such tensor). Weights come from `medusa_lm_head.safetensors`.

public final class MedusaHeads {
    public enum Layout: String, Sendable { case v1OwnProjection = "v1", v2SharedHead = "v2" }

    public let target: LlamaModel
    public let layout: Layout
    /// `blocks[h][l]`: (W `[H, H]`, b `[H]`).
    let blocks: [[(weight: Tensor, bias: Tensor)]]
    /// v1 only: `[V, H]` per head.
    let projections: [Tensor]

    public var count: Int { blocks.count }

    init(target: LlamaModel, layout: Layout, blocks: [[(weight: Tensor, bias: Tensor)]], projections: [Tensor]) {
        self.target = target
        self.layout = layout
        self.blocks = blocks
        self.projections = projections
    }

    /// Loads `directory/medusa_lm_head.safetensors` with the head counts from the target's config (or the
    /// arguments); detects the layout and rejects a file of neither layout, naming the tensor at fault.
    public static func load(target: LlamaModel, directory: URL, heads: Int? = nil, layers: Int? = nil) throws -> MedusaHeads {
        let url = directory.appendingPathComponent("medusa_lm_head.safetensors")
        let configFile = directory.appendingPathComponent("config.json").path
        guard let numHeads = heads ?? target.config.medusaNumHeads, numHeads > 0 else {
            throw ModelLoadError(file: configFile, key: "medusa_num_heads", message: "key 'medusa_num_heads' is missing: the Medusa heads need it")
        }
        let numLayers = layers ?? target.config.medusaNumLayers ?? 1
        let file = try SafeTensorsFile(url: url)
        let h = target.config.hiddenSize, v = target.config.vocabSize
        let ownProjection = file.info("0.\(numLayers).weight") != nil
        var blocks: [[(weight: Tensor, bias: Tensor)]] = []
        var projections: [Tensor] = []
        for head in 0..<numHeads {
            var layers: [(weight: Tensor, bias: Tensor)] = []
            for l in 0..<numLayers {
                layers.append((try file.tensor("\(head).\(l).linear.weight", shape: [h, h]),
                               try file.tensor("\(head).\(l).linear.bias", shape: [h])))
            }
            blocks.append(layers)
            let projection = "\(head).\(numLayers).weight"
            if ownProjection {
                projections.append(try file.tensor(projection, shape: [v, h]))
            } else if file.info(projection) != nil {
                throw ModelLoadError(file: file.fileName, key: projection,
                                     message: "tensor '\(projection)': head 0 has no own projection (layout v2) but head \(head) has one; a file must be all v1 or all v2")
            }
        }
        let expected = Set(blocks.indices.flatMap { head in
            (0..<numLayers).flatMap { ["\(head).\($0).linear.weight", "\(head).\($0).linear.bias"] }
                + (ownProjection ? ["\(head).\(numLayers).weight"] : [])
        })
        if let extra = file.tensorNames.first(where: { !expected.contains($0) }) {
            throw ModelLoadError(file: file.fileName, key: extra,
                                 message: "tensor '\(extra)' belongs to neither Medusa layout for \(numHeads) heads of \(numLayers) ResBlock(s) (v1: {h}.{l}.linear.weight|bias + {h}.\(numLayers).weight; v2: no projection)")
        }
        return MedusaHeads(target: target, layout: ownProjection ? .v1OwnProjection : .v2SharedHead,
                           blocks: blocks, projections: projections)
    }

    /// Bytes the heads read per step (through the target's whole lm_head for layout v2).
    public var weightBytes: Int {
        blocks.joined().reduce(0) { $0 + $1.weight.streamedByteCount + $1.bias.byteCount }
            + projections.reduce(0) { $0 + $1.streamedByteCount }
            + (layout == .v2SharedHead ? target.lmHead.streamedByteCount : 0)
    }

    /// Streams the ResBlocks' matrices (and v1 projections) from BF16 copies where their values are exactly BF16, as
    /// they are when read from BF16 storage: bitwise the same logits, half the bytes. Returns whether all have one.
    @discardableResult
    public func streamMatricesAsBF16() -> Bool {
        (blocks.joined().map(\.weight) + projections).map { $0.keepBF16Copy() }.allSatisfy { $0 }
    }

    /// The logits of the first `heads` heads `[heads, V]` for one final hidden state. With `vocabulary` (layout v2
    /// only: it is a subset of the shared lm_head), only its tokens are scored and the others get −∞.
    public func logits(hidden: [Float], heads: Int? = nil, vocabulary: VocabularySubset? = nil) -> Tensor {
        precondition(vocabulary == nil || layout == .v2SharedHead, "a vocabulary subset of the lm_head serves v2 heads only")
        let n = min(heads ?? count, count), h = target.config.hiddenSize
        let states = Tensor(shape: [n, h])
        let tmp = Tensor(shape: [1, h])
        for head in 0..<n {
            let x = states.row(head)
            hidden.withUnsafeBufferPointer { x.update(from: $0.baseAddress!, count: h) }
            for (w, b) in blocks[head] {
                matmul(x, rows: 1, weight: w, into: tmp.data, path: .streaming, pool: target.pool)
                for i in 0..<h {
                    let z = tmp.data[i] + b.data[i]
                    x[i] += z / (1 + expf(-z))
                }
            }
        }
        if let vocabulary { return vocabulary.logits(rows: states) }
        if layout == .v2SharedHead { return target.vocabularyLogits(states) }
        let out = Tensor(shape: [n, target.config.vocabSize])
        for head in 0..<n {
            matmul(states.row(head), rows: 1, weight: projections[head], into: out.row(head), path: .streaming, pool: target.pool)
        }
        return out
    }
}
