/// A per-message compression extension as the connection sees it (RFC 7692 is the one we
/// have; the protocol keeps zlib out of the pure core).
public protocol MessageCompressor: AnyObject {
    /// Compresses one whole message; the result is the payload of a frame with RSV1 set.
    func compress(_ message: [UInt8]) throws(CompressionFailure) -> [UInt8]
    /// Decompresses one fragment of a compressed message; `isFinal` on the last one. Output
    /// beyond `limit` bytes in total for the message throws `.tooBig`.
    func decompress(_ fragment: [UInt8], isFinal: Bool, limit: Int) throws(CompressionFailure) -> [UInt8]
}

public enum CompressionFailure: Error, Equatable, Sendable {
    /// The decompressed message passed the size limit (a zip bomb): close 1009.
    case tooBig
    /// The compressed data was invalid: close 1007.
    case invalidData(String)
    case internalError(String)
}
