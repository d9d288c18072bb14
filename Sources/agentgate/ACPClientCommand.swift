import AgentCore
import ArgumentParser
import CSystemShims
import EventLoop
import Glibc

/// `agentgate acp-client -- /path/opencode acp`: the job's process for an ACP provider
/// (opencode-acp, goose-acp). It starts the agent, speaks the Agent Client Protocol to it
/// (`ACPClientSession`) and writes the whole exchange, both ways, one JSON-RPC message per
/// line, to its stdout: the job's output, which `ACPFormatter` makes readable. Its stdin
/// carries the user's messages (`{"type":"user","message":…}` lines, as Claude's stream-json
/// input: the prompt, then each follow-up), so the conversation outlives a restart of the
/// server with the job's supervisor holding that stdin. Meant to be started by the server,
/// so it is not listed in the help.
struct ACPClientCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "acp-client", abstract: "Run an ACP agent for one job (started by the server).", shouldDisplay: false)

    @Option(help: "The session's working directory (absolute; default: the current directory).")
    var cwd: String?

    @Option(help: "Continue this session of the agent (session/load) instead of starting one.")
    var resume: String?

    @Option(help: "How the agent's permission requests are answered: allow, deny, or ask (a permission line on stdin answers).")
    var permissions = ACPClientSession.PermissionPolicy.deny.rawValue

    @Option(name: .customLong("ask-timeout-ms"), help: "With ask: how long a question waits for its answer.")
    var askTimeoutMilliseconds = 120_000

    @Option(name: .customLong("ask-default"), help: "With ask: the answer once nobody answered in time (allow or deny).")
    var askDefault = ACPClientSession.PermissionPolicy.deny.rawValue

    @Argument(parsing: .postTerminator, help: "The agent's executable (a path) and its arguments.")
    var command: [String] = []

    func validate() throws {
        guard let executable = command.first, executable.hasPrefix("/") else {
            throw ValidationError("give the agent as an absolute path after --: agentgate acp-client -- /path/to/agent acp")
        }
        guard ACPClientSession.PermissionPolicy(rawValue: permissions) != nil else { throw ValidationError("--permissions must be allow, deny or ask") }
        guard askDefault == "allow" || askDefault == "deny" else { throw ValidationError("--ask-default must be allow or deny") }
        guard (1...86_400_000).contains(askTimeoutMilliseconds) else { throw ValidationError("--ask-timeout-ms must be 1…86400000") }
        if let cwd, !cwd.hasPrefix("/") { throw ValidationError("--cwd must be an absolute path") }
    }

    func run() throws {
        var directory = cwd
        if directory == nil, let current = getcwd(nil, 0) {
            directory = String(cString: current)
            free(current)
        }
        let session = ACPClientSession(
            workingDirectory: directory ?? "/", resumeSession: resume, policy: ACPClientSession.PermissionPolicy(rawValue: permissions) ?? .deny,
            askTimeoutMilliseconds: askTimeoutMilliseconds, askDefault: ACPClientSession.PermissionPolicy(rawValue: askDefault) ?? .deny)
        var bridge = ACPBridge(session: session, command: command)
        throw ExitCode(bridge.run())
    }
}

/// The I/O of `acp-client`: poll() over its stdin, the agent's stdout and a signalfd for
/// SIGTERM/SIGINT; writes to the agent buffered (a large prompt never blocks reading the
/// agent's output).
struct ACPBridge {
    var session: ACPClientSession
    let command: [String]
    private var agentPid: pid_t = 0
    private var toAgent: Int32 = -1
    private var fromAgent: Int32 = -1
    private var pendingToAgent: [UInt8] = []
    private var stdinOpen = true
    private var stdinLines = LineSplitter(maxLineBytes: 8 << 20)
    private var agentLines = LineSplitter(maxLineBytes: 16 << 20)
    /// After a cancel, how long the agent has to answer before it is stopped anyway.
    private var cancelDeadline: UInt64?
    /// Open permission questions and when the operator's default answers each (monotonic ns).
    private var questionDeadlines: [String: UInt64] = [:]
    static let cancelGraceNanoseconds: UInt64 = 3_000_000_000

    init(session: ACPClientSession, command: [String]) {
        self.session = session
        self.command = command
    }

    mutating func run() -> Int32 {
        signal(SIGPIPE, SIG_IGN)
        let signalFD = ag_termination_signalfd()
        guard let spawned = spawnAgent() else { return 127 }
        (agentPid, toAgent, fromAgent) = spawned
        if let code = perform(session.start(clientVersion: AgentGate.version)) { return finish(code) }
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            var fds = [pollfd(fd: fromAgent, events: Int16(POLLIN), revents: 0), pollfd(fd: signalFD, events: Int16(POLLIN), revents: 0)]
            if stdinOpen { fds.append(pollfd(fd: 0, events: Int16(POLLIN), revents: 0)) }
            if !pendingToAgent.isEmpty { fds.append(pollfd(fd: toAgent, events: Int16(POLLOUT), revents: 0)) }
            var timeout: Int32 = -1
            let now = MonotonicClock.nanoseconds()
            if let cancelDeadline {
                if now >= cancelDeadline { return finish(143, "the agent did not answer the cancel within 3 s") }
                timeout = Int32((cancelDeadline - now) / 1_000_000) + 1
            }
            for (key, deadline) in questionDeadlines where now >= deadline {
                questionDeadlines[key] = nil
                if let code = perform(session.handle(.permissionTimedOut(key: key))) { return finish(code) }
            }
            if let next = questionDeadlines.values.min() {
                let wait = Int32(min((next - min(next, now)) / 1_000_000 + 1, 86_400_000))
                timeout = timeout < 0 ? wait : min(timeout, wait)
            }
            if poll(&fds, nfds_t(fds.count), timeout) < 0 {
                if errno == EINTR { continue }
                return finish(1, "poll: \(String(cString: strerror(errno)))")
            }
            for index in fds.indices where fds[index].revents != 0 {
                let fd = fds[index].fd
                if fd == signalFD {
                    _ = ag_signalfd_drain(signalFD)
                    cancelDeadline = cancelDeadline ?? MonotonicClock.nanoseconds() + Self.cancelGraceNanoseconds
                    if let code = perform(session.handle(.cancel)) { return finish(code) }
                } else if fd == toAgent {
                    flushToAgent()
                } else if fd == 0 {
                    let count = buffer.withUnsafeMutableBytes { Glibc.read(0, $0.baseAddress, $0.count) }
                    if count > 0 {
                        let lines = buffer.withUnsafeBytes { stdinLines.feed(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
                        for line in lines {
                            if let (key, optionId) = Self.permissionAnswer(line) {
                                let actions = session.handle(.permissionAnswer(key: key, optionId: optionId))
                                // A refused answer leaves the question open, its default still due.
                                if actions.contains(where: { if case .send = $0 { true } else { false } }) { questionDeadlines[key] = nil }
                                if let code = perform(actions) { return finish(code) }
                                continue
                            }
                            if Self.isInterrupt(line) {
                                // The job is being killed: the turn is cancelled, SIGTERM follows if need be.
                                cancelDeadline = cancelDeadline ?? MonotonicClock.nanoseconds() + Self.cancelGraceNanoseconds
                                if let code = perform(session.handle(.cancel)) { return finish(code) }
                                continue
                            }
                            guard let text = Self.userMessage(line) else {
                                Self.note("ignored a line on stdin that is not a user message")
                                continue
                            }
                            if let code = perform(session.handle(.userMessage(text))) { return finish(code) }
                        }
                    } else if count == 0 || (errno != EINTR && errno != EAGAIN) {
                        stdinOpen = false
                        if let code = perform(session.handle(.messagesEnded)) { return finish(code) }
                    }
                } else if fd == fromAgent {
                    let count = buffer.withUnsafeMutableBytes { Glibc.read(fromAgent, $0.baseAddress, $0.count) }
                    if count > 0 {
                        let lines = buffer.withUnsafeBytes { agentLines.feed(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
                        for line in lines {
                            if let code = fromTheAgent(line) { return finish(code) }
                        }
                    } else if count == 0 || (errno != EINTR && errno != EAGAIN) {
                        if let last = agentLines.finish(), let code = fromTheAgent(last) { return finish(code) }
                        return agentEnded()
                    }
                }
            }
        }
    }

    /// A line from the agent: kept in the transcript as it came, then acted on.
    private mutating func fromTheAgent(_ line: LineSplitter.Line) -> Int32? {
        guard !line.text.isEmpty else { return nil }
        writeTranscript(Array(line.text.utf8))
        guard line.droppedBytes == 0, let message = try? JSONParser.parse(Array(line.text.utf8)), case .object = message else { return nil }
        return perform(session.handle(.agentMessage(message)).filter { if case .record = $0 { false } else { true } })
    }

    /// Carries out the session's actions; an exit code once it stops.
    private mutating func perform(_ actions: [ACPClientSession.Action]) -> Int32? {
        for action in actions {
            switch action {
            case .send(let message):
                let bytes = JSONWriter.serialize(message)
                writeTranscript(bytes)
                pendingToAgent += bytes + [0x0A]
                flushToAgent()
            case .record(let message):
                writeTranscript(JSONWriter.serialize(message))
            case .stop(let code, let reason):
                if let reason { Self.note(reason) }
                return code
            case .awaitAnswer(let key, let milliseconds):
                questionDeadlines[key] = MonotonicClock.nanoseconds() + UInt64(milliseconds) * 1_000_000
            case .note(let text):
                Self.note(text)
            }
        }
        return nil
    }

    private mutating func flushToAgent() {
        guard toAgent >= 0 else { return pendingToAgent.removeAll() }
        while !pendingToAgent.isEmpty {
            let written = pendingToAgent.withUnsafeBytes { FileDescriptor.writeSome(toAgent, $0) }
            switch written {
            case .success(0): return
            case .success(let count): pendingToAgent.removeFirst(count)
            case .failure:
                // EPIPE: the agent closed its stdin; its end is seen on its stdout.
                pendingToAgent.removeAll()
                close(toAgent)
                toAgent = -1
            }
        }
    }

    /// The agent's stdout ended before the session did: it exited (or closed it).
    private mutating func agentEnded() -> Int32 {
        let status = reap(waitingMilliseconds: 2_000)
        let how = status.map { Self.describe($0) } ?? "closed its output"
        Self.note("the ACP agent \(how) before the session ended")
        if let status, (status & 0x7f) == 0, (status >> 8) & 0xff != 0 { return Int32((status >> 8) & 0xff) }
        return 1
    }

    /// Ends the session: the agent's stdin is closed so it can exit by itself, then its
    /// group gets SIGTERM and SIGKILL if it does not.
    private mutating func finish(_ code: Int32, _ reason: String? = nil) -> Int32 {
        if let reason { Self.note(reason) }
        flushToAgent()
        if toAgent >= 0 { close(toAgent) }
        toAgent = -1
        // What it still writes before it exits belongs in the transcript. Short waits: the
        // whole shutdown fits in the kill grace that follows a SIGTERM to this client.
        drainAgent(milliseconds: 1_000)
        if reap(waitingMilliseconds: 0) == nil {
            kill(-agentPid, SIGTERM)
            if reap(waitingMilliseconds: 1_000) == nil {
                kill(-agentPid, SIGKILL)
                _ = reap(waitingMilliseconds: 1_000)
            }
        }
        kill(-agentPid, SIGKILL)  // what it left in its group
        return code
    }

    private mutating func drainAgent(milliseconds: Int) {
        let deadline = MonotonicClock.nanoseconds() + UInt64(milliseconds) * 1_000_000
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while fromAgent >= 0 {
            let now = MonotonicClock.nanoseconds()
            guard now < deadline else { return }
            var fd = pollfd(fd: fromAgent, events: Int16(POLLIN), revents: 0)
            guard poll(&fd, 1, Int32((deadline - now) / 1_000_000) + 1) > 0 else { return }
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fromAgent, $0.baseAddress, $0.count) }
            guard count > 0 else {
                close(fromAgent)
                fromAgent = -1
                return
            }
            let lines = buffer.withUnsafeBytes { agentLines.feed(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
            for line in lines where !line.text.isEmpty { writeTranscript(Array(line.text.utf8)) }
        }
    }

    /// The agent's wait status once it exited (within `waitingMilliseconds`), else nil.
    private func reap(waitingMilliseconds: Int) -> Int32? {
        let deadline = MonotonicClock.nanoseconds() + UInt64(waitingMilliseconds) * 1_000_000
        var status: Int32 = 0
        while true {
            let reaped = waitpid(agentPid, &status, WNOHANG)
            if reaped == agentPid { return status }
            if reaped < 0 { return 0 }  // already reaped
            if MonotonicClock.nanoseconds() >= deadline { return nil }
            usleep(10_000)
        }
    }

    private func spawnAgent() -> (pid_t, Int32, Int32)? {
        let input: (read: Int32, write: Int32)
        let output: (read: Int32, write: Int32)
        do throws(SystemError) {
            input = try FileDescriptor.pipe(nonBlockingRead: false, nonBlockingWrite: true)
            output = try FileDescriptor.pipe(nonBlockingRead: false, nonBlockingWrite: false)
        } catch {
            Self.note("cannot make pipes: \(error.message)")
            return nil
        }
        var pid: pid_t = 0
        let error = SupervisedProcess.withCStrings(command) { argv in
            ag_spawn(command[0], argv, environ, nil, input.read, output.write, 2, -1, &pid)
        }
        close(input.read)
        close(output.write)
        guard error == 0 else {
            Self.note("cannot start \(command[0]): \(String(cString: strerror(error)))")
            return nil
        }
        return (pid, input.write, output.read)
    }

    /// One line of the transcript on stdout (a file or a pipe the server reads).
    private func writeTranscript(_ bytes: [UInt8]) {
        (bytes + [0x0A]).withUnsafeBytes { try? FileDescriptor.writeAll(1, $0) }
    }

    /// The text of a `{"type":"user","message":{"content":[{"type":"text","text":…}]}}` line.
    static func userMessage(_ line: LineSplitter.Line) -> String? {
        guard line.droppedBytes == 0, let value = try? JSONParser.parse(Array(line.text.utf8)), value["type"]?.stringValue == "user",
            let content = value["message"]?["content"]?.arrayValue
        else { return nil }
        let text = content.compactMap { $0["type"]?.stringValue == "text" ? $0["text"]?.stringValue : nil }.joined(separator: "\n")
        return text.isEmpty ? nil : text
    }

    /// `{"type":"permission","request":KEY,"optionId":…}`: a person's answer to an open
    /// question (no optionId: cancel it).
    static func permissionAnswer(_ line: LineSplitter.Line) -> (String, String?)? {
        guard line.text.contains("\"permission\""), let value = try? JSONParser.parse(Array(line.text.utf8)),
            value["type"]?.stringValue == "permission", let key = value["request"]?.stringValue
        else { return nil }
        return (key, value["optionId"]?.stringValue)
    }

    /// `{"type":"interrupt"}`: the server asks for the turn to be cancelled (a kill).
    static func isInterrupt(_ line: LineSplitter.Line) -> Bool {
        (try? JSONParser.parse(Array(line.text.utf8)))?["type"]?.stringValue == "interrupt"
    }

    static func describe(_ status: Int32) -> String {
        (status & 0x7f) == 0 ? "exited \((status >> 8) & 0xff)" : "was killed by \(ExitStatus.signalName(status & 0x7f))"
    }

    /// agentgate's own words: on stderr, which the job's log shows.
    static func note(_ text: String) {
        let line = Array("agentgate acp-client: \(text)\n".utf8)
        line.withUnsafeBytes { try? FileDescriptor.writeAll(2, $0) }
    }
}
