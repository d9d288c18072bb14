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

    /// Puts each saved path back as it was (a file that did not exist is removed again).
    func restore() {
        let files = FileManager.default
        for (path, state) in saved {
            let full = repository + "/" + path
            switch state {
            case .absent:
                var info = stat()
                if lstat(full, &info) == 0, (info.st_mode & S_IFMT) != S_IFDIR { unlink(full) }
            case .link(let target):
                unlink(full)
                try? files.createSymbolicLink(atPath: full, withDestinationPath: target)
            case .file(let data, let mode):
                var info = stat()
                if lstat(full, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG,
                    let current = files.contents(atPath: full), current == data, info.st_mode & 0o7777 == mode
                {
                    continue
                }
                try? files.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                unlink(full)
                _ = files.createFile(atPath: full, contents: data, attributes: [.posixPermissions: Int(mode)])
            }
        }
    }
}
