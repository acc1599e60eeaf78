import Foundation
import InferenceCore
@testable import InferenceServer

/// Writes a small random model as a Hugging Face folder (config.json, model.safetensors in F32, the fixture
/// tokenizer), plus a config file serving it, so the server's start-up path can be run on real files.
enum ToyModelFolder {
    /// A fresh directory holding `config/test.json`, `config/prompts.json` and `models/toy/`; the config's
    /// `models[0]` is the toy model with `speculation` as given (JSON), served on 127.0.0.1 port 0.
    static func make(speculation: String = "{}", extraServer: String = "", extraModel: String = "") throws -> (root: URL, config: String) {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("specserve-serve-\(UUID().uuidString)")
        let model = root.appendingPathComponent("models/toy")
        try FileManager.default.createDirectory(at: model, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: root.appendingPathComponent("config"), withIntermediateDirectories: true)
        let tokenizerURL = Fixtures.url("tokenizer/fixture-tokenizer.json")
        try FileManager.default.copyItem(at: tokenizerURL, to: model.appendingPathComponent("tokenizer.json"))
        let vocab = try BPETokenizer(contentsOf: tokenizerURL).vocabSize
        try write(config: APIToyModel.config(vocab: vocab, context: 512), seed: 5, to: model)
        try Data(#"{"prompts": [{"name": "a", "text": "def f(x):"}, {"name": "b", "text": "import os\n"}]}"#.utf8)
            .write(to: root.appendingPathComponent("config/prompts.json"))
        let config = root.appendingPathComponent("config/test.json").path
        try Data("""
        {"server": {"host": "127.0.0.1", "port": 0, "shutdown_grace_seconds": 1\(extraServer)},
         "engine": {"threads": 1, "max_queue": 8, "max_active": 4, "max_context": null},
         "benchmark": {"prompts": "config/prompts.json"},
         "models": [{"id": "toy", "path": "models/toy", "speculation": \(speculation)\(extraModel)}]}
        """.utf8).write(to: URL(fileURLWithPath: config))
        return (root, config)
    }

    static func write(config c: LlamaConfig, seed: UInt64, to folder: URL) throws {
        let json = """
        {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": \(c.hiddenSize),
         "intermediate_size": \(c.intermediateSize), "num_hidden_layers": \(c.numHiddenLayers),
         "num_attention_heads": \(c.numAttentionHeads), "num_key_value_heads": \(c.numKeyValueHeads),
         "rms_norm_eps": \(c.rmsNormEps), "rope_theta": 10000.0, "vocab_size": \(c.vocabSize),
         "max_position_embeddings": \(c.maxPositionEmbeddings), "tie_word_embeddings": true, "torch_dtype": "float32",
         "hidden_act": "silu", "bos_token_id": null, "eos_token_id": null}
        """
        try Data(json.utf8).write(to: folder.appendingPathComponent("config.json"))
        let w = LlamaWeights.random(config: c, seed: seed, scale: 2)
        var tensors: [(String, Tensor)] = [("model.embed_tokens.weight", w.embedTokens), ("model.norm.weight", w.norm)]
        for (i, l) in w.layers.enumerated() {
            let p = "model.layers.\(i)."
            tensors += [(p + "input_layernorm.weight", l.inputNorm), (p + "self_attn.q_proj.weight", l.q), (p + "self_attn.k_proj.weight", l.k),
                        (p + "self_attn.v_proj.weight", l.v), (p + "self_attn.o_proj.weight", l.o),
                        (p + "post_attention_layernorm.weight", l.postAttentionNorm), (p + "mlp.gate_proj.weight", l.gate),
                        (p + "mlp.up_proj.weight", l.up), (p + "mlp.down_proj.weight", l.down)]
        }
        try writeSafetensors(tensors, to: folder.appendingPathComponent("model.safetensors"))
    }

    /// The safetensors format: an 8-byte little-endian header length, a JSON header of names, dtypes, shapes and
    /// byte offsets, then the raw little-endian data.
    static func writeSafetensors(_ tensors: [(String, Tensor)], to url: URL) throws {
        var entries: [String] = []
        var data: [UInt8] = []
        for (name, t) in tensors {
            let start = data.count
            let buffer = UnsafeBufferPointer(start: t.data, count: t.count)
            data += UnsafeRawBufferPointer(buffer)
            entries.append("\"\(name)\": {\"dtype\": \"F32\", \"shape\": \(t.shape), \"data_offsets\": [\(start), \(data.count)]}")
        }
        var header = Array(("{" + entries.joined(separator: ", ") + "}").utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        var out = withUnsafeBytes(of: UInt64(header.count).littleEndian) { Array($0) }
        out += header + data
        try Data(out).write(to: url)
    }
}
