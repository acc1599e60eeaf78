// The goldens of the shipped family (Tests/Fixtures/logits/specserve-code.json), written by
// tools/fixtures/make_model_goldens.py from HF transformers (float32, eager attention) and HF tokenizers on the
// exported models/specserve-code: read by the core tests (the target's logits) and the speculation tests (Medusa
// heads, the MTP chain, greedy continuations).

public struct ShippedGolden: Decodable {
    public struct Medusa: Decodable {
        public let head: Int
        public let topk_ids: [Int]
        public let topk_logits: [Float]
    }
    public struct MTP: Decodable {
        public struct Step: Decodable {
            public let position: Int
            public let topk_ids: [Int]
            public let topk_logits: [Float]
        }
        public let next_tokens: [Int]
        public let step1_topk_ids: [[Int]]
        public let step1_topk_logits: [[Float]]
        public let chain: [Int]
        public let chain_steps: [Step]
    }
    public struct Prompt: Decodable {
        public let text: String
        public let token_ids: [Int]
        public let topk_ids: [[Int]]
        public let topk_logits: [[Float]]
        public let last_logits: [Float]?
        public let last_hidden: [Float]?
        public let greedy: [Int]
        public let medusa: [Medusa]?
        public let mtp: MTP?
    }
    public let prompts: [Prompt]

    /// Float32 sums in another order: logits of a few units agree to ~1e-4 in practice.
    public static let logitTolerance: Float = 2e-3
    public static let hiddenTolerance: Float = 1e-3
}
