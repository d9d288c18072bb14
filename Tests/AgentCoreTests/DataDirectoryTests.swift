import Glibc
import TestSupport
import Testing

@testable import AgentCore

/// The data dir holds the token, prompts and agent output: private, and ours.
struct DataDirectoryTests {
    static func mode(_ path: String) -> mode_t {
        var info = stat()
        return stat(path, &info) == 0 ? info.st_mode & 0o7777 : 0
    }

    @Test(arguments: [0o755, 0o750, 0o777, 0o1777])
    func anExistingDataDirIsMadePrivate(_ mode: Int) throws {
        let dir = TemporaryDirectory()
        chmod(dir.path, mode_t(mode))
        _ = try JobStore(dataDirectory: dir.path)
        #expect(Self.mode(dir.path) == 0o700)
    }

    @Test func aNewDataDirIsCreatedPrivate() throws {
        let dir = TemporaryDirectory()
        let data = dir.path + "/a/b/data"
        _ = try JobStore(dataDirectory: data)
        #expect(Self.mode(data) == 0o700)
        #expect(Self.mode(data + "/jobs") == 0o700)
        #expect(Self.mode(data + "/agentgate.sqlite") == 0o600)
    }

    @Test(.enabled(if: geteuid() == 0, "needs root to give a directory to another user"))
    func aDataDirOwnedBySomeoneElseIsRefusedAndLeftAlone() throws {
        let dir = TemporaryDirectory()
        chmod(dir.path, 0o755)
        #expect(chown(dir.path, 65534, 65534) == 0)
        do {
            _ = try JobStore(dataDirectory: dir.path)
            Issue.record("a data dir owned by uid 65534 was used")
        } catch {
            #expect(error.description.contains("owned by uid 65534"))
        }
        #expect(Self.mode(dir.path) == 0o755)
        #expect(access(dir.path + "/jobs", F_OK) != 0)
    }
}
