import Foundation

/// The dashboard's files (`web-client/`), served read-only: a request path maps to a file
/// under the root or to nothing. No directory listings, no dot-files, no `..`, no
/// symlinks out of the root.
public struct StaticFiles: Sendable {
    public let root: String
    /// Larger files are not served (the dashboard's files are small).
    public static let maxFileBytes = 8 << 20

    public init(root: String) {
        self.root = URL(fileURLWithPath: root).standardizedFileURL.resolvingSymlinksInPath().path
    }

    public struct File: Sendable {
        public var bytes: [UInt8]
        public var contentType: String
    }

    /// The file for a URL path (`/` is `index.html`), or nil.
    public func file(for urlPath: Substring) -> File? {
        guard let relative = Self.relativePath(urlPath) else { return nil }
        let url = URL(fileURLWithPath: root + "/" + relative).resolvingSymlinksInPath()
        // Symlinks must not lead out of the root.
        guard url.path.hasPrefix(root + "/") else { return nil }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), !isDirectory.boolValue,
            let attributes = try? FileManager.default.attributesOfItem(atPath: url.path),
            let size = attributes[.size] as? Int, size <= Self.maxFileBytes,
            let data = FileManager.default.contents(atPath: url.path)
        else { return nil }
        return File(bytes: Array(data), contentType: Self.contentType(for: relative))
    }

    /// `/a/b.js` → `a/b.js`; nil for anything that could escape or hide: `..`, dot-files,
    /// backslashes, NUL, bad percent-encoding.
    static func relativePath(_ urlPath: Substring) -> String? {
        guard urlPath.hasPrefix("/"), let decoded = String(urlPath).removingPercentEncoding else { return nil }
        if decoded == "/" { return "index.html" }
        let segments = decoded.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        for segment in segments {
            guard !segment.isEmpty, !segment.hasPrefix("."), !segment.contains("\\"), !segment.contains("\0") else { return nil }
        }
        return segments.joined(separator: "/")
    }

    static func contentType(for path: String) -> String {
        let ext = path.split(separator: ".").last.map { $0.lowercased() } ?? ""
        switch ext {
        case "html": return "text/html; charset=utf-8"
        case "js", "mjs": return "text/javascript; charset=utf-8"
        case "css": return "text/css; charset=utf-8"
        case "json", "map": return "application/json"
        case "svg": return "image/svg+xml"
        case "png": return "image/png"
        case "ico": return "image/x-icon"
        case "woff2": return "font/woff2"
        case "txt", "md": return "text/plain; charset=utf-8"
        default: return "application/octet-stream"
        }
    }

    /// Finds `web-client/` above the executable (a build in `.build/<triple>/debug/` of a
    /// checkout), in `share/agentgate/` beside the `bin/` the executable is installed in
    /// (README "Installing on PATH"), or else in the working directory.
    public static func locateDefaultRoot(executablePath: String) -> String? {
        var candidates: [String] = []
        var directory = URL(fileURLWithPath: executablePath).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<5 {
            candidates.append(directory.path)
            directory = directory.deletingLastPathComponent()
        }
        let installed = URL(fileURLWithPath: executablePath).resolvingSymlinksInPath().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("share/agentgate").path
        for candidate in candidates + [installed, FileManager.default.currentDirectoryPath] {
            let root = candidate + "/web-client"
            if FileManager.default.fileExists(atPath: root + "/index.html") { return root }
        }
        return nil
    }

    /// This process's executable (`/proc/self/exe`): `argv[0]` is only a name when the
    /// binary was found on PATH.
    public static func executablePath(argumentZero: String) -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return argumentZero }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
