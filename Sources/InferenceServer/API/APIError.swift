// An error answered as an OpenAI error object: `{"error": {"message", "type", "param", "code"}}` with the HTTP
// status as code. `param` names the request field at fault (`max_tokens`, `speculative.method`).

public struct APIError: Error, Equatable, CustomStringConvertible {
    public var status: HTTPStatus
    public var message: String
    public var param: String?
    /// nil uses OpenAI's type for the status (OpenAIErrorBody.defaultType).
    public var type: String?
    public var headers: HTTPHeaders

    public init(_ status: HTTPStatus, _ message: String, param: String? = nil, type: String? = nil,
                headers: HTTPHeaders = HTTPHeaders()) {
        self.status = status
        self.message = message
        self.param = param
        self.type = type
        self.headers = headers
    }

    public var description: String { "\(status.code) \(message)" + (param.map { " (param \($0))" } ?? "") }

    static func badRequest(_ message: String, param: String? = nil) -> APIError { APIError(.badRequest, message, param: param) }

    /// A request value that is missing, unknown or of the wrong type.
    init(_ field: JSONFieldError) {
        self.init(.badRequest, field.path.isEmpty ? field.message : "\(field.path): \(field.message)",
                  param: field.path.isEmpty ? nil : field.path)
    }

    /// A body that is not JSON.
    init(_ syntax: JSONSyntaxError) {
        self.init(.badRequest, "the body is \(syntax.description)")
    }

    var response: HTTPResponse {
        .error(status, message: message, type: type, param: param, headers: headers)
    }
}

extension ResponseWriter {
    @discardableResult
    func send(_ error: APIError) -> Bool { send(error.response) }
}

/// Parses a request body as one JSON object.
func parseBody(_ body: [UInt8]) throws(APIError) -> JSONValue {
    guard !body.isEmpty else { throw APIError.badRequest("the body is empty; send a JSON object") }
    let json: JSONValue
    do {
        json = try JSONValue.parse(body)
    } catch {
        throw APIError(error)
    }
    guard case .object = json else { throw APIError.badRequest("the body must be a JSON object, found \(json.typeName)") }
    return json
}
