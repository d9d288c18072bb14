/// Which environment variables a launch request may set, and what every agent's environment
/// is made of.
///
/// Deny by default: a request may set only keys the operator allowed (`--pass-env KEY`, or
/// `NAMESPACE_*` for a namespace of the operator's own; `serve` refuses `*` and other bare
/// prefixes, see `isAcceptablePattern`). Some keys are refused even then, because setting them
/// decides what runs (`LD_PRELOAD`, `PATH`, `BASH_ENV`, `NODE_OPTIONS`…), where the
/// operator's API keys are sent (`ANTHROPIC_BASE_URL`, proxies) or whether the agent asks
/// before acting (`GOOSE_MODE`, `CLAUDE_CONFIG_DIR`, `CODEX_HOME`…).
public struct EnvironmentPolicy: Sendable, Equatable {
    /// Patterns the operator allowed: `KEY` exactly, or `PREFIX*`.
    public var allowed: [String]

    public init(allowed: [String] = []) {
        self.allowed = allowed
    }

    public enum Verdict: Equatable, Sendable {
        case allowed
        case notAllowed
        case forbidden
    }

    public func verdict(for key: String) -> Verdict {
        if Self.isForbidden(key) { return .forbidden }
        for pattern in allowed {
            if pattern.hasSuffix("*") ? key.hasPrefix(pattern.dropLast()) : key == pattern { return .allowed }
        }
        return .notAllowed
    }

    /// Checks a request's env; throws naming the first key refused.
    public func check(_ environment: [String: String]) throws(LaunchError) {
        for key in environment.keys.sorted() {
            switch verdict(for: key) {
            case .allowed: continue
            case .forbidden:
                throw LaunchError(
                    .environmentForbidden, field: "env.\(key)",
                    "env \(key) can change what runs or where credentials go, so no request may set it")
            case .notAllowed:
                throw LaunchError(
                    .environmentNotAllowed, field: "env.\(key)",
                    "env \(key) is not allowed; the operator can allow it with --pass-env \(key)")
            }
        }
    }

    /// Exact names (compared upper-cased: `http_proxy` is read by curl as much as `HTTP_PROXY`).
    /// A deny list cannot know every program's variables, which is why nothing passes unless
    /// the operator named it; these are refused even then.
    static let forbiddenNames: Set<String> = [
        // What runs: the search path, shell and interpreter start-up files.
        "PATH", "BASH_ENV", "ENV", "SHELL", "SHELLOPTS", "BASHOPTS", "PS4", "PROMPT_COMMAND", "IFS", "CDPATH",
        "GLIBC_TUNABLES", "GCONV_PATH", "LOCPATH", "NLSPATH", "HOSTALIASES", "RESOLV_HOST_CONF", "MALLOC_CHECK_",
        "LOCALDOMAIN", "RES_OPTIONS", "TZDIR", "JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "_JAVA_OPTIONS", "CLASSPATH",
        "EDITOR", "VISUAL", "PAGER", "BROWSER", "TCLLIBPATH", "TERMINFO", "ZDOTDIR", "INPUTRC", "MANPAGER", "MANOPT",
        "VIMINIT", "EXINIT", "MYVIMRC", "GVIMINIT", "VIMRUNTIME", "EMACSLOADPATH",
        // Build tools a coding agent runs: compilers, their flags and wrappers.
        "CC", "CXX", "CPP", "LD", "AR", "AS", "NM", "RANLIB", "STRIP", "OBJCOPY", "OBJDUMP", "FC", "MAKE", "MAKEFLAGS",
        "MFLAGS", "GNUMAKEFLAGS", "MAKEFILES", "LDLIBS", "LEX", "YACC", "SWIFT_EXEC", "SDKROOT", "GCCGO", "RUSTC",
        "RUSTDOC", "RUSTUP_TOOLCHAIN", "RM", "TARGET_ARCH", "TARGET_MACH", "LOADLIBES", "OUTPUT_OPTION",
        "GCC_EXEC_PREFIX", "PREFIX", "LDSHARED", "LDCXXSHARED", "CXXCPP", "M4", "LINK", "CO", "GET", "LINT", "MAKEINFO",
        "TEX", "TEXI2DVI", "WEAVE", "CWEAVE", "TANGLE", "CTANGLE", "PC", "M2C", "MAKESHELL", "INSTALL", "MKDIR_P",
        "SED", "GREP", "AWK", "JAVAC", "JAR", "NODE", "NPM", "YARN", "PNPM", "DESTDIR",
        // Where configuration (and so permission settings) is read from.
        "HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR",
        "XDG_CONFIG_DIRS", "XDG_DATA_DIRS", "IS_SANDBOX", "NO_COLOR", "TMPDIR", "TMP", "TEMP", "KUBECONFIG",
        "GNUPGHOME", "NETRC", "WGETRC", "DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY", "VIRTUAL_ENV", "CONDA_PREFIX",
        "JAVA_HOME",
        // Where traffic and its trust go.
        "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSLKEYLOGFILE", "NODE_EXTRA_CA_CERTS",
    ]

    static let forbiddenPrefixes: [String] = [
        // Loaders, interpreters, package managers and build systems that load code from a path.
        "LD_", "DYLD_", "PYTHON", "PERL", "RUBY", "NODE_", "NPM_CONFIG_", "BUN_", "DENO_", "LUA_", "GIT_", "GEM_",
        "BUNDLE_", "BASH_", "OPENSSL_", "GO", "CGO_", "CARGO_", "RUSTUP_", "CC_", "CXX_", "_PYTHON", "CONFIG_",
        "RSYNC_", "COREPACK_", "CLOUD_", "YARN_", "PNPM_", "CLOUDSDK_", "GCLOUD", "CCACHE_", "DISTCC_", "GH_",
        "GITHUB_CLI", "ANSIBLE_", "VAULT_", "NIX_", "SYSTEMD_", "TERRAFORM_", "PULUMI_", "CONSUL_", "NOMAD_", "HG",
        "SVN_", "BZR_", "PYTEST_", "TOX_", "NOX_", "HATCH_", "PDM_", "PIPENV_", "NVM_", "VOLTA_", "ASDF_", "MISE_",
        "RBENV_", "PYENV_", "SDKMAN_", "JENV_", "PIP_", "PIPX_", "UV_", "POETRY_", "CONDA_", "DOTNET_", "CORECLR_",
        "COMPLUS_", "CMAKE_", "PKG_CONFIG", "MAVEN_", "GRADLE_", "JAVA_", "PHP", "COMPOSER_", "R_", "JULIA_",
        // Desktop plug-in loaders (a GTK, Qt or GIO program loads modules from these).
        "GIO_", "GTK_", "GDK_", "QT_", "GST_", "LIBGL_", "VK_", "__EGL_", "DBUS_",
        // Credentials and the tools that use them.
        "SSH_", "DOCKER_", "PODMAN_", "CONTAINER_", "KRB5", "SUDO_", "GPG_", "CURL_", "LESS", "TF_", "HELM_", "KUBE",
        // Every agent's own settings: base URLs, keys, config dirs, approval modes.
        "ANTHROPIC_", "CLAUDE", "OPENAI_", "CODEX_", "OPENCODE", "GOOSE_", "AGENTGATE_", "AWS_", "AZURE_", "GOOGLE_",
        "GEMINI_", "VERTEX", "OPENROUTER_", "GROQ_", "MISTRAL_", "DEEPSEEK_", "XAI_", "OLLAMA_", "DATABRICKS_",
        "LITELLM_", "MCP_",
    ]

    /// Name endings that mean a search path, a config file or directory, a plug-in, a wrapper
    /// or a program's options, whatever the program. (`HOME` covers `_HOME`, `_DIR` covers
    /// `_CONFIG_DIR`, `OPTS` covers `_OPTS`.)
    static let forbiddenSuffixes: [String] = [
        "PATH", "HOME", "_DIR", "_DIRS", "_CONF", "_CONFIG", "_CONFIG_FILE", "RC", "_OPTIONS", "FLAGS", "_PRELOAD",
        "_WRAPPER", "_ASKPASS", "_PLUGINS", "_PLUGIN", "_MODULES", "_LIBRARY", "_PROXY", "_BASE_URL", "_API_BASE",
        "_API_KEY", "_API_HOST", "_ENDPOINT", "_SOCK", "_SOCKET", "_CC", "_CXX", "OPT",
        // A program to run, its arguments, or where it fetches code and trusts certificates.
        "OPTS", "KEYLOGFILE", "_SHELL", "_RSH", "_PYTHON", "_ARGS", "PAGER", "EDITOR", "BROWSER", "_SSH", "_EXE",
        "_COMMAND", "_CMD", "_PREFIX", "_REGISTRY", "_MIRROR", "_BIN", "_BINARY", "_PROGRAM", "_HOOK", "_HOOKS",
        "_EXEC", "_LOADER", "_INIT", "_STARTUP", "_CERT", "_CERTS", "_CA_FILE", "_CAFILE", "_INSECURE",
    ]

    /// Whether `serve` takes `pattern` for `--pass-env`: a key no request is refused, or a
    /// namespace of at least two characters and `_*` (`MYAPP_*`) that is not itself one the
    /// deny list covers. A namespace gives away every key in it, the ones a tool reads to
    /// decide what to run included, so it should be the operator's own, not a tool's. Not `*`
    /// or a bare prefix like `C*`: no deny list knows every variable that makes a program run
    /// code (make's `RM`, gcc's `GCC_EXEC_PREFIX`, npm's `PREFIX`…), so the operator names
    /// what jobs need.
    public static func isAcceptablePattern(_ pattern: String) -> Bool {
        guard pattern.hasSuffix("*") else { return !isForbidden(pattern) }
        let namespace = String(pattern.dropLast())
        return namespace.utf8.count >= 3 && namespace.hasSuffix("_") && !isForbidden(namespace + "X")
    }

    public static func isForbidden(_ key: String) -> Bool {
        let name = key.uppercased()
        if forbiddenNames.contains(name) { return true }
        if forbiddenPrefixes.contains(where: { name.hasPrefix($0) }) { return true }
        return forbiddenSuffixes.contains(where: { name.hasSuffix($0) })
    }

    /// Markers of a Claude Code session: a server started from a Claude Code shell must not
    /// hand them to the claude it launches, which would refuse to run nested.
    static let nestingMarkers: Set<String> = ["CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT"]

    /// An agent's environment: the server's own without nesting markers and agentgate's
    /// variables, then the request's allowed keys, then `NO_COLOR=1` and the job's
    /// `AGENTGATE_JOB_ID`/`AGENTGATE_URL`, which nothing can override.
    public static func agentEnvironment(
        base: [String], request: [String: String], jobID: String, serverURL: String
    ) -> [String] {
        var environment: [String] = []
        var overridden = Set(request.keys)
        overridden.insert("NO_COLOR")
        for entry in base {
            let key = entry.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? entry
            if nestingMarkers.contains(key) || key.hasPrefix("AGENTGATE_") || overridden.contains(key) { continue }
            environment.append(entry)
        }
        for (key, value) in request.sorted(by: { $0.key < $1.key }) { environment.append("\(key)=\(value)") }
        environment.append("NO_COLOR=1")
        environment.append("AGENTGATE_JOB_ID=\(jobID)")
        environment.append("AGENTGATE_URL=\(serverURL)")
        return environment
    }
}
