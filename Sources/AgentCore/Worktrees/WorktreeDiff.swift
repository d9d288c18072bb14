/// The change a job made, as git reports it between the worktree's base and its head: one
/// entry per file (status, lines added and removed, binary or not) and the unified diff,
/// which is kept up to a cap (stated, never silently cut).
public struct WorktreeDiff: Sendable, Equatable {
    public struct File: Sendable, Equatable {
        public enum Status: String, Sendable {
            case added, modified, deleted, renamed, copied, typeChanged = "type_changed", unmerged, unknown
        }

        public var path: String
        /// The path before a rename or copy.
        public var oldPath: String?
        public var status: Status
        /// Lines; nil for a binary file.
        public var additions: Int?
        public var deletions: Int?
        public var binary: Bool

        public var json: JSONValue {
            .object([
                .init("path", .string(path)), .init("oldPath", oldPath.map(JSONValue.string) ?? .null),
                .init("status", .string(status.rawValue)), .init("additions", additions.map(JSONValue.int) ?? .null),
                .init("deletions", deletions.map(JSONValue.int) ?? .null), .init("binary", .bool(binary)),
            ])
        }

        public init(path: String, oldPath: String? = nil, status: Status, additions: Int?, deletions: Int?, binary: Bool) {
            self.path = path
            self.oldPath = oldPath
            self.status = status
            self.additions = additions
            self.deletions = deletions
            self.binary = binary
        }

        public init?(json: JSONValue) {
            guard let path = json["path"]?.stringValue else { return nil }
            self.init(
                path: path, oldPath: json["oldPath"]?.stringValue,
                status: json["status"]?.stringValue.flatMap(Status.init(rawValue:)) ?? .unknown,
                additions: json["additions"]?.intValue, deletions: json["deletions"]?.intValue, binary: json["binary"]?.boolValue ?? false)
        }
    }

    /// At most this many files are listed (the counts cover all of them): in `diff.json`, and
    /// `resultFiles` (with at most `resultPathBytes` of paths) in the job's result.
    public static let maxListedFiles = 5_000
    public static let resultFiles = 200
    public static let resultPathBytes = 32 * 1024

    public var files: [File]
    /// Files changed in all (`files` may list fewer, see `maxListedFiles`).
    public var filesChanged: Int
    public var additions: Int
    public var deletions: Int
    /// Bytes of the unified diff as stored (at most `capBytes`).
    public var patchBytes: Int
    /// The unified diff was longer than `capBytes` and is cut there (at a line's end).
    public var truncated: Bool
    public var capBytes: Int

    public init(files: [File], patchBytes: Int, truncated: Bool, capBytes: Int) {
        self.filesChanged = files.count
        self.files = Array(files.prefix(Self.maxListedFiles))
        self.additions = files.reduce(0) { $0 + ($1.additions ?? 0) }
        self.deletions = files.reduce(0) { $0 + ($1.deletions ?? 0) }
        self.patchBytes = patchBytes
        self.truncated = truncated
        self.capBytes = capBytes
    }

    /// "3 files changed, +42 −7" ("no changes" when nothing changed).
    public var summary: String {
        if filesChanged == 0 { return "no changes" }
        return "\(filesChanged) file\(filesChanged == 1 ? "" : "s") changed, +\(additions) \u{2212}\(deletions)"
    }

    public var json: JSONValue {
        .object([
            .init("summary", .string(summary)), .init("filesChanged", .int(filesChanged)), .init("additions", .int(additions)),
            .init("deletions", .int(deletions)), .init("files", .array(files.map(\.json))),
            .init("filesListed", .int(files.count)), .init("patchBytes", .int(patchBytes)),
            .init("truncated", .bool(truncated)), .init("capBytes", .int(capBytes)),
        ])
    }

    /// `json` with the first files only (`resultFiles`, `resultPathBytes`): what the job's
    /// result keeps; `filesListed` says how many.
    public var resultJSON: JSONValue {
        var kept = self
        var bytes = 0
        kept.files = Array(files.prefix(Self.resultFiles).prefix { file in
            bytes += file.path.utf8.count + (file.oldPath?.utf8.count ?? 0)
            return bytes <= Self.resultPathBytes
        })
        return kept.json
    }

    public init?(json: JSONValue) {
        guard let files = json["files"]?.arrayValue else { return nil }
        self.files = files.compactMap(File.init(json:))
        filesChanged = json["filesChanged"]?.intValue ?? self.files.count
        additions = json["additions"]?.intValue ?? 0
        deletions = json["deletions"]?.intValue ?? 0
        patchBytes = json["patchBytes"]?.intValue ?? 0
        truncated = json["truncated"]?.boolValue ?? false
        capBytes = json["capBytes"]?.intValue ?? 0
    }

    // MARK: parsing git's output

    /// The files of `git diff -z --name-status -M` joined with `git diff -z --numstat -M`.
    static func files(nameStatus: [UInt8], numstat: [UInt8]) -> [File] {
        var counts: [String: (Int?, Int?)] = [:]
        var fields = numstat.split(separator: 0, omittingEmptySubsequences: false).makeIterator()
        while let field = fields.next() {
            guard !field.isEmpty else { continue }
            // "added\tdeleted\tpath", or "added\tdeleted\t" then old and new paths for a rename.
            let parts = field.split(separator: 9, maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            let added = Int(String(decoding: parts[0], as: UTF8.self))
            let deleted = Int(String(decoding: parts[1], as: UTF8.self))
            var path = String(decoding: parts[2], as: UTF8.self)
            if parts[2].isEmpty {
                _ = fields.next()
                path = fields.next().map { String(decoding: $0, as: UTF8.self) } ?? ""
            }
            counts[path] = (added, deleted)
        }
        var files: [File] = []
        var entries = nameStatus.split(separator: 0, omittingEmptySubsequences: false).makeIterator()
        while let field = entries.next() {
            guard let letter = field.first else { continue }
            var oldPath: String?
            let status: File.Status
            switch letter {
            case UInt8(ascii: "A"): status = .added
            case UInt8(ascii: "M"): status = .modified
            case UInt8(ascii: "D"): status = .deleted
            case UInt8(ascii: "R"): status = .renamed
            case UInt8(ascii: "C"): status = .copied
            case UInt8(ascii: "T"): status = .typeChanged
            case UInt8(ascii: "U"): status = .unmerged
            default: status = .unknown
            }
            if status == .renamed || status == .copied {
                oldPath = entries.next().map { String(decoding: $0, as: UTF8.self) }
            }
            guard let pathBytes = entries.next() else { break }
            let path = String(decoding: pathBytes, as: UTF8.self)
            let count = counts[path]
            let binary = count != nil && count?.0 == nil && count?.1 == nil
            files.append(File(path: path, oldPath: oldPath, status: status, additions: count?.0, deletions: count?.1, binary: binary))
        }
        return files
    }

    /// `patch` cut to at most `cap` bytes at the end of a line; and whether it was cut.
    static func capped(_ patch: [UInt8], cap: Int) -> ([UInt8], Bool) {
        guard patch.count > cap else { return (patch, false) }
        let head = patch[..<cap]
        let end = head.lastIndex(of: 0x0A).map { $0 + 1 } ?? 0
        return (Array(patch[..<end]), true)
    }

    /// A unified diff split into one piece per file (at each `diff --git` line), in order.
    public static func perFile(_ patch: [UInt8]) -> [[UInt8]] {
        let marker = Array("diff --git ".utf8)
        var pieces: [[UInt8]] = []
        var start: Int?
        var lineStart = 0
        while lineStart < patch.count {
            let lineEnd = patch[lineStart...].firstIndex(of: 0x0A).map { $0 + 1 } ?? patch.count
            if patch[lineStart..<lineEnd].starts(with: marker) {
                if let start { pieces.append(Array(patch[start..<lineStart])) }
                start = lineStart
            }
            lineStart = lineEnd
        }
        if let start { pieces.append(Array(patch[start...])) }
        return pieces
    }
}
