import Foundation
import InferenceCore
import SpeculativeDecoding

// Start-up for one configured model: load the target and its drafters, check the speculation settings against
// what was loaded, measure on this machine what a verify step and a draft step cost (for auto-off and the
// Medusa tree size), choose the Medusa tree, and make the model's engine. Every failure names the config key.

public enum ModelLoader {
    /// Loads `config.models[index]`; its engine is created but not started. `log` gets the start-up lines.
    public static func load(_ index: Int, config: ServerConfig, pool: WorkerPool, calibrate: Bool = true,
                            log: (String) -> Void) throws(ConfigError) -> ServedModel {
        let entry = config.models[index]
        let key = "models[\(index)]"
        func fail(_ path: String, _ message: String) -> ConfigError { ConfigError(file: config.file, path: path, message: message) }

        let targetURL = config.resolve(entry.path)
        let draftURL = entry.speculation.draft.path.map(config.resolve)
        let start = monotonicSeconds()
        let family: ModelFamily
        do {
            family = try ModelFamily.load(target: targetURL, draft: draftURL, pool: pool)
        } catch {
            let message = "\(error)"
            let inDraft = draftURL.map { message.contains($0.path) && !message.contains("the target") } ?? false
            throw fail(inDraft ? "\(key).speculation.draft.path" : "\(key).path", message)
        }
        for (method, size) in [(SpeculativeMethod.draft, entry.speculation.draft.vocabulary), (.mtp, entry.speculation.mtp.vocabulary),
                               (.medusa, entry.speculation.medusa.vocabulary)] {
            do { try family.useVocabularySubset(size, for: method) } catch {
                throw fail("\(key).speculation.\(method.rawValue).vocabulary", "\(error)")
            }
        }
        if entry.dtype == "bf16" && !family.target.streamMatricesAsBF16() {
            throw fail("\(key).dtype", "'bf16' streams the target's weights as BF16, which needs every value to be a BF16 "
                       + "(a BF16 checkpoint); \(targetURL.path) holds values that are not, so they would change: use 'f32'")
        }
        let loadSeconds = monotonicSeconds() - start
        guard family.methods.contains(entry.speculation.defaultMethod) else {
            throw fail("\(key).speculation.default_method", "'\(entry.speculation.defaultMethod.rawValue)' is not available for "
                       + "\(entry.path) (available: \(family.methods.map(\.rawValue).joined(separator: ", "))): "
                       + requirement(entry.speculation.defaultMethod))
        }
        var parts = [String(format: "%.1fM parameters, %.1f MB of weights streamed per token (%@)", Double(family.target.parameterCount) / 1e6,
                            Double(family.target.weightBytes) / 1e6, entry.dtype)]
        if let draft = family.draft { parts.append(String(format: "draft %@ %.1f MB", entry.speculation.draft.path ?? "", Double(draft.weightBytes) / 1e6)) }
        if let medusa = family.medusa { parts.append(String(format: "%d Medusa heads (%.1f MB)", medusa.count, Double(medusa.weightBytes) / 1e6)) }
        if let mtp = family.mtp { parts.append(String(format: "MTP module (%.1f MB)", Double(mtp.weightBytes) / 1e6)) }
        for (name, subset) in family.vocabularySubsets {
            parts.append(String(format: "%@ drafts from the %d most frequent tokens (%.1f MB head)", name, subset.ids.count, Double(subset.byteCount) / 1e6))
        }
        log("loaded \(entry.id) from \(targetURL.path): " + parts.joined(separator: ", ")
            + String(format: "; context %d; methods %@; %.2f s", family.target.config.maxPositionEmbeddings,
                     family.methods.map(\.rawValue).joined(separator: "/"), loadSeconds))
        log("kernels: streaming SIMD matmul for decode/verify rows, OpenBLAS sgemm for prompt runs of ≥ \(family.target.blasMinimumRows) rows; "
            + "\(pool.threadCount) kernel threads; \(BLASCoreChoice.kernelsDescription())")

        var verify = CostModel.free
        if calibrate {
            let t0 = monotonicSeconds()
            verify = CostModel.measure(target: family.target)
            log(String(format: "calibrated verify cost (relative to one decode step) in %.2f s: ", monotonicSeconds() - t0)
                + [2, 4, 8, 16].map { String(format: "%d rows %.2f×", $0, verify.verifyCost(rows: $0)) }.joined(separator: ", "))
        }
        var tree: MedusaTree?
        if family.medusa != nil {
            do {
                tree = try family.medusaTree(entry.speculation.medusa.options, cost: verify)
            } catch {
                throw fail("\(key).speculation.medusa.tree", "\(error)")
            }
            let how = if case .auto = entry.speculation.medusa.tree { "sized to this machine's verify cost" } else { "from the config" }
            log("medusa tree: \(tree!.nodes.count) nodes, depth \(tree!.maxDepth) (\(how)): \(tree!.choices)")
        }
        var costs: [SpeculativeMethod: CostModel] = [:]
        for method in family.methods {
            var cost = verify
            if calibrate { cost.draftPerToken = DraftCost.measure(method, family: family, medusaTree: tree) }
            costs[method] = cost
        }
        if calibrate {
            let drafting = family.methods.filter { $0 != .none && $0 != .ngram }
            if !drafting.isEmpty {
                log("draft cost per token (relative to one decode step): "
                    + drafting.map { String(format: "%@ %.3f×", $0.rawValue, costs[$0]!.draftPerToken) }.joined(separator: ", "))
            }
        }
        let engine = Engine(family: family, settings: EngineSettings(maxQueue: config.engine.maxQueue, maxActive: config.engine.maxActive),
                            medusaTree: tree)
        return ServedModel(id: entry.id, family: family, engine: engine, speculation: entry.speculation, costs: costs,
                           maxContext: config.engine.maxContext)
    }

    /// What a method needs in the model folder.
    static func requirement(_ method: SpeculativeMethod) -> String {
        switch method {
        case .none, .ngram: return "always available"
        case .draft: return "set speculation.draft.path to a draft model folder"
        case .medusa: return "needs medusa_lm_head.safetensors in the model folder"
        case .mtp: return "needs num_nextn_predict_layers ≥ 1 and the MTP layers in the model folder"
        }
    }
}
