#if canImport(Glibc)
import Glibc
#endif

/// The API token: `AGENTGATE_TOKEN` from the environment, a `--token-file`, or a random one
/// created on first start in `<data>/token` with mode 0600, so local scripts and the CLI
/// can find it and other users cannot.
public enum TokenFile {
    public struct Error: Swift.Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    public static func path(dataDirectory: String) -> String { dataDirectory + "/token" }

    /// Resolves the token: environment first, then an explicit file, then the data dir's
    /// file (created when missing).
    public static func resolve(environment: [String: String], tokenFile: String?, dataDirectory: String) throws(Error) -> String {
        if let token = environment["AGENTGATE_TOKEN"]?.trimmingCharacters(), !token.isEmpty { return token }
        if let tokenFile {
            guard let token = read(tokenFile), !token.isEmpty else { throw Error(description: "cannot read a token from \(tokenFile)") }
            return token
        }
        let file = path(dataDirectory: dataDirectory)
        if let token = read(file), !token.isEmpty { return token }
        let token = generate()
        try write(token, to: file)
        return token
    }

    /// The token in the data dir's file, if the server has made one (nil when missing or empty).
    public static func existing(dataDirectory: String) -> String? {
        guard let token = read(path(dataDirectory: dataDirectory)), !token.isEmpty else { return nil }
        return token
    }

    /// Replaces the data dir's token with a new random one: written to a temporary 0600
    /// file, then renamed over the old one, so no reader ever sees half a token.
    public static func rotate(dataDirectory: String) throws(Error) {
        let file = path(dataDirectory: dataDirectory)
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

    static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = Glibc.read(fd, &buffer, buffer.count)
        guard count > 0 else { return nil }
        return String(decoding: buffer[0..<count], as: UTF8.self).trimmingCharacters()
    }

    /// Writes with O_EXCL into a 0600 file: never readable by others, even for a moment.
    static func write(_ token: String, to path: String) throws(Error) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
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
