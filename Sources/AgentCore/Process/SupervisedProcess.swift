#if canImport(Glibc)
import Glibc
#endif
import CSystemShims
import EventLoop

/// One child process in its own session (process group), served by the event loop with no
/// thread of its own.
///
/// ```
///   prompt bytes ──▶ stdin pipe (non-blocking, written as the child reads, then closed)
///   stdout pipe ──▶ onStdout        stderr pipe ──▶ onStderr
///   pidfd readable ──▶ leader exited: SIGKILL what is left of its group, reap it
///   leader reaped + both pipes at EOF ──▶ onExit (exactly once)
/// ```
///
/// When the leader exits, the rest of its group is killed: an agent's stray grandchildren
/// must not keep running unobserved, nor hold our pipes open. With a `JobContainer`, so is
/// everything that left the group (setsid): the container's cgroup or subreaper sweep.
/// The child inherits no descriptor but its three pipes.
public final class SupervisedProcess {
    public struct Spec: Sendable {
        /// Absolute path of the program.
        public var executable: String
        /// argv, including argv[0].
        public var arguments: [String]
        /// "KEY=value" entries: the child's whole environment.
        public var environment: [String]
        public var workingDirectory: String?
        /// Written to stdin, which is then closed (unless `keepsStdinOpen`).
        public var stdin: [UInt8]
        /// A conversation: stdin stays open after `stdin` for the messages `sendInput` adds,
        /// until `closeInput`.
        public var keepsStdinOpen: Bool
        /// When the job's timeout passes (milliseconds since the Unix epoch): a per-job
        /// supervisor stops the agent then even with no server attached. Nil: none.
        public var deadlineMilliseconds: Int?

        public init(
            executable: String, arguments: [String], environment: [String], workingDirectory: String? = nil, stdin: [UInt8] = [],
            deadlineMilliseconds: Int? = nil, keepsStdinOpen: Bool = false
        ) {
            self.deadlineMilliseconds = deadlineMilliseconds
            self.keepsStdinOpen = keepsStdinOpen
            self.executable = executable
            self.arguments = arguments
            self.environment = environment
            self.workingDirectory = workingDirectory
            self.stdin = stdin
        }
    }

    public let identity: ProcessIdentity
    public var pid: Int32 { identity.pid }

    public var onStdout: ((UnsafeRawBufferPointer) -> Void)?
    public var onStderr: ((UnsafeRawBufferPointer) -> Void)?
    /// Called once, after the leader was reaped and both output pipes closed.
    public var onExit: ((ExitStatus) -> Void)?
    /// Never called: a child of this server has nothing to say beyond its output.
    public var onNotice: ((String) -> Void)?

    private let loop: EventLoop
    private let container: JobContainer?
    private let stdoutSource: PipeByteSource
    private let stderrSource: PipeByteSource
    private var stdinFD: Int32
    private var stdinRegistration: EventLoop.Registration?
    private var stdinBytes: [UInt8]
    private var stdinOffset = 0
    /// Stdin stays open once written (a conversation) until `closeInput`.
    private var stdinStaysOpen: Bool
    private var pidFD: Int32 = -1
    private var pidRegistration: EventLoop.Registration?
    private var reapPollTimer: EventLoop.TimerID?
    private var killTimer: EventLoop.TimerID?
    private var drainTimer: EventLoop.TimerID?
    private var exitStatus: ExitStatus?
    private var stdoutOpen = true
    private var stderrOpen = true
    private var finished = false

    /// How long to wait for pipe EOF after the group was killed before closing them anyway
    /// (a process that escaped the group with setsid may still hold them).
    public static let drainTimeoutMilliseconds = 2_000

    /// Spawns the child (inside `container`'s cgroup when it has one). Throws the spawn's
    /// errno (ENOENT, EACCES, ENOTDIR for a bad cwd, E2BIG…).
    public init(loop: EventLoop, spec: Spec, container: JobContainer? = nil) throws(SystemError) {
        self.loop = loop
        self.container = container
        let stdinPipe = try FileDescriptor.pipe(nonBlockingRead: false, nonBlockingWrite: true)
        let stdoutPipe: (read: Int32, write: Int32)
        let stderrPipe: (read: Int32, write: Int32)
        do {
            stdoutPipe = try FileDescriptor.pipe()
        } catch {
            close(stdinPipe.read); close(stdinPipe.write)
            throw error
        }
        do {
            stderrPipe = try FileDescriptor.pipe()
        } catch {
            close(stdinPipe.read); close(stdinPipe.write); close(stdoutPipe.read); close(stdoutPipe.write)
            throw error
        }

        var rc: Int32 = 0
        let cgroupFD = container?.cgroupDirectoryFD ?? -1
        let pid = TrackedChildren.spawn { () -> pid_t in
            var pid: pid_t = 0
            rc = Self.withCStrings(spec.arguments) { argv in
                Self.withCStrings(spec.environment) { envp in
                    ag_spawn(
                        spec.executable, argv, envp, spec.workingDirectory, stdinPipe.read, stdoutPipe.write,
                        stderrPipe.write, cgroupFD, &pid)
                }
            }
            return rc == 0 ? pid : -1
        }
        container?.spawned()
        // The child has its own copies now (or failed to start).
        close(stdinPipe.read)
        close(stdoutPipe.write)
        close(stderrPipe.write)
        guard rc == 0 else {
            close(stdinPipe.write); close(stdoutPipe.read); close(stderrPipe.read)
            throw SystemError("spawn \(spec.executable)", errno: rc)
        }
        identity = ProcessIdentity.of(pid: pid)
        stdinFD = stdinPipe.write
        stdinBytes = spec.stdin
        stdinStaysOpen = spec.keepsStdinOpen
        stdoutSource = PipeByteSource(loop: loop, fd: stdoutPipe.read)
        stderrSource = PipeByteSource(loop: loop, fd: stderrPipe.read)
    }

    deinit {
        if !finished {
            // Never leave a process behind, even if the owner forgot us.
            kill(-identity.pid, SIGKILL)
            var status: Int32 = 0
            if exitStatus == nil {
                waitpid(identity.pid, &status, 0)
                TrackedChildren.forget(identity.pid)
            }
            container?.release(on: loop)
        }
        closeAll()
    }

    /// Registers everything with the loop. Call once, after setting the callbacks.
    public func start() throws(SystemError) {
        try stdoutSource.start(
            onBytes: { [unowned self] in self.onStdout?($0) },
            onEnd: { [unowned self] in self.stdoutOpen = false; self.finishIfDone() })
        try stderrSource.start(
            onBytes: { [unowned self] in self.onStderr?($0) },
            onEnd: { [unowned self] in self.stderrOpen = false; self.finishIfDone() })
        writeStdin()
        pidFD = ag_pidfd_open(identity.pid)
        if pidFD >= 0 {
            pidRegistration = try loop.register(fd: pidFD, interest: .readable) { [unowned self] _ in
                self.leaderExited()
            }
        } else {
            // Kernels before 5.3: poll for the exit instead.
            pollForExit()
        }
    }

    private func pollForExit() {
        reapPollTimer = loop.schedule(afterMilliseconds: 50) { [weak self] in
            guard let self, self.exitStatus == nil else { return }
            var status: Int32 = 0
            if waitpid(self.identity.pid, &status, WNOHANG) == self.identity.pid {
                TrackedChildren.forget(self.identity.pid)
                kill(-self.identity.pid, SIGKILL)
                self.container?.release(on: self.loop)
                self.recordExit(ExitStatus(waitStatus: status))
            } else {
                self.pollForExit()
            }
        }
    }

    /// Writes what is pending as the child reads it: watched for writability only while the
    /// pipe is full (an open, idle stdin is always writable and would wake every turn).
    private func writeStdin() {
        guard stdinFD >= 0 else { return }
        while stdinOffset < stdinBytes.count {
            let result = stdinBytes.withUnsafeBytes { bytes in
                FileDescriptor.writeSome(stdinFD, UnsafeRawBufferPointer(rebasing: bytes[stdinOffset...]))
            }
            switch result {
            case .success(0):  // pipe full: wait for writability
                if stdinRegistration == nil {
                    stdinRegistration = try? loop.register(fd: stdinFD, interest: .writable) { [unowned self] _ in self.writeStdin() }
                    if stdinRegistration == nil { closeStdin() }
                }
                return
            case .success(let written): stdinOffset += written
            case .failure: closeStdin(); return  // EPIPE: the child does not read stdin
            }
        }
        guard stdinStaysOpen else { return closeStdin() }
        if let stdinRegistration { loop.deregister(stdinRegistration) }
        stdinRegistration = nil
        stdinBytes.removeAll()
        stdinOffset = 0
    }

    public var acceptsInput: Bool { stdinFD >= 0 && stdinStaysOpen }

    /// Adds a message to a conversation's stdin; false once stdin is closed.
    public func sendInput(_ bytes: [UInt8]) -> Bool {
        guard stdinFD >= 0, stdinStaysOpen else { return false }
        stdinBytes += bytes
        writeStdin()
        return stdinFD >= 0  // EPIPE while writing: the agent closed its stdin
    }

    /// Closes a conversation's stdin once what was sent is written: the agent reads EOF.
    public func closeInput() {
        stdinStaysOpen = false
        writeStdin()
    }

    private func closeStdin() {
        if let stdinRegistration { loop.deregister(stdinRegistration) }
        stdinRegistration = nil
        if stdinFD >= 0 { close(stdinFD) }
        stdinFD = -1
        stdinBytes = []
    }

    private func leaderExited() {
        guard exitStatus == nil else { return }
        // The leader is a zombie until reaped, so its pid (and group id) cannot be reused yet:
        // this kill cannot hit an unrelated process.
        kill(-identity.pid, SIGKILL)
        var status: Int32 = 0
        var rc: pid_t
        repeat { rc = waitpid(identity.pid, &status, 0) } while rc < 0 && errno == EINTR
        TrackedChildren.forget(identity.pid)
        // Whatever left the group (setsid) dies too, and the cgroup is removed once empty.
        container?.release(on: loop)
        if let pidRegistration { loop.deregister(pidRegistration) }
        pidRegistration = nil
        if pidFD >= 0 { close(pidFD) }
        pidFD = -1
        recordExit(ExitStatus(waitStatus: status))
    }

    private func recordExit(_ status: ExitStatus) {
        exitStatus = status
        if let killTimer { loop.cancel(killTimer) }
        killTimer = nil
        closeStdin()
        if stdoutOpen || stderrOpen {
            drainTimer = loop.schedule(afterMilliseconds: Self.drainTimeoutMilliseconds) { [weak self] in
                guard let self else { return }
                self.stdoutSource.close()
                self.stderrSource.close()
                self.stdoutOpen = false
                self.stderrOpen = false
                self.finishIfDone()
            }
        }
        finishIfDone()
    }

    private func finishIfDone() {
        guard !finished, let exitStatus, !stdoutOpen, !stderrOpen else { return }
        finished = true
        closeAll()
        let callback = onExit
        onExit = nil
        onStdout = nil
        onStderr = nil
        callback?(exitStatus)
    }

    /// True once the leader exited (output may still be draining).
    public var hasExited: Bool { exitStatus != nil }

    /// SIGTERM to the whole group (and to the members of the job's cgroup that left it),
    /// then SIGKILL after `graceMilliseconds` if the leader lives.
    public func terminate(graceMilliseconds: Int) {
        guard exitStatus == nil else { return }
        kill(-identity.pid, SIGTERM)
        container?.signalEscaped(SIGTERM)
        guard killTimer == nil else { return }
        killTimer = loop.schedule(afterMilliseconds: graceMilliseconds) { [weak self] in
            guard let self, self.exitStatus == nil else { return }
            self.killTimer = nil
            kill(-self.identity.pid, SIGKILL)
        }
    }

    /// SIGKILL to the whole group, and to everything in the job's container, now.
    public func killNow() {
        guard exitStatus == nil else { return }
        kill(-identity.pid, SIGKILL)
        container?.killAll()
    }

    private func closeAll() {
        closeStdin()
        stdoutSource.close()
        stderrSource.close()
        if let pidRegistration { loop.deregister(pidRegistration) }
        pidRegistration = nil
        if pidFD >= 0 { close(pidFD) }
        pidFD = -1
        for timer in [killTimer, drainTimer, reapPollTimer].compactMap({ $0 }) { loop.cancel(timer) }
    }

    public static func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
        var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
        pointers.append(nil)
        defer { for pointer in pointers { free(pointer) } }
        return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}
