#if canImport(Glibc)
import Glibc
#endif

/// Notices when the token file changes (`agentgate token --rotate`), so a running server
/// takes the new token and drops every session made with the old one without a restart.
/// Looks at the file at most once per interval: one `stat` when a request is checked.
public struct TokenWatcher: Sendable {
    public let path: String
    public var intervalMilliseconds = 1_000
    private var lastCheck: Int?
    private var signature: Signature?

    struct Signature: Equatable {
        var device: UInt64, inode: UInt64, size: Int64, modifiedSeconds: Int, modifiedNanoseconds: Int
    }

    public init(path: String) {
        self.path = path
        signature = Self.signature(path)
    }

    /// The file's token when it changed since the last look (nil otherwise, or when it
    /// cannot be read or is not safe: a missing or refused file keeps the token in use).
    public mutating func changedToken(now: Int) -> String? {
        if let lastCheck, now >= lastCheck, now - lastCheck < intervalMilliseconds { return nil }
        lastCheck = now
        let current = Self.signature(path)
        guard current != signature, current != nil else { return nil }
        // A file that is now unsafe (loose mode, symlink, too short) is not taken: the
        // token in use stays, and the next change is looked at again.
        guard let token = try? TokenFile.read(path) else { return nil }
        signature = current
        return token
    }

    static func signature(_ path: String) -> Signature? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return Signature(
            device: UInt64(info.st_dev), inode: UInt64(info.st_ino), size: Int64(info.st_size),
            modifiedSeconds: Int(info.st_mtim.tv_sec), modifiedNanoseconds: Int(info.st_mtim.tv_nsec))
    }
}
