#if canImport(Glibc)
import Glibc
#endif
import AgentCore
import EventLoop
import WebSocketCore

/// A finished job's events as the WebSocket frames a default viewer (`format=json`, no raw
/// agent events, no compression) is sent, ready in a file beside the event log, so replaying
/// them is `sendfile` from the page cache to the socket: no read into memory, no framing, no
/// copy, whoever joins and from whatever seq. A cache: built once the job is over (from its
/// event log, off the loop), checked against the log when opened, rebuilt or ignored when it
/// does not match, deleted with the job.
///
/// ```
///  events.frames      [hdr]{…seq 1…}[hdr]{…seq 3…}[hdr]{…seq 4…} …  (seq 2 a raw agent event)
///  events.frames.idx  "AGFRAME1" lastSeq framesSize eventsSize | E[0] E[1] … E[lastSeq]
///                     E[k]: where the first frame of a seq above k starts (E[lastSeq]: the end)
/// ```
///
/// The seqs after `a` up to `t` are bytes `E[a] ..< E[t]`: a slice from any cursor is two
/// binary searches in the index, and the slice ends on a frame boundary.
final class ReplayFrames: @unchecked Sendable {
    static let framesName = "events.frames"
    static let indexName = "events.frames.idx"
    private static let magic = Array("AGFRAME1".utf8)
    private static let headerBytes = 32

    let file: SharedFile
    let lastSeq: Int
    /// The index, read with pread (a mapping would turn a file cut short by someone else into
    /// SIGBUS; a short read is only a wrong answer, caught by the bounds below).
    private let index: SharedFile

    private init(file: SharedFile, lastSeq: Int, index: SharedFile) {
        self.file = file
        self.lastSeq = lastSeq
        self.index = index
    }

    /// How replays use ready frames (the server's limits).
    struct Limits: Sendable {
        /// Bytes per replay step sent from the frames.
        var sliceBytes: Int
        /// Logs smaller than this get none.
        var minimumLogBytes: Int
    }

    /// Whether a viewer of `framing` reads exactly these frames.
    static func serves(_ framing: EventWire.Framing) -> Bool {
        framing.format == .json && !framing.sharedDeflate && !framing.perConnection && !framing.rawEvents
    }

    /// E[k], or -1 when the index cannot be read.
    private func entry(_ k: Int) -> Int {
        entries(k...k).first ?? -1
    }

    /// E[k] for k in `range` (empty when the index cannot be read).
    private func entries(_ range: ClosedRange<Int>) -> [Int] {
        var words = [UInt64](repeating: 0, count: range.count)
        let want = 8 * range.count
        let got = words.withUnsafeMutableBytes { pread(index.fd, $0.baseAddress, want, off_t(Self.headerBytes + 8 * range.lowerBound)) }
        guard got == want else { return [] }
        return words.map { Int(UInt64(littleEndian: $0)) }
    }

    /// A run of frames to send.
    struct Slice: Equatable {
        /// The seqs it covers (raw agent events among them have no frame).
        var seqs: ClosedRange<Int>
        var bytes: Range<Int>
        var frames: Int
    }

    /// The frames of the seqs after `after`, about `maxBytes` of them (at least one frame),
    /// ending on a frame boundary; nil when nothing follows `after`, or the index turns out
    /// damaged (the caller reads the log instead).
    func slice(after: Int, maxBytes: Int) -> Slice? {
        guard after >= 0, after < lastSeq else { return nil }
        let start = entry(after)
        guard start >= 0 else { return nil }
        // The largest t with E[t] - start ≤ maxBytes, but at least the first t that holds a
        // frame (a frame bigger than maxBytes goes whole).
        let fitting = lastIndex(in: (after + 1)...lastSeq) { entry($0) - start <= maxBytes } ?? after + 1
        let firstFrame = (lastIndex(in: (after + 1)...lastSeq) { entry($0) == start } ?? after) + 1
        let through = max(fitting, min(firstFrame, lastSeq))
        let run = entries(after...through)
        guard run.count == through - after + 1 else { return nil }
        var frames = 0
        for k in 1..<run.count {
            guard run[k] >= run[k - 1] else { return nil }  // an index no build wrote
            if run[k] > run[k - 1] { frames += 1 }
        }
        return Slice(seqs: (after + 1)...through, bytes: start..<run[run.count - 1], frames: frames)
    }

    /// The last k in `range` for which `holds` (true up to some k, false after it).
    private func lastIndex(in range: ClosedRange<Int>, _ holds: (Int) -> Bool) -> Int? {
        var low = range.lowerBound, high = range.upperBound
        var found: Int?
        while low <= high {
            let middle = low + (high - low) / 2
            if holds(middle) {
                found = middle
                low = middle + 1
            } else {
                high = middle - 1
            }
        }
        return found
    }

    // MARK: opening

    /// The frames of the job whose log is `eventsPath`, if they were built from the log as it
    /// is now (its size) for `lastSeq`; nil otherwise.
    static func open(directory: String, eventsPath: String, lastSeq: Int) -> ReplayFrames? {
        var events = stat()
        guard stat(eventsPath, &events) == 0, let (index, indexSize) = openRegular(directory + "/" + indexName),
            indexSize == headerBytes + 8 * (lastSeq + 1), let (file, framesSize) = openRegular(directory + "/" + framesName)
        else { return nil }
        var header = [UInt8](repeating: 0, count: headerBytes)
        guard header.withUnsafeMutableBytes({ pread(index.fd, $0.baseAddress, headerBytes, 0) }) == headerBytes else { return nil }
        let word = { (at: Int) in header[at..<(at + 8)].reversed().reduce(0) { $0 << 8 | Int($1) } }
        let opened = ReplayFrames(file: file, lastSeq: lastSeq, index: index)
        guard Array(header[0..<8]) == magic, word(8) == lastSeq, word(16) == framesSize, word(24) == Int(events.st_size),
            opened.entry(0) == 0, opened.entry(lastSeq) == framesSize
        else { return nil }
        return opened
    }

    /// A regular file opened for reading, and its size; nil for anything else (a FIFO or a
    /// device put in its place would block or never end: a job's directory is writable by
    /// its agent).
    private static func openRegular(_ path: String) -> (SharedFile, Int)? {
        guard case .opened(let fd) = AgentWrittenFile.open(path) else { return nil }
        let file = SharedFile(fd: fd)
        var info = stat()
        guard fstat(fd, &info) == 0 else { return nil }
        return (file, Int(info.st_size))
    }

    // MARK: building

    enum BuildOutcome: Equatable {
        case built
        /// Not worth it (a small log) or not possible (the disk is nearly full).
        case skipped
        /// The log is not a finished job's whole log (a gap, a torn or missing line, no
        /// `job:completed` at `lastSeq`), or a write failed.
        case failed(String)
    }

    /// Writes the frames and their index for the finished job whose log is `eventsPath`
    /// (every seq 1…`lastSeq`, the last one its `job:completed`), when the log has at least
    /// `minimumBytes`. Temporary files renamed into place, the index last; a failure leaves
    /// none behind.
    static func build(directory: String, eventsPath: String, lastSeq: Int, minimumBytes: Int, sliceBytes: Int = 4 << 20) -> BuildOutcome {
        var events = stat()
        guard stat(eventsPath, &events) == 0 else { return .failed("no event log") }
        let eventsSize = Int(events.st_size)
        guard eventsSize >= minimumBytes, hasRoom(directory: directory, for: eventsSize) else { return .skipped }
        let framesPath = directory + "/" + framesName
        let indexPath = directory + "/" + indexName
        let framesTemporary = framesPath + ".tmp"
        let indexTemporary = indexPath + ".tmp"
        func fail(_ why: String) -> BuildOutcome {
            unlink(framesTemporary)
            unlink(indexTemporary)
            return .failed(why)
        }
        let out = createFresh(framesTemporary)
        guard out >= 0 else { return .failed("cannot create \(framesTemporary): \(String(cString: strerror(errno)))") }
        var entries: [UInt64] = []
        entries.reserveCapacity(lastSeq + 1)
        var written = 0
        var after = 0
        var sawCompleted = false
        var frames: [UInt8] = []
        let reader = EventLogReader(path: eventsPath)
        while after < lastSeq {
            let slice = reader.slice(after: after, maxBytes: sliceBytes)
            guard slice.gap == nil, !slice.lines.isEmpty else {
                Glibc.close(out)
                return fail("events after \(after) are missing")
            }
            frames.removeAll(keepingCapacity: true)
            let before = after
            slice.bytes.withUnsafeBytes { all in
                for line in slice.lines where line.seq == after + 1 && line.seq <= lastSeq {
                    let bytes = UnsafeRawBufferPointer(rebasing: all[line.range])
                    entries.append(UInt64(written + frames.count))
                    let type = EventLineScanner.typeOf(bytes) ?? UnsafeRawBufferPointer(start: nil, count: 0)
                    if EventLineScanner.type(type, is: "job:completed") { sawCompleted = line.seq == lastSeq }
                    if !EventLineScanner.type(type, is: "job:event") { EventWire.appendTextFrame(bytes, to: &frames) }
                    after = line.seq
                }
            }
            guard after > before else {
                Glibc.close(out)
                return fail("the log holds no seq \(before + 1)")
            }
            if let why = write(frames, to: out) {
                Glibc.close(out)
                return fail("cannot write \(framesTemporary): \(why)")
            }
            written += frames.count
        }
        Glibc.close(out)
        guard sawCompleted else { return fail("the log does not end with the job's job:completed at seq \(lastSeq)") }
        entries.append(UInt64(written))
        var index = magic
        for word in [UInt64(lastSeq), UInt64(written), UInt64(eventsSize)] + entries {
            withUnsafeBytes(of: word.littleEndian) { index += $0 }
        }
        let indexFD = createFresh(indexTemporary)
        guard indexFD >= 0 else { return fail("cannot create \(indexTemporary): \(String(cString: strerror(errno)))") }
        let indexFailure = write(index, to: indexFD)
        Glibc.close(indexFD)
        if let indexFailure { return fail("cannot write \(indexTemporary): \(indexFailure)") }
        guard rename(framesTemporary, framesPath) == 0, rename(indexTemporary, indexPath) == 0 else {
            let why = String(cString: strerror(errno))
            unlink(framesPath)
            return fail("cannot write \(indexPath): \(why)")
        }
        return .built
    }

    /// Deletes a job's frames (its log changed, or they failed to open).
    static func remove(directory: String) {
        unlink(directory + "/" + indexName)
        unlink(directory + "/" + framesName)
    }

    /// A cache never takes the last of the disk: after it, a tenth of the file system (and
    /// at least 64 MiB) must still be free for the logs of running jobs.
    private static func hasRoom(directory: String, for bytes: Int) -> Bool {
        var info = statvfs()
        guard statvfs(directory, &info) == 0 else { return false }
        let unit = Int(info.f_frsize)
        let free = Int(info.f_bavail) * unit
        let total = Int(info.f_blocks) * unit
        return free - bytes >= max(64 << 20, total / 10)
    }

    /// A new regular file at `path`, whatever was there removed first: an agent can write
    /// to its job's directory, and a FIFO or a symlink left at this name must neither block
    /// the build nor send its bytes elsewhere.
    private static func createFresh(_ path: String) -> Int32 {
        unlink(path)
        return Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0o600)
    }

    /// Writes every byte; nil, or why not.
    private static func write(_ bytes: [UInt8], to fd: Int32) -> String? {
        bytes.withUnsafeBytes { buffer -> String? in
            do throws(SystemError) { try FileDescriptor.writeAll(fd, buffer) } catch { return error.message }
            return nil
        }
    }
}
