// The server layer: HTTP/1.1 on sockets, the OpenAI-compatible API, the engine scheduler, metrics, config.
// It depends only on SpeculativeDecoding and InferenceCore.
