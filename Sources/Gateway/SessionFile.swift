#if canImport(Glibc)
import Glibc
#endif
import AgentCore
import WebSocketCore

/// `<data dir>/sessions`: the dashboard sessions, so a restart or an upgrade of the server
/// does not sign every browser out. It holds only the SHA-1 of each credential, never a
/// credential, and the SHA-1 of the token they were made under: sessions saved under another
/// token (it was rotated while the server was down) are dropped when read. Mode 0600,
/// replaced whole by rename, never followed through a symlink.
public enum SessionFile {
    /// The sessions saved for `token`, or none (missing, unreadable, or another token's).
    public static func load(path: String, token: String) -> [String: SessionStore.Session] {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return [:] }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_size <= 4 << 20 else { return [:] }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var filled = 0
        while filled < bytes.count {
            let count = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, $0.count - filled) }
            guard count > 0 else { break }
            filled += count
        }
        guard let document = try? JSONParser.parse(Array(bytes[0..<filled])), document["token"]?.stringValue == digest(token),
            case .object(let members)? = document["sessions"]
        else { return [:] }
        var sessions: [String: SessionStore.Session] = [:]
        for member in members {
            guard let created = member.value["createdAt"]?.intValue, let used = member.value["lastUsedAt"]?.intValue,
                let expires = member.value["expiresAt"]?.intValue
            else { continue }
            sessions[member.key] = SessionStore.Session(createdAt: created, lastUsedAt: used, expiresAt: expires)
        }
        return sessions
    }

    /// Writes the sessions to a temporary 0600 file and renames it over the old one.
    public static func save(_ sessions: [String: SessionStore.Session], path: String, token: String) throws(TokenFile.Error) {
        let members = sessions.sorted { $0.key < $1.key }.map { key, session in
            JSONValue.Member(
                key,
                .object([
                    "createdAt": .int(session.createdAt), "lastUsedAt": .int(session.lastUsedAt), "expiresAt": .int(session.expiresAt),
                ]))
        }
        let bytes = JSONWriter.serialize(.object(["token": .string(digest(token)), "sessions": .object(members)])) + [0x0A]
        let temporary = path + ".new"
        unlink(temporary)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw TokenFile.Error(description: "cannot create \(temporary): \(String(cString: strerror(errno)))") }
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        guard written == bytes.count, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw TokenFile.Error(description: "cannot write \(path)")
        }
    }

    static func digest(_ token: String) -> String {
        SessionStore.key(token)
    }
}
