#if canImport(Glibc)
import Glibc
#endif

/// Reads the result file a provider's command line named (codex `-o FILE`): JSON when it
/// parses as JSON (codex with `--output-schema`), otherwise its text. Capped, so an agent
/// cannot make the server read a huge file into memory; and only a regular file, so it
/// cannot make the server block on a FIFO or read through a symlink.
public enum OutputFileIngest {
    /// 1 MiB, the same bound as a prompt or an output line.
    public static let defaultMaxBytes = 1 << 20

    public enum Outcome: Equatable, Sendable {
        case missing
        case value(JSONValue)
        case failed(String)
    }

    public static func ingest(path: String, maxBytes: Int = defaultMaxBytes) -> Outcome {
        let fd: Int32
        switch AgentWrittenFile.open(path) {
        case .opened(let opened): fd = opened
        case .missing: return .missing
        case .notRegular: return .failed("output file is not a regular file")
        case .failed(let code): return .failed("cannot open output file: \(String(cString: strerror(code)))")
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return .failed("cannot read output file: \(String(cString: strerror(errno)))")
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
            if bytes.count > maxBytes { return .failed("output file is larger than \(maxBytes) bytes") }
        }
        if let value = try? JSONParser.parse(bytes) { return .value(value) }
        return .value(.string(String(decoding: bytes, as: UTF8.self)))
    }
}
