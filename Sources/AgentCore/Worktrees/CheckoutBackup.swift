#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The files an apply is about to write in the source checkout, as they are before it:
/// each one's bytes and mode, or that it did not exist. If git fails part-way (a read-only
/// file, a full disk), `restore` puts every one back, so an apply changes all or nothing.
struct CheckoutBackup {
    private enum Saved {
        case file(Data, mode_t)
        case link(String)
        case absent
    }

    private let repository: String
    private var saved: [(path: String, state: Saved)] = []

    init(repository: String, paths: [String]) {
        self.repository = repository
        for path in paths {
            let full = repository + "/" + path
            var info = stat()
            if lstat(full, &info) != 0 {
                saved.append((path, .absent))
            } else if (info.st_mode & S_IFMT) == S_IFLNK, let target = try? FileManager.default.destinationOfSymbolicLink(atPath: full) {
                saved.append((path, .link(target)))
            } else if (info.st_mode & S_IFMT) == S_IFREG, let data = FileManager.default.contents(atPath: full) {
                saved.append((path, .file(data, info.st_mode & 0o7777)))
            }
            // A directory where a file will go: git refuses that before writing.
        }
    }

    /// Puts each saved path back as it was, never through a link: what did not exist before
    /// goes (deepest first, a link itself, never its target), then each saved file or link is
    /// written back below directories that are real (a link in their place is removed first).
    func restore() {
        let files = FileManager.default
        for (path, state) in saved.sorted(by: { $0.path.count > $1.path.count }) {
            guard case .absent = state else { continue }
            let full = repository + "/" + path
            var info = stat()
            guard lstat(full, &info) == 0 else { continue }
            if (info.st_mode & S_IFMT) == S_IFDIR { rmdir(full) } else { unlink(full) }
        }
        for (path, state) in saved {
            let full = repository + "/" + path
            switch state {
            case .absent:
                continue
            case .link(let target):
                guard makeRealParents(of: path) else { continue }
                unlink(full)
                try? files.createSymbolicLink(atPath: full, withDestinationPath: target)
            case .file(let data, let mode):
                guard makeRealParents(of: path) else { continue }
                var info = stat()
                if lstat(full, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG,
                    let current = files.contents(atPath: full), current == data, info.st_mode & 0o7777 == mode
                {
                    continue
                }
                if lstat(full, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR { continue }
                unlink(full)
                _ = files.createFile(atPath: full, contents: data, attributes: [.posixPermissions: Int(mode)])
            }
        }
    }

    /// Makes every directory above `path` (inside the checkout) a real one: a link or a file
    /// in a directory's place is removed and the directory made. False when that fails.
    private func makeRealParents(of path: String) -> Bool {
        var prefix = repository
        for component in path.split(separator: "/").dropLast() {
            prefix += "/" + component
            var info = stat()
            if lstat(prefix, &info) == 0 {
                if (info.st_mode & S_IFMT) == S_IFDIR { continue }
                unlink(prefix)
            }
            guard mkdir(prefix, 0o755) == 0 else { return false }
        }
        return true
    }
}
