// Size limits applied while parsing a request, each answered with its own status before more is read.

public struct HTTPLimits: Sendable, Equatable {
    /// Longest request line (method, target and version, without CRLF) → 414.
    public var maxRequestLineBytes: Int
    /// Largest header field section after the request line (line endings included) → 431.
    public var maxHeaderBytes: Int
    /// Most header fields → 431.
    public var maxHeaderCount: Int
    /// Largest body, from Content-Length before any of it is read, or as chunks decode → 413.
    public var maxBodyBytes: Int
    /// Longest chunk-size line of a chunked body (size and extensions) → 400.
    public var maxChunkLineBytes: Int
    /// Largest trailer section of a chunked body → 431.
    public var maxTrailerBytes: Int

    public init(maxRequestLineBytes: Int = 8 * 1024, maxHeaderBytes: Int = 16 * 1024, maxHeaderCount: Int = 100,
                maxBodyBytes: Int = 16 * 1024 * 1024, maxChunkLineBytes: Int = 1024, maxTrailerBytes: Int = 8 * 1024) {
        self.maxRequestLineBytes = maxRequestLineBytes
        self.maxHeaderBytes = maxHeaderBytes
        self.maxHeaderCount = maxHeaderCount
        self.maxBodyBytes = maxBodyBytes
        self.maxChunkLineBytes = maxChunkLineBytes
        self.maxTrailerBytes = maxTrailerBytes
    }
}
