import WebSocketCore

/// Dashboard sessions: the page trades the master token once for a random credential of its
/// own, which it keeps in origin-scoped storage and sends as `Authorization: Bearer` (or the
/// WebSocket subprotocol). Nothing goes in a cookie: cookies ignore ports, so any other
/// server on 127.0.0.1 the browser visits would be sent one.
///
/// A credential dies when it is signed out, when it sits unused past the idle limit, when it
/// reaches its absolute age, or when the token rotates. Sessions outlive a server restart (the
/// server saves them with `SessionFile`; `needsSaving` says when). Pure: time (wall-clock
/// milliseconds) comes in as an argument.
/// Credentials are kept by their SHA-1, so looking one up takes no time that depends on how
/// much of a guess was right.
public struct SessionStore: Sendable {
    public struct Limits: Sendable, Equatable {
        /// A session unused this long is gone (12 h).
        public var idleMilliseconds = 12 * 3_600_000
        /// A session is gone this long after it was made, used or not (7 days).
        public var maxAgeMilliseconds = 7 * 86_400_000
        /// Live sessions at most; making one more forgets the least recently used.
        public var maxSessions = 1_000

        public init() {}
    }

    public struct Session: Sendable, Equatable {
        public var createdAt: Int
        public var lastUsedAt: Int
        public var expiresAt: Int
    }

    public var limits: Limits
    /// Sessions by the SHA-1 of their credential (hex): what is kept, in memory and on disk.
    public private(set) var sessions: [String: Session] = [:]
    /// Set when sessions were made or ended, or a last use moved by more than a minute since
    /// the last save; cleared by `saved()`.
    public private(set) var needsSaving = false
    /// A last use is saved at this resolution: often enough for idle expiry after a restart,
    /// rarely enough that every request does not write a file.
    static let lastUseResolutionMilliseconds = 60_000

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    public var count: Int { sessions.count }

    /// A new credential (256 random bits as 64 hex digits) and its session.
    public mutating func create(now: Int) -> (credential: String, session: Session) {
        expire(now: now)
        if sessions.count >= limits.maxSessions, let oldest = sessions.min(by: { $0.value.lastUsedAt < $1.value.lastUsedAt })?.key {
            sessions[oldest] = nil
        }
        let credential = TokenFile.generate()
        let session = Session(createdAt: now, lastUsedAt: now, expiresAt: now + limits.maxAgeMilliseconds)
        sessions[Self.key(credential)] = session
        needsSaving = true
        return (credential, session)
    }

    /// The key (SHA-1 hex) of the live session for `credential`, whose idle clock restarts;
    /// nil when there is none.
    public mutating func use(_ credential: String, now: Int) -> String? {
        guard credential.utf8.count == 64 else { return nil }
        let key = Self.key(credential)
        return touch(key, now: now) ? key : nil
    }

    /// Restarts the idle clock of the session kept under `key`; false when it is gone
    /// (ended now if past a limit).
    @discardableResult
    public mutating func touch(_ key: String, now: Int) -> Bool {
        guard var session = sessions[key] else { return false }
        guard now < session.expiresAt, now - session.lastUsedAt < limits.idleMilliseconds else {
            sessions[key] = nil
            needsSaving = true
            return false
        }
        if now - session.lastUsedAt > Self.lastUseResolutionMilliseconds { needsSaving = true }
        session.lastUsedAt = now
        sessions[key] = session
        return true
    }

    /// Signs one session out by its key; true if it was live.
    @discardableResult
    public mutating func revoke(key: String) -> Bool {
        let revoked = sessions.removeValue(forKey: key) != nil
        needsSaving = needsSaving || revoked
        return revoked
    }

    /// Signs every session out (the token rotated, or the operator asked); returns how many.
    @discardableResult
    public mutating func revokeAll() -> Int {
        defer { sessions.removeAll() }
        needsSaving = true
        return sessions.count
    }

    /// Takes sessions read back from disk, keeping those still live.
    public mutating func restore(_ saved: [String: Session], now: Int) {
        sessions = saved
        expire(now: now)
        needsSaving = false
    }

    public mutating func saved() {
        needsSaving = false
    }

    /// Forgets sessions past their limits.
    public mutating func expire(now: Int) {
        let before = sessions.count
        sessions = sessions.filter { now < $0.value.expiresAt && now - $0.value.lastUsedAt < limits.idleMilliseconds }
        needsSaving = needsSaving || sessions.count != before
    }

    static func key(_ credential: String) -> String {
        SHA1.hash(Array(credential.utf8)).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}
