import AgentCore
import ArgumentParser
import Foundation
import Gateway

/// Options that shape how jobs run, shared by every command that runs them.
struct EngineOptions: ParsableArguments {
    @Option(help: "Where jobs and their events are stored (default: ~/.agentgate).")
    var dataDir: String?

    @Flag(help: "Allow provider 'custom' (an explicit argv). Off by default: it runs any program.")
    var allowCustomCommands = false

    @Option(help: "Shell command run when a job ends; gets the job JSON on stdin, prints JSON for result.hook.")
    var onComplete: String?

    @Option(help: "Seconds the on-complete hook may run.")
    var hookTimeout: Int = 30

    @Option(help: "claude --permission-mode for every job (e.g. acceptEdits, bypassPermissions).")
    var claudePermissionMode: String?

    @Option(help: "codex --sandbox for every job (read-only, workspace-write, danger-full-access).")
    var codexSandbox: String?

    @Option(help: "How agents' permission requests are answered (ACP agents' requests; Claude Code's prompts where its mode asks): deny, allow, or ask (the job's controller answers).")
    var agentPermissions = ACPClientSession.PermissionPolicy.deny.rawValue

    @Option(help: "With --agent-permissions ask: seconds a question waits for an answer before --permission-default answers.")
    var permissionTimeout = 120

    @Option(help: "With --agent-permissions ask: the answer when nobody answered in time (allow or deny).")
    var permissionDefault = ACPClientSession.PermissionPolicy.deny.rawValue

    @Option(help: "Seconds between SIGTERM and SIGKILL when a job is killed.")
    var killGrace: Double = 5

    @Option(
        name: .customLong("pass-env"), parsing: .singleValue,
        help: "An env key a launch request may set (repeatable; NAMESPACE_* allows a namespace of your own). None by default; loader, interpreter, build-tool, PATH, proxy and agent keys are never allowed.")
    var passEnv: [String] = []

    @Flag(help: "Contain jobs with a subreaper instead of a cgroup v2 group per job (also AGENTGATE_NO_CGROUP=1).")
    var noCgroup = false

    @Option(
        name: .customLong("workspace"), parsing: .singleValue,
        help: "A directory jobs may run in, with everything below it (repeatable; serve's default: your home directory).")
    var workspaces: [String] = []

    @Option(
        name: .customLong("isolate-in"), parsing: .singleValue,
        help: "A directory where jobs run in a git worktree of their own by default when their cwd is in a git checkout (repeatable; a launch may still ask for isolation \"none\").")
    var isolateIn: [String] = []

    @Option(help: "Bytes of each job's unified diff that are kept (binary units: 1M, 16M); the per-file summary covers the whole change.")
    var maxDiff = "4M"

    @Option(help: "Most event output one job may produce (binary units: 512M, 1G); past it the job is stopped and fails with output_limit.")
    var maxJobOutput = "1G"

    @Option(help: "Launches are refused (507) while the data dir has less free space than this (binary units: 128M, 1G).")
    var minFreeSpace = "128M"

    var resolvedDataDirectory: String { dataDir ?? defaultDataDirectory() }

    var detectorConfiguration: AgentDetector.Configuration {
        .fromProcessEnvironment(allowCustomCommands: allowCustomCommands)
    }

    /// Refuses `--pass-env` keys that no request may ever set, so the operator learns it at
    /// start rather than from a refused launch.
    func validatePassEnv() throws {
        for key in passEnv {
            let name = key.hasSuffix("*") ? String(key.dropLast()) : key
            guard key == "*" || LaunchRequest.isValidEnvironmentKey(name) else {
                throw ValidationError("--pass-env \(key): a key is letters, digits and _ (with an optional trailing *)")
            }
            if !key.hasSuffix("*"), EnvironmentPolicy.isForbidden(key) {
                throw ValidationError("--pass-env \(key): \(key) can change what runs or where credentials go, so it is never passed")
            }
            if key.hasSuffix("*"), !EnvironmentPolicy.isAcceptablePattern(key) {
                throw ValidationError(
                    "--pass-env \(key): name the keys jobs need, or a namespace of your own such as MYAPP_*; no list knows every "
                        + "variable that makes a program run code (make's RM, gcc's GCC_EXEC_PREFIX, npm's PREFIX…), so * and bare prefixes are not taken")
            }
        }
    }

    /// - Parameter defaultWorkspaces: the workspaces when none were given (nil: anywhere).
    func managerConfiguration(environment: [String], defaultWorkspaces: [String]? = nil) throws -> JobManager.Configuration {
        var configuration = JobManager.Configuration()
        let roots = workspaces.isEmpty ? defaultWorkspaces : workspaces
        var workspacePolicy: WorkspacePolicy?
        if let roots {
            do {
                workspacePolicy = try WorkspacePolicy(roots: roots, dataDirectory: resolvedDataDirectory)
            } catch {
                throw ValidationError(error.message)
            }
        }
        configuration.policy = LaunchPolicy(
            claudePermissionMode: claudePermissionMode, codexSandbox: codexSandbox,
            allowCustomCommands: allowCustomCommands, environment: EnvironmentPolicy(allowed: passEnv),
            workspaces: workspacePolicy)
        guard let acpPolicy = ACPClientSession.PermissionPolicy(rawValue: agentPermissions) else {
            throw ValidationError("--agent-permissions \(agentPermissions): allow, deny or ask")
        }
        configuration.policy.agentPermissions = acpPolicy
        guard let fallback = ACPClientSession.PermissionPolicy(rawValue: permissionDefault), fallback != .ask else {
            throw ValidationError("--permission-default \(permissionDefault): allow or deny")
        }
        guard (1...86_400).contains(permissionTimeout) else { throw ValidationError("--permission-timeout must be 1…86400 seconds") }
        configuration.policy.permissionDefault = fallback
        configuration.policy.permissionTimeoutSeconds = permissionTimeout
        configuration.policy.acpClientExecutable = StaticFiles.executablePath(argumentZero: CommandLine.arguments[0])
        configuration.killGraceMilliseconds = Int(killGrace * 1000)
        guard let maxOutput = ByteCount.parse(maxJobOutput), maxOutput >= 4096 else {
            throw ValidationError("--max-job-output \(maxJobOutput): a size such as 512M or 1G (at least 4K)")
        }
        guard let minFree = ByteCount.parse(minFreeSpace) else {
            throw ValidationError("--min-free-space \(minFreeSpace): a size such as 256M or 1G")
        }
        guard let maxDiffBytes = ByteCount.parse(maxDiff), maxDiffBytes >= 1024 else {
            throw ValidationError("--max-diff \(maxDiff): a size such as 1M or 16M (at least 1K)")
        }
        configuration.maxDiffBytes = maxDiffBytes
        for directory in isolateIn {
            guard let resolved = realpath(directory, nil) else {
                throw ValidationError("--isolate-in \(directory): no such directory")
            }
            configuration.isolateIn.append(String(cString: resolved))
            free(resolved)
        }
        configuration.maxJobOutputBytes = maxOutput
        configuration.minFreeBytes = Int64(minFree)
        configuration.warnFreeBytes = max(Int64(minFree) * 4, configuration.warnFreeBytes)
        configuration.baseEnvironment = environment
        configuration.useCgroups = !noCgroup && ProcessInfo.processInfo.environment["AGENTGATE_NO_CGROUP"] != "1"
        if let onComplete {
            configuration.onComplete = ExternalHook.Configuration(command: onComplete, timeoutMilliseconds: hookTimeout * 1000)
        }
        return configuration
    }
}

/// `~/.agentgate`: where the server keeps jobs and its token unless told otherwise.
func defaultDataDirectory() -> String {
    homeDirectory() + "/.agentgate"
}

func homeDirectory() -> String {
    ProcessInfo.processInfo.environment["HOME"] ?? NSHomeDirectory()
}

/// Prints one line to stderr.
func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}
