#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import TestSupport

@testable import AgentCore

/// What a launch request may and may not decide: the env it sets, every value that reaches
/// argv, and where the job runs.
struct LaunchSecurityTests {
    func build(_ request: LaunchRequest, policy: LaunchPolicy = LaunchPolicy()) throws(LaunchError) -> LaunchSpec {
        try CommandBuilder(policy: policy, capabilities: CommandBuilderTests.capabilities, searchPath: "/usr/bin:/bin")
            .build(request, outputFile: "/tmp/out.txt")
    }

    func code(_ request: LaunchRequest, policy: LaunchPolicy = LaunchPolicy()) -> (LaunchError.Code, String?)? {
        do {
            _ = try build(request, policy: policy)
            return nil
        } catch {
            return (error.code, error.field)
        }
    }

    // MARK: environment

    @Test func aRequestSetsOnlyKeysTheOperatorAllowed() throws {
        let request = LaunchRequest(provider: "claude", prompt: "x", env: ["FOO": "bar"])
        #expect(code(request)! == (.environmentNotAllowed, "env.FOO"))
        let allowed = LaunchPolicy(environment: EnvironmentPolicy(allowed: ["FOO"]))
        #expect(try build(request, policy: allowed).environment == ["FOO": "bar"])
        let prefix = LaunchPolicy(environment: EnvironmentPolicy(allowed: ["FO*"]))
        #expect(try build(request, policy: prefix).environment == ["FOO": "bar"])
        #expect(code(LaunchRequest(provider: "claude", prompt: "x", env: ["FOOD": "x"]), policy: allowed)! == (.environmentNotAllowed, "env.FOOD"))
    }

    @Test(arguments: [
        "LD_PRELOAD", "LD_LIBRARY_PATH", "PATH", "BASH_ENV", "ENV", "NODE_OPTIONS", "PYTHONPATH", "PYTHONSTARTUP", "PERL5OPT",
        "RUBYOPT", "HTTPS_PROXY", "http_proxy", "ALL_PROXY", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL",
        "GOOSE_MODE", "OPENCODE_CONFIG_CONTENT", "CLAUDE_CONFIG_DIR", "CODEX_HOME", "AGENTGATE_JOB_ID", "AGENTGATE_URL",
        "HOME", "XDG_CONFIG_HOME", "GIT_SSH_COMMAND", "IS_SANDBOX", "GLIBC_TUNABLES", "ld_preload",
        // Found by the attacker trial with --pass-env '*': each loads code or redirects credentials.
        "OPENSSL_CONF", "OPENSSL_MODULES", "CC", "CXX", "CFLAGS", "LDFLAGS", "CGO_LDFLAGS", "GOFLAGS", "GOPROXY",
        "RUSTC_WRAPPER", "RUSTFLAGS", "CARGO_HOME", "PIP_INDEX_URL", "UV_INDEX_URL", "DOTNET_STARTUP_HOOKS",
        "CORECLR_PROFILER_PATH", "SSH_AUTH_SOCK", "SUDO_ASKPASS", "KUBECONFIG", "DOCKER_HOST", "GNUPGHOME", "KRB5_CONFIG",
        "NETRC", "CURL_HOME", "WGETRC", "LESSOPEN", "MANPAGER", "VIMINIT", "EXINIT", "TMPDIR", "LOCALDOMAIN",
        "RES_OPTIONS", "GIO_MODULE_DIR", "GTK_PATH", "QT_PLUGIN_PATH", "MAKEFLAGS", "PKG_CONFIG_PATH", "JAVA_HOME",
        "MAVEN_OPTS", "NODE_EXTRA_CA_CERTS", "PHPRC", "NPMRC", "SOME_TOOL_CONFIG", "PLUGIN_DIR",
        // Found by the second attacker trial: make, gcc, npm, setuptools, zip, autoconf, rsync, cargo's cc.
        "RM", "TARGET_ARCH", "LOADLIBES", "GCC_EXEC_PREFIX", "PREFIX", "LDSHARED", "ZIPOPT", "_PYTHON_SYSCONFIGDATA_NAME",
        "CONFIG_SITE", "CONFIG_SHELL", "RSYNC_RSH", "TARGET_CC", "HOST_CC", "CC_x86_64_unknown_linux_gnu", "CXXCPP", "M4",
        "LINK", "COREPACK_NPM_REGISTRY", "RUSTUP_DIST_SERVER", "CLOUD_ML_REGION", "GNUTLS_KEYLOGFILE",
        // Found by the third: gcloud, ccache, gh, distcc, ansible, vault, nix, systemd, pytest.
        "CLOUDSDK_PYTHON", "CLOUDSDK_PYTHON_ARGS", "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE", "CCACHE_PREFIX", "GH_PAGER",
        "GH_EDITOR", "DISTCC_SSH", "ANSIBLE_SSH_ARGS", "VAULT_ADDR", "NIX_SSHOPTS", "SYSTEMD_PAGER", "PYTEST_ADDOPTS",
        "MYTOOL_COMMAND", "MYTOOL_PYTHON",
    ])
    func keysThatChangeWhatRunsAreRefusedEvenWhenEverythingIsAllowed(_ key: String) {
        let everything = LaunchPolicy(environment: EnvironmentPolicy(allowed: ["*"]))
        #expect(code(LaunchRequest(provider: "claude", prompt: "x", env: [key: "v"]), policy: everything)! == (.environmentForbidden, "env.\(key)"))
    }

    /// `serve` takes named keys and namespaces of the operator's own, never `*` or a bare
    /// prefix: no deny list keeps up with every program's variables.
    @Test func passEnvTakesNamedKeysAndOwnNamespacesOnly() {
        for pattern in ["FOO", "MYAPP_*", "FAKE_*", "AB_*"] { #expect(EnvironmentPolicy.isAcceptablePattern(pattern), "\(pattern)") }
        for pattern in ["*", "C*", "MYAPP*", "A_*", "GIT_*", "LD_*", "CC_*", "RM", "PATH", "CLOUDSDK_*", "GH_*", "VAULT_*", "ANSIBLE_*"] {
            #expect(!EnvironmentPolicy.isAcceptablePattern(pattern), "\(pattern)")
        }
    }

    @Test(arguments: [
        "FOO", "LANG", "TZ", "TERM", "DEBUG", "LOG_LEVEL", "RUST_LOG", "GITHUB_TOKEN", "CI", "MY_FEATURE_FLAG", "DATABASE_URL",
        "DB_HOST", "FAKE_SCRIPT", "MYAPP_MODE",
    ])
    func ordinaryKeysPassWhenEverythingIsAllowed(_ key: String) throws {
        let everything = LaunchPolicy(environment: EnvironmentPolicy(allowed: ["*"]))
        #expect(try build(LaunchRequest(provider: "claude", prompt: "x", env: [key: "v"]), policy: everything).environment == [key: "v"])
    }

    @Test func theAgentsEnvironmentIsScrubbedAndItsJobVariablesCannotBeSpoofed() {
        let environment = EnvironmentPolicy.agentEnvironment(
            base: ["PATH=/usr/bin", "CLAUDECODE=1", "CLAUDE_CODE_ENTRYPOINT=cli", "AGENTGATE_TOKEN=secret", "NO_COLOR=0", "LANG=C"],
            request: ["FOO": "bar"], jobID: "job1", serverURL: "http://127.0.0.1:7777")
        #expect(environment == [
            "PATH=/usr/bin", "LANG=C", "FOO=bar", "NO_COLOR=1", "AGENTGATE_JOB_ID=job1", "AGENTGATE_URL=http://127.0.0.1:7777",
        ])
    }

    // MARK: argv

    @Test(arguments: ["claude", "codex", "opencode", "goose"])
    func noFieldOfAnyProviderCanBecomeAFlag(_ provider: String) {
        let hostile = ["--auto", "-x", "--share", "--attach=http://evil.example", "a b", "a\nb", "x\u{1B}[31m", "", "a;b", "$(id)"]
        for value in hostile {
            for field in ["model", "effort", "resumeSession"] {
                var request = LaunchRequest(provider: provider, prompt: "x")
                switch field {
                case "model": request.model = value
                case "effort": request.effort = value
                default: request.resumeSession = value
                }
                let failure = code(request)
                #expect(failure != nil, "\(provider).\(field) = \(value.debugDescription) was accepted")
                #expect(failure?.1 == field)
                #expect([.invalidField, .unsupportedField].contains(failure?.0))
            }
        }
    }

    @Test func effortComesFromEachProvidersOwnList() throws {
        #expect(try build(LaunchRequest(provider: "claude", prompt: "x", effort: "high")).arguments.contains("--effort=high"))
        #expect(try build(LaunchRequest(provider: "codex", prompt: "x", effort: "xhigh")).arguments.contains("model_reasoning_effort=\"xhigh\""))
        #expect(try build(LaunchRequest(provider: "opencode", prompt: "x", effort: "max")).arguments.contains("--variant=max"))
        #expect(code(LaunchRequest(provider: "claude", prompt: "x", effort: "xhigh"))! == (.invalidField, "effort"))
        #expect(code(LaunchRequest(provider: "opencode", prompt: "x", effort: "--auto"))! == (.invalidField, "effort"))
        #expect(code(LaunchRequest(provider: "goose", prompt: "x", effort: "high"))! == (.unsupportedField, "effort"))
    }

    @Test func aFieldTheProviderCannotHonourIsRefusedNotDropped() {
        // Neither reports its cost, so a cost budget could not be kept.
        #expect(code(LaunchRequest(provider: "codex", prompt: "x", maxBudgetUsd: 3))! == (.unsupportedField, "maxBudgetUsd"))
        #expect(code(LaunchRequest(provider: "goose", prompt: "x", maxBudgetUsd: 3))! == (.unsupportedField, "maxBudgetUsd"))
        #expect(code(LaunchRequest(provider: "claude", prompt: "x", command: ["ls"]))! == (.unsupportedField, "command"))
    }

    @Test func realModelNamesAndSessionIdsPass() throws {
        for model in ["opus", "sonnet[1m]", "claude-opus-4-5-20251101", "anthropic/claude-sonnet-4-5", "openrouter/meta-llama/llama-3:free", "gpt-5.1-codex"] {
            #expect(try build(LaunchRequest(provider: "opencode", prompt: "x", model: model)).arguments.contains("--model=\(model)"))
        }
        for session in ["40e7b02d-c0f9-4876-9010-f514d4eb0603", "ses_abc123", "20250101_1"] {
            #expect(throws: Never.self) { try build(LaunchRequest(provider: "goose", prompt: "x", resumeSession: session)) }
        }
        // A session id is never a path (third attacker trial: `a/../../tmp/x` reached every agent).
        for session in ["a/../../tmp/x", "abc/def", "a[1]"] {
            #expect(code(LaunchRequest(provider: "claude", prompt: "x", resumeSession: session))! == (.invalidField, "resumeSession"))
        }
    }

    @Test func controlCharactersAreRefusedEverywhereButThePromptsNewlines() throws {
        #expect(throws: Never.self) { try build(LaunchRequest(provider: "claude", prompt: "line one\nline\ttwo\r\n")) }
        #expect(code(LaunchRequest(provider: "claude", prompt: "x\u{1B}]52;c;ZXZpbA==\u{07}"))! == (.invalidField, "prompt"))
        #expect(code(LaunchRequest(provider: "claude", prompt: "x", label: "a\nb"))! == (.invalidField, "label"))
        #expect(code(LaunchRequest(provider: "claude", prompt: "x", label: "\u{9B}31m"))! == (.invalidField, "label"))
        // A bidi override would show a label reversed from what it holds.
        #expect(code(LaunchRequest(provider: "claude", prompt: "x", label: "fix \u{202E}gnp.exe"))! == (.invalidField, "label"))
        #expect(code(LaunchRequest(provider: "claude", prompt: "x", model: "m\u{2067}"))! == (.invalidField, "model"))
        // So would the marks, separators and BOM the second attacker trial used; emoji joiners are fine.
        for hidden in ["\u{200F}", "\u{061C}", "\u{2028}", "\u{FEFF}", "\u{200B}", "\u{E0041}", "\u{2060}", "\u{3164}", "\u{00AD}", "\u{180E}"] {
            #expect(code(LaunchRequest(provider: "claude", prompt: "x", label: "lab\(hidden)el"))! == (.invalidField, "label"))
        }
        #expect(code(LaunchRequest(provider: "claude", prompt: "x", label: "family 👨\u{200D}👩\u{200D}👧 ❤\u{FE0F} Größe")) == nil)
        // A prompt is text for a model: CRLF line endings, and right-to-left text, are its own.
        #expect(code(LaunchRequest(provider: "claude", prompt: "one\r\ntwo \u{2067}שלום\u{2069}")) == nil)
    }

    // MARK: working directory

    @Test func theCwdMustResolveInsideAWorkspaceAndNotIntoHiddenOrDataDirectories() throws {
        let root = TemporaryDirectory("agentgate-workspace")
        let outside = TemporaryDirectory("agentgate-outside")
        for directory in ["project/src", ".ssh", ".agentgate", "data"] {
            try FileManager.default.createDirectory(atPath: root.path + "/" + directory, withIntermediateDirectories: true)
        }
        symlink(outside.path, root.path + "/escape")
        let workspaces = try WorkspacePolicy(roots: [root.path], dataDirectory: root.path + "/data")
        let policy = LaunchPolicy(workspaces: workspaces)
        let resolvedRoot = workspaces.roots[0]
        #expect(try build(LaunchRequest(provider: "claude", prompt: "x", cwd: root.path + "/project/src/../src"), policy: policy)
            .workingDirectory == resolvedRoot + "/project/src")
        #expect(try build(LaunchRequest(provider: "claude", prompt: "x"), policy: policy).workingDirectory == resolvedRoot)
        #expect(code(LaunchRequest(provider: "claude", prompt: "x", cwd: outside.path), policy: policy)! == (.cwdOutsideWorkspace, "cwd"))
        #expect(code(LaunchRequest(provider: "claude", prompt: "x", cwd: root.path + "/escape"), policy: policy)! == (.cwdOutsideWorkspace, "cwd"))
        #expect(code(LaunchRequest(provider: "claude", prompt: "x", cwd: root.path + "/project/../../"), policy: policy)! == (.cwdOutsideWorkspace, "cwd"))
        #expect(code(LaunchRequest(provider: "claude", prompt: "x", cwd: root.path + "/.ssh"), policy: policy)! == (.cwdForbidden, "cwd"))
        #expect(code(LaunchRequest(provider: "claude", prompt: "x", cwd: root.path + "/data"), policy: policy)! == (.cwdForbidden, "cwd"))
        #expect(code(LaunchRequest(provider: "claude", prompt: "x", cwd: "project"), policy: policy)! == (.invalidField, "cwd"))
    }
}
