import Foundation

// GET /v1/models (the OpenAI list, with each model's context and speculative methods), POST /tokenize and
// POST /detokenize.

struct ModelList: Encodable {
    struct Entry: Encodable {
        var id: String
        var object = "model"
        var created: Int
        var ownedBy = "specserve"
        var maxModelLen: Int
        var speculativeMethods: [String]
        var defaultSpeculativeMethod: String

        enum CodingKeys: String, CodingKey {
            case id, object, created, ownedBy = "owned_by", maxModelLen = "max_model_len"
            case speculativeMethods = "speculative_methods", defaultSpeculativeMethod = "default_speculative_method"
        }

        init(_ model: ServedModel) {
            id = model.id
            created = model.created
            maxModelLen = model.contextLimit
            speculativeMethods = model.family.methods.map(\.rawValue)
            defaultSpeculativeMethod = model.speculation.defaultMethod.rawValue
        }
    }

    var object = "list"
    var data: [Entry]

    init(_ models: [ServedModel]) { data = models.map(Entry.init) }
}

struct TokenizeResponse: Encodable {
    var tokens: [Int]
    var count: Int
    var maxModelLen: Int
    enum CodingKeys: String, CodingKey { case tokens, count, maxModelLen = "max_model_len" }
}

struct DetokenizeResponse: Encodable {
    var prompt: String
}

extension APIRouter {
    /// `{"model", "prompt"}` → `{"tokens", "count", "max_model_len"}`.
    func tokenize(_ body: [UInt8], _ models: [ServedModel], _ writer: ResponseWriter, _ record: inout AccessRecord) throws(APIError) {
        let (model, prompt): (String, String)
        do {
            let r = try JSONObjectReader(try parseBody(body), at: "", keys: ["model", "prompt"], nullIsAbsent: true)
            model = try r.required("model") { (v, p) throws(JSONFieldError) in try v.string(at: p) }
            prompt = try r.required("prompt") { (v, p) throws(JSONFieldError) in try v.string(at: p) }
        } catch let error as JSONFieldError {
            throw APIError(error)
        } catch let error as APIError {
            throw error
        } catch {
            throw APIError(.internalServerError, "\(error)")
        }
        let served = try lookup(model, in: models, &record)
        let tokens = served.tokenizer.encode(prompt)
        record.promptTokens = tokens.count
        writer.send(.json(.ok, encodeJSON(TokenizeResponse(tokens: tokens, count: tokens.count, maxModelLen: served.contextLimit))))
    }

    /// `{"model", "tokens"}` → `{"prompt"}`.
    func detokenize(_ body: [UInt8], _ models: [ServedModel], _ writer: ResponseWriter, _ record: inout AccessRecord) throws(APIError) {
        let (model, tokens): (String, [Int])
        do {
            let r = try JSONObjectReader(try parseBody(body), at: "", keys: ["model", "tokens"], nullIsAbsent: true)
            model = try r.required("model") { (v, p) throws(JSONFieldError) in try v.string(at: p) }
            tokens = try r.required("tokens") { (v, p) throws(JSONFieldError) in
                try v.array(at: p).enumerated().map { (i, item) throws(JSONFieldError) in
                    let id = try item.int(at: "\(p)[\(i)]")
                    guard id >= 0 else { throw JSONFieldError(path: "\(p)[\(i)]", message: "token id \(id) is negative") }
                    return id
                }
            }
        } catch let error as JSONFieldError {
            throw APIError(error)
        } catch let error as APIError {
            throw error
        } catch {
            throw APIError(.internalServerError, "\(error)")
        }
        let served = try lookup(model, in: models, &record)
        if let bad = tokens.firstIndex(where: { $0 >= served.vocabularySize }) {
            throw APIError.badRequest("token id \(tokens[bad]) at tokens[\(bad)] is outside the vocabulary of \(served.vocabularySize)",
                                      param: "tokens")
        }
        writer.send(.json(.ok, encodeJSON(DetokenizeResponse(prompt: served.tokenizer.decode(tokens)))))
    }
}
