import Foundation

// GET /v1/models (the OpenAI list, with each model's context and speculative methods), POST /tokenize and
// POST /detokenize.

enum ModelList {
    static func entry(_ model: ServedModel) -> JSONOutput {
        .object(["id": .string(model.id), "object": .string("model"), "created": .int(model.created), "owned_by": .string("specserve"),
                 "max_model_len": .int(model.contextLimit),
                 "speculative_methods": .array(model.family.methods.map { .string($0.rawValue) }),
                 "default_speculative_method": .string(model.speculation.defaultMethod.rawValue)])
    }

    static func list(_ models: [ServedModel]) -> JSONOutput {
        .object(["object": .string("list"), "data": .array(models.map(entry))])
    }
}

extension APIRouter {
    /// `{"model", "prompt"}` → `{"tokens", "count", "max_model_len"}`.
    func tokenize(_ body: [UInt8], _ models: [ServedModel], _ writer: ResponseWriter, _ record: inout AccessRecord) throws(APIError) {
        let (model, prompt): (String, String) = try readFields(body, keys: ["model", "prompt"]) { r in
            (try r.required("model") { (v, p) throws(JSONFieldError) in try v.string(at: p) },
             try r.required("prompt") { (v, p) throws(JSONFieldError) in try v.string(at: p) })
        }
        let served = try lookup(model, in: models, &record)
        let tokens = served.tokenizer.encode(prompt)
        record.promptTokens = tokens.count
        writer.send(.json(.ok, JSONOutput.object(["tokens": .array(tokens.map { .int($0) }), "count": .int(tokens.count),
                                                   "max_model_len": .int(served.contextLimit)]).bytes))
    }

    /// `{"model", "tokens"}` → `{"prompt"}`.
    func detokenize(_ body: [UInt8], _ models: [ServedModel], _ writer: ResponseWriter, _ record: inout AccessRecord) throws(APIError) {
        let (model, tokens): (String, [Int]) = try readFields(body, keys: ["model", "tokens"]) { r in
            (try r.required("model") { (v, p) throws(JSONFieldError) in try v.string(at: p) },
             try r.required("tokens") { (v, p) throws(JSONFieldError) in
                try v.array(at: p).enumerated().map { (i, item) throws(JSONFieldError) in
                    let id = try item.int(at: "\(p)[\(i)]")
                    guard id >= 0 else { throw JSONFieldError(path: "\(p)[\(i)]", message: "token id \(id) is negative") }
                    return id
                }
            })
        }
        let served = try lookup(model, in: models, &record)
        if let bad = tokens.firstIndex(where: { $0 >= served.vocabularySize }) {
            throw APIError.badRequest("token id \(tokens[bad]) at tokens[\(bad)] is outside the vocabulary of \(served.vocabularySize)",
                                      param: "tokens")
        }
        writer.send(.json(.ok, JSONOutput.object(["prompt": .string(served.tokenizer.decode(tokens))]).bytes))
    }
}

/// Reads a JSON object body with exactly `keys`; field errors become 400s naming the param.
private func readFields<T>(_ body: [UInt8], keys: Set<String>, _ read: (JSONObjectReader) throws -> T) throws(APIError) -> T {
    do {
        return try read(try JSONObjectReader(try parseBody(body), at: "", keys: keys, nullIsAbsent: true))
    } catch let error as JSONFieldError {
        throw APIError(error)
    } catch let error as APIError {
        throw error
    } catch {
        throw APIError(.internalServerError, "\(error)")
    }
}
