#if canImport(Glibc)
import Glibc
#endif

/// The API token: `AGENTGATE_TOKEN` from the environment, a `--token-file`, or a random one
/// created on first start in `<data>/token` with mode 0600, so local scripts and the CLI
/// can find it and other users cannot.
///
/// A token is only as secret as its file: one that other users can read (or replace, through
/// a symlink or a file they own) is refused with the command that fixes it, never used. A
/// supplied token must have at least `minimumLength` characters, so it cannot be guessed.
public enum TokenFile {
    public struct Error: Swift.Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    /// 32 characters: 128 bits or more for hex and random text; a generated token has 64.
    public static let minimumLength = 32

    public static func path(dataDirectory: String) -> String { dataDirectory + "/token" }

    /// Resolves the token: environment first, then an explicit file, then the data dir's
    /// file (created when missing).
    public static func resolve(environment: [String: String], tokenFile: String?, dataDirectory: String) throws(Error) -> String {
        if let token = try fromEnvironment(environment) { return token }
        if let tokenFile {
            guard let token = try read(tokenFile) else { throw Error(description: "cannot read a token from \(tokenFile): no such file") }
            return token
        }
        let file = path(dataDirectory: dataDirectory)
        if let token = try read(file) { return token }
        let token = generate()
        try write(token, to: file)
        return token
    }

    /// `AGENTGATE_TOKEN` when set (nil when unset or blank); refused when too short.
    public static func fromEnvironment(_ environment: [String: String]) throws(Error) -> String? {
        guard let token = environment["AGENTGATE_TOKEN"]?.trimmingCharacters(), !token.isEmpty else { return nil }
        try checkLength(token, source: "AGENTGATE_TOKEN")
        return token
    }

    /// The token in the data dir's file, if the server has made one (nil when missing).
    /// Throws when the file is unsafe or holds no usable token.
    public static func existing(dataDirectory: String) throws(Error) -> String? {
        try existing(file: path(dataDirectory: dataDirectory))
    }

    /// The token in `file` (nil when missing); throws when the file is unsafe or unusable.
    public static func existing(file: String) throws(Error) -> String? {
        try read(file)
    }

    /// Replaces the data dir's token with a new random one: written to a temporary 0600
    /// file, then renamed over the old one, so no reader ever sees half a token.
    public static func rotate(dataDirectory: String) throws(Error) {
        try rotate(file: path(dataDirectory: dataDirectory))
    }

    /// Replaces the token in `file` (a server's `--token-file`) the same way.
    public static func rotate(file: String) throws(Error) {
        let temporary = file + ".new"
        unlink(temporary)
        try write(generate(), to: temporary)
        guard rename(temporary, file) == 0 else { throw Error(description: "cannot replace \(file): \(String(cString: strerror(errno)))") }
    }

    /// 32 random bytes as 64 lowercase hex digits.
    public static func generate() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<4).map { _ in
            let hex = String(generator.next() as UInt64, radix: 16)
            return String(repeating: "0", count: 16 - hex.count) + hex
        }.joined()
    }

    /// The token in `path`, nil when there is no such file. The file must be a regular file
    /// (not a symlink: opened with O_NOFOLLOW), owned by this user, with no group or other
    /// permission bits; its token must be long enough.
    static func read(_ path: String) throws(Error) -> String? {
        var link = stat()
        if lstat(path, &link) != 0 {
            if errno == ENOENT { return nil }
            throw Error(description: "cannot read the token file \(path): \(String(cString: strerror(errno)))")
        }
        if link.st_mode & S_IFMT == S_IFLNK {
            throw Error(description: "token file \(path) is a symbolic link; refusing it (replace it with a regular file of mode 0600)")
        }
        // O_NONBLOCK: a FIFO planted in its place cannot hang us before fstat says what it is.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        guard fd >= 0 else {
            if errno == ELOOP { throw Error(description: "token file \(path) is a symbolic link; refusing it") }
            throw Error(description: "cannot read the token file \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw Error(description: "cannot read the token file \(path): \(String(cString: strerror(errno)))") }
        if let problem = Self.problem(with: info, path: path) { throw Error(description: problem) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = Glibc.read(fd, &buffer, buffer.count)
        guard count >= 0 else { throw Error(description: "cannot read the token file \(path): \(String(cString: strerror(errno)))") }
        let token = String(decoding: buffer[0..<count], as: UTF8.self).trimmingCharacters()
        guard !token.isEmpty else { throw Error(description: "token file \(path) is empty (delete it to get a new token, or write one of at least \(minimumLength) characters)") }
        try checkLength(token, source: "the token in \(path)")
        return token
    }

    /// Why a token file's metadata makes it unsafe to trust, with the fix; nil when it is safe.
    static func problem(with info: stat, path: String) -> String? {
        if info.st_mode & S_IFMT != S_IFREG {
            return "token file \(path) is not a regular file; refusing it"
        }
        let user = geteuid()
        if info.st_uid != user {
            return "token file \(path) is owned by uid \(info.st_uid), not by you (uid \(user)); refusing it (use a token file of your own, mode 0600)"
        }
        let mode = info.st_mode & 0o7777
        if mode & 0o077 != 0 {
            return "token file \(path) has mode 0\(String(mode, radix: 8)), so other users can read or change it; refusing it (fix: chmod 600 \(path))"
        }
        return nil
    }

    static func checkLength(_ token: String, source: String) throws(Error) {
        guard token.count >= minimumLength else {
            throw Error(description: "\(source) has \(token.count) characters; a token needs at least \(minimumLength) (make one with: openssl rand -hex 32)")
        }
    }

    /// Writes with O_EXCL into a 0600 file: never readable by others, even for a moment.
    static func write(_ token: String, to path: String) throws(Error) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw Error(description: "cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array((token + "\n").utf8)
        guard Glibc.write(fd, bytes, bytes.count) == bytes.count else { throw Error(description: "cannot write \(path)") }
    }
}

extension String {
    func trimmingCharacters() -> String {
        var slice = Substring(self)
        while let first = slice.first, first.isWhitespace { slice.removeFirst() }
        while let last = slice.last, last.isWhitespace { slice.removeLast() }
        return String(slice)
    }
}
