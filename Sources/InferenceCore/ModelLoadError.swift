// The one error type of model loading (config.json, safetensors files, weight checks).
//
// A broken model folder must never crash the server: every check throws a `ModelLoadError` that names the
// file and, where there is one, the JSON key or tensor at fault, e.g.
// `models/tiny/model.safetensors: tensor 'model.layers.3.mlp.up_proj.weight': shape [1024, 384] expected [1024, 386]`.

public struct ModelLoadError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file at fault, as the path it was opened with.
    public let file: String
    /// The JSON key path (`rope_parameters.rope_type`) or tensor name at fault, if the fault has one.
    public let key: String?
    /// The whole sentence after the file name; it names `key` itself (`tensor 'x': …`, `key 'y': …`).
    public let message: String

    public init(file: String, key: String?, message: String) {
        self.file = file
        self.key = key
        self.message = message
    }

    public var description: String { "\(file): \(message)" }

    /// A fault of the file as a whole (unreadable, truncated, not JSON).
    static func file(_ file: String, _ message: String) -> ModelLoadError {
        ModelLoadError(file: file, key: nil, message: message)
    }

    /// A fault of one JSON key, named by its dotted path.
    static func key(_ file: String, _ key: String, _ message: String) -> ModelLoadError {
        ModelLoadError(file: file, key: key, message: "key '\(key)': \(message)")
    }

    /// A fault of one tensor, named as in the checkpoint.
    static func tensor(_ file: String, _ name: String, _ message: String) -> ModelLoadError {
        ModelLoadError(file: file, key: name, message: "tensor '\(name)': \(message)")
    }
}
