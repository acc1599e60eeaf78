// The speculative decoding layer: drafters, tree topology, verifier, the decode loop and its stats.
// It depends only on InferenceCore.
