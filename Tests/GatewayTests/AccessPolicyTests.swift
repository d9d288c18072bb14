import Foundation
import Glibc
import HTTPCore
import TestSupport
import Testing

@testable import Gateway

struct AccessPolicyTests {
    let policy = AccessPolicy(token: "0123abcd", extraHosts: ["agents.example"], extraOrigins: ["http://dash.example"])

    @Test(arguments: [
        ("127.0.0.1:7777", true), ("localhost", true), ("LOCALHOST:7777", true), ("[::1]:7777", true), ("127.1.2.3", true),
        ("app.localhost:80", true), ("agents.example:7777", true),
        ("evil.example:7777", false), ("127.0.0.1.evil.example", false), ("10.0.0.1", false), ("", false),
        ("localhost:77x", false), ("[::1]x", false), ("256.0.0.1", false),
    ])
    func hostMustBeLoopbackOrConfigured(_ host: String, _ allowed: Bool) {
        #expect(policy.isAllowedHost(host) == allowed)
    }

    @Test func missingHostIsRefused() {
        #expect(!policy.isAllowedHost(nil))
    }

    @Test func originMustBeOurOwnOrConfigured() {
        #expect(policy.isAllowedOrigin(nil, host: "127.0.0.1:7777"))  // curl, scripts
        #expect(policy.isAllowedOrigin("http://127.0.0.1:7777", host: "127.0.0.1:7777"))
        #expect(policy.isAllowedOrigin("http://dash.example", host: "127.0.0.1:7777"))
        #expect(!policy.isAllowedOrigin("http://evil.example", host: "127.0.0.1:7777"))
        #expect(!policy.isAllowedOrigin("http://127.0.0.1:7778", host: "127.0.0.1:7777"))
        #expect(!policy.isAllowedOrigin("null", host: "127.0.0.1:7777"))
    }

    @Test func theTokenComesFromBearerOrSubprotocolNeverACookie() {
        #expect(policy.presentsToken(HTTPHeaders([("Authorization", "Bearer 0123abcd")])))
        #expect(policy.presentsToken(HTTPHeaders([("authorization", "bearer 0123abcd")])))
        #expect(!policy.presentsToken(HTTPHeaders([("Cookie", "a=b; agentgate_session=0123abcd")])))
        #expect(policy.presentsToken(HTTPHeaders([("Sec-WebSocket-Protocol", "agentgate.v1, agentgate.token.0123abcd")])))
        #expect(!policy.presentsToken(HTTPHeaders([("Authorization", "Bearer 0123abce")])))
        #expect(!policy.presentsToken(HTTPHeaders([("Authorization", "Basic 0123abcd")])))
        #expect(!policy.presentsToken(HTTPHeaders([("Authorization", "Bearer 0123abcd0")])))
        #expect(!policy.presentsToken(HTTPHeaders()))
        // A mixed-case operator token works as a subprotocol too (it was lowercased).
        let mixed = AccessPolicy(token: "MiXeD-Token_0123456789abcdefGHIJKL")
        #expect(mixed.presentsToken(HTTPHeaders([("Sec-WebSocket-Protocol", "agentgate.v1, agentgate.token.MiXeD-Token_0123456789abcdefGHIJKL")])))
        #expect(!mixed.presentsToken(HTTPHeaders([("Sec-WebSocket-Protocol", "agentgate.token.mixed-token_0123456789abcdefghijkl")])))
    }

    @Test func constantTimeEqualsIsEquality() {
        #expect(AccessPolicy.constantTimeEquals("abc", "abc"))
        #expect(!AccessPolicy.constantTimeEquals("abc", "abd"))
        #expect(!AccessPolicy.constantTimeEquals("abc", "ab"))
        #expect(!AccessPolicy.constantTimeEquals("", "a"))
        #expect(AccessPolicy.constantTimeEquals("", ""))
    }
}

struct TokenFileTests {
    @Test func aTokenIsCreatedOnceWithMode0600() throws {
        let dir = TemporaryDirectory()
        let token = try TokenFile.resolve(environment: [:], tokenFile: nil, dataDirectory: dir.path)
        #expect(token.count == 64 && token.allSatisfy(\.isHexDigit))
        var info = stat()
        #expect(stat(TokenFile.path(dataDirectory: dir.path), &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        #expect(try TokenFile.resolve(environment: [:], tokenFile: nil, dataDirectory: dir.path) == token)
    }

    @Test func theOperatorCanSupplyTheToken() throws {
        let dir = TemporaryDirectory()
        let fromEnvironment = "from-env-" + String(repeating: "e", count: 32)
        #expect(try TokenFile.resolve(environment: ["AGENTGATE_TOKEN": fromEnvironment + "\n"], tokenFile: nil, dataDirectory: dir.path) == fromEnvironment)
        let fromFile = "from-file-" + String(repeating: "f", count: 32)
        dir.write("mine", fromFile + "\n", mode: 0o600)
        #expect(try TokenFile.resolve(environment: [:], tokenFile: dir.file("mine"), dataDirectory: dir.path) == fromFile)
        #expect(throws: TokenFile.Error.self) { try TokenFile.resolve(environment: [:], tokenFile: dir.file("missing"), dataDirectory: dir.path) }
        #expect(!FileManager.default.fileExists(atPath: TokenFile.path(dataDirectory: dir.path)))
    }
}

/// Sessions and token rotation, on a fake clock.
struct SessionStoreTests {
    @Test func aSessionLivesUntilIdleOrAbsoluteExpiryOrRevocation() {
        var limits = SessionStore.Limits()
        limits.idleMilliseconds = 1_000
        limits.maxAgeMilliseconds = 5_000
        var store = SessionStore(limits: limits)
        let (credential, _) = store.create(now: 0)
        #expect(credential.count == 64)
        let uses = [900, 1_800, 2_900].map { store.use(credential, now: $0) != nil }
        // Each use restarts the idle clock; the third comes after 1.1 s idle.
        #expect(uses == [true, true, false])
        let (second, _) = store.create(now: 3_000)
        let busy = stride(from: 3_500, through: 8_000, by: 500).map { store.use(second, now: $0) != nil }
        #expect(busy == Array(repeating: true, count: 9) + [false])  // 5 s old, however busy
        let (third, _) = store.create(now: 9_000)
        let revoked = store.revoke(key: SessionStore.key(third))
        let afterRevoke = store.use(third, now: 9_001)
        let guessed = store.use(String(repeating: "0", count: 64), now: 9_001)
        #expect(revoked && afterRevoke == nil && guessed == nil)
    }

    /// What the gateway's credential check does each second for a session an open socket
    /// holds: touching keeps it past the idle limit, not past its age or a sign-out.
    @Test func aSessionHeldOpenIsTouchedUntilItsAgeOrRevocation() {
        var limits = SessionStore.Limits()
        limits.idleMilliseconds = 1_000
        limits.maxAgeMilliseconds = 10_000
        var store = SessionStore(limits: limits)
        let held = SessionStore.key(store.create(now: 0).credential)
        let idle = SessionStore.key(store.create(now: 0).credential)
        let touches = stride(from: 900, through: 10_800, by: 900).map { store.touch(held, now: $0) }
        #expect(touches == Array(repeating: true, count: 11) + [false])  // the 12th is at 10.8 s, past its age
        let idleLives = store.touch(idle, now: 10_800)
        let revoked = SessionStore.key(store.create(now: 20_000).credential)
        store.revoke(key: revoked)
        let revokedLives = store.touch(revoked, now: 20_001)
        #expect(!idleLives && !revokedLives && store.count == 0)
    }

    @Test func theOldestSessionIsForgottenAtTheCap() {
        var limits = SessionStore.Limits()
        limits.maxSessions = 2
        var store = SessionStore(limits: limits)
        let first = store.create(now: 0).credential
        let second = store.create(now: 1).credential
        _ = store.use(first, now: 2)
        _ = store.create(now: 3)
        let count = store.count
        let secondLives = store.use(second, now: 4) != nil
        let firstLives = store.use(first, now: 4) != nil
        #expect(count == 2 && !secondLives && firstLives)
    }

    @Test func sessionsOutliveARestartButNotARotatedToken() throws {
        let directory = TemporaryDirectory("agentgate-sessions")
        var store = SessionStore()
        let (credential, _) = store.create(now: 1_000)
        try SessionFile.save(store.sessions, path: directory.file("sessions"), token: "token-a")
        let text = directory.read("sessions") ?? ""
        #expect(!text.contains(credential))  // only hashes are kept
        var info = stat()
        #expect(stat(directory.file("sessions"), &info) == 0 && info.st_mode & 0o777 == 0o600)
        var restarted = SessionStore()
        restarted.restore(SessionFile.load(path: directory.file("sessions"), token: "token-a"), now: 2_000)
        let lives = restarted.use(credential, now: 2_001) != nil
        var rotated = SessionStore()
        rotated.restore(SessionFile.load(path: directory.file("sessions"), token: "token-b"), now: 2_000)
        let survivesRotation = rotated.use(credential, now: 2_001) != nil
        #expect(lives && !survivesRotation)
    }

    @Test func aRewrittenTokenFileIsNoticedAtMostOncePerInterval() throws {
        let directory = TemporaryDirectory("agentgate-token")
        try TokenFile.write("a" + String(repeating: "0", count: 63), to: directory.file("token"))
        var watcher = TokenWatcher(path: directory.file("token"))
        let unchanged = watcher.changedToken(now: 0)
        try TokenFile.rotate(dataDirectory: directory.path)
        let tooSoon = watcher.changedToken(now: 500)  // looked 500 ms ago
        let rotated = watcher.changedToken(now: 1_000)
        let settled = watcher.changedToken(now: 2_000)
        #expect(unchanged == nil && tooSoon == nil && settled == nil)
        let current = try TokenFile.existing(dataDirectory: directory.path)
        #expect(rotated != nil && rotated == current)
    }
}
