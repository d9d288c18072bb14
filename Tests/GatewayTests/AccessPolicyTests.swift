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

    @Test func theTokenComesFromBearerCookieOrSubprotocol() {
        #expect(policy.isAuthenticated(HTTPHeaders([("Authorization", "Bearer 0123abcd")])))
        #expect(policy.isAuthenticated(HTTPHeaders([("authorization", "bearer 0123abcd")])))
        #expect(policy.isAuthenticated(HTTPHeaders([("Cookie", "a=b; agentgate_session=0123abcd")])))
        #expect(policy.isAuthenticated(HTTPHeaders([("Sec-WebSocket-Protocol", "agentgate.v1, agentgate.token.0123abcd")])))
        #expect(!policy.isAuthenticated(HTTPHeaders([("Authorization", "Bearer 0123abce")])))
        #expect(!policy.isAuthenticated(HTTPHeaders([("Authorization", "Basic 0123abcd")])))
        #expect(!policy.isAuthenticated(HTTPHeaders([("Authorization", "Bearer 0123abcd0")])))
        #expect(!policy.isAuthenticated(HTTPHeaders()))
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
