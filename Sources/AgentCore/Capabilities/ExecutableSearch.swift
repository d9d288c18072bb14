#if canImport(Glibc)
import Glibc
#endif

/// Finds programs the way `which` does: each PATH entry in order, first regular file with
/// the executable bit wins. An empty entry means the current directory, as in POSIX sh.
public enum ExecutableSearch {
    public static func find(_ name: String, path: String?) -> String? {
        if name.contains("/") { return isExecutableFile(name) ? name : nil }
        for entry in (path ?? "").split(separator: ":", omittingEmptySubsequences: false) {
            let directory = entry.isEmpty ? "." : String(entry)
            let candidate = directory.hasSuffix("/") ? directory + name : directory + "/" + name
            if isExecutableFile(candidate) { return candidate }
        }
        return nil
    }

    public static func isExecutableFile(_ path: String) -> Bool {
        var info = stat()
        guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return false }
        return access(path, X_OK) == 0
    }

    public static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR
    }
}
