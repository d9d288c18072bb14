import Foundation
import Glibc
import TestSupport
import Testing

@testable import Gateway

/// A token file others can read or replace is refused, never used; so is a short token.
struct TokenFileSafetyTests {
    static let goodToken = String(repeating: "a1", count: 20)

    /// A token file with `mode` (set with chmod, so the umask does not interfere).
    static func tokenFile(in dir: TemporaryDirectory, _ name: String = "token", mode: mode_t, token: String = goodToken) -> String {
        dir.write(name, token + "\n")
        chmod(dir.file(name), mode)
        return dir.file(name)
    }

    static func refusal(_ body: () throws(TokenFile.Error) -> Void) -> String? {
        do {
            try body()
            return nil
        } catch {
            return error.description
        }
    }

    @Test(arguments: [0o644, 0o640, 0o604, 0o660, 0o606, 0o700 | 0o004])
    func aFileOthersCanReadOrWriteIsRefusedWithTheFix(_ mode: Int) throws {
        let dir = TemporaryDirectory()
        let file = Self.tokenFile(in: dir, mode: mode_t(mode))
        let message = Self.refusal { () throws(TokenFile.Error) in _ = try TokenFile.resolve(environment: [:], tokenFile: file, dataDirectory: dir.path) }
        #expect(message?.contains("chmod 600 \(file)") == true, "\(message ?? "accepted")")
        #expect(message?.contains(String(mode, radix: 8)) == true)
        // The data dir's own file too: refused, not silently replaced or used.
        let dataDirMessage = Self.refusal { () throws(TokenFile.Error) in _ = try TokenFile.resolve(environment: [:], tokenFile: nil, dataDirectory: dir.path) }
        #expect(dataDirMessage?.contains("chmod 600") == true)
        #expect(dir.read("token") == Self.goodToken + "\n")
        #expect(throws: TokenFile.Error.self) { try TokenFile.existing(dataDirectory: dir.path) }
    }

    @Test(arguments: [0o600, 0o400])
    func aPrivateFileIsUsed(_ mode: Int) throws {
        let dir = TemporaryDirectory()
        let file = Self.tokenFile(in: dir, mode: mode_t(mode))
        #expect(try TokenFile.resolve(environment: [:], tokenFile: file, dataDirectory: dir.path) == Self.goodToken)
        #expect(try TokenFile.existing(dataDirectory: dir.path) == Self.goodToken)
    }

    @Test func aSymlinkIsRefusedEvenToAPrivateFile() throws {
        let dir = TemporaryDirectory()
        let target = Self.tokenFile(in: dir, "real", mode: 0o600)
        #expect(symlink(target, dir.file("token")) == 0)
        let message = Self.refusal { () throws(TokenFile.Error) in _ = try TokenFile.resolve(environment: [:], tokenFile: dir.file("token"), dataDirectory: dir.path) }
        #expect(message?.contains("\(dir.file("token")) is a symbolic link") == true, "\(message ?? "accepted")")
        #expect(throws: TokenFile.Error.self) { try TokenFile.existing(dataDirectory: dir.path) }
        // A dangling link is not "missing": no new token is written through it.
        unlink(target)
        #expect(throws: TokenFile.Error.self) { try TokenFile.resolve(environment: [:], tokenFile: nil, dataDirectory: dir.path) }
        #expect(access(target, F_OK) != 0)
    }

    @Test func aFIFOInItsPlaceIsRefusedWithoutBlocking() throws {
        let dir = TemporaryDirectory()
        #expect(mkfifo(dir.file("token"), 0o600) == 0)
        let message = Self.refusal { () throws(TokenFile.Error) in _ = try TokenFile.existing(dataDirectory: dir.path) }
        #expect(message?.contains("not a regular file") == true, "\(message ?? "accepted")")
    }

    @Test(.enabled(if: geteuid() == 0, "needs root to give a file to another user"))
    func aFileOwnedBySomeoneElseIsRefused() throws {
        let dir = TemporaryDirectory()
        let file = Self.tokenFile(in: dir, mode: 0o600)
        #expect(chown(file, 65534, 65534) == 0)
        let message = Self.refusal { () throws(TokenFile.Error) in _ = try TokenFile.resolve(environment: [:], tokenFile: file, dataDirectory: dir.path) }
        #expect(message?.contains("owned by uid 65534") == true, "\(message ?? "accepted")")
    }

    @Test func aShortTokenIsRefusedFromTheEnvironmentAndFromAFile() throws {
        let dir = TemporaryDirectory()
        let short = String(repeating: "x", count: 31)
        let message = Self.refusal { () throws(TokenFile.Error) in _ = try TokenFile.resolve(environment: ["AGENTGATE_TOKEN": short], tokenFile: nil, dataDirectory: dir.path) }
        #expect(message?.contains("AGENTGATE_TOKEN has 31 characters") == true, "\(message ?? "accepted")")
        #expect(message?.contains("at least 32") == true)
        let exact = String(repeating: "x", count: 32)
        #expect(try TokenFile.resolve(environment: ["AGENTGATE_TOKEN": exact], tokenFile: nil, dataDirectory: dir.path) == exact)
        let file = Self.tokenFile(in: dir, "short", mode: 0o600, token: short)
        #expect(throws: TokenFile.Error.self) { try TokenFile.resolve(environment: [:], tokenFile: file, dataDirectory: dir.path) }
        _ = Self.tokenFile(in: dir, "token", mode: 0o600, token: "")
        #expect(throws: TokenFile.Error.self) { try TokenFile.existing(dataDirectory: dir.path) }
    }

    @Test func aRotatedTokenIsPrivateAndAccepted() throws {
        let dir = TemporaryDirectory()
        try TokenFile.rotate(dataDirectory: dir.path)
        let token = try #require(try TokenFile.existing(dataDirectory: dir.path))
        #expect(token.count == 64)
        var info = stat()
        #expect(lstat(TokenFile.path(dataDirectory: dir.path), &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
    }
}
