/// A job's own git worktree and branch (`isolation: "worktree"`), as its record keeps it.
///
/// ```
///  preparing ──created──▶ active ──agent exited, change recorded──▶ ready ──apply──▶ applied
///      │                    ▲                                         │ │
///      └─ git failed        └──────── follow-up job (worktreeOf) ─────┘ └──discard──▶ discarded
/// ```
/// Work is only ever deleted by `discard`, which a person asks for: a worktree that is `ready`
/// with changes is kept through kills, failures, retention and restarts.
public struct Worktree: Sendable, Equatable {
    public enum State: String, Sendable, CaseIterable {
        case preparing, active, ready, applied, discarded
    }

    /// The worktree's top directory (`<data>/worktrees/<owner id>`).
    public var path: String
    /// `agentgate/<owner id>`.
    public var branch: String
    /// The top directory of the checkout the job was launched in: where `apply` goes.
    public var repository: String
    /// The requested cwd relative to `repository` ("" at its top, else "src/app").
    public var subdirectory: String
    /// The base as asked (`HEAD`, `main`, a commit).
    public var baseRef: String
    /// The commit `baseRef` named when the worktree was made; the diff is against it.
    public var baseCommit: String?
    /// The commit holding the change, made when the agent exited.
    public var headCommit: String?
    /// The job that made the worktree: this job, or the one a follow-up (`worktreeOf`) continues.
    public var owner: String
    public var state: State
    /// What changed, once recorded ("3 files changed, +42 −7").
    public var summary: String?
    public var filesChanged: Int?
    public var additions: Int?
    public var deletions: Int?
    /// How the change was applied (`merge`, `patch`) and to which branch of the source
    /// checkout: kept when the worktree is discarded afterwards.
    public var appliedAs: String?
    public var appliedTo: String?
    /// The worktree's own git directory (`<repository's .git>/worktrees/<name>`), read from its
    /// `.git` file when it was made, before any agent ran in it: agentgate's git commands name
    /// it, so an agent that rewrites its `.git` file cannot point them at another repository.
    public var gitDirectory: String?
    /// The repository's own git directory (its `--git-common-dir`, real path), read when the
    /// worktree was made: where agentgate's commands find the job's branch and objects, with
    /// an index of their own, never through the worktree's git directory.
    public var commonDirectory: String?
    /// The repository's git setup when the worktree was made (`WorktreeOperations.gitSetup`):
    /// agentgate does no git work on a setup that changed since.
    public var gitSetup: String?

    public init(path: String, branch: String, repository: String, subdirectory: String, baseRef: String, owner: String) {
        self.path = path
        self.branch = branch
        self.repository = repository
        self.subdirectory = subdirectory
        self.baseRef = baseRef
        self.owner = owner
        self.state = .preparing
    }

    /// Where the agent runs: the requested subdirectory of the worktree.
    public var workingDirectory: String { subdirectory.isEmpty ? path : path + "/" + subdirectory }

    /// True when deleting the worktree could lose work nobody applied or discarded.
    public var holdsUnreviewedWork: Bool {
        switch state {
        case .applied, .discarded: false
        case .ready: (filesChanged ?? 1) > 0
        case .preparing, .active: true
        }
    }

    public var json: JSONValue {
        func text(_ value: String?) -> JSONValue { value.map(JSONValue.string) ?? .null }
        func int(_ value: Int?) -> JSONValue { value.map(JSONValue.int) ?? .null }
        return .object([
            .init("path", .string(path)), .init("workingDirectory", .string(workingDirectory)),
            .init("branch", .string(branch)), .init("repository", .string(repository)),
            .init("subdirectory", .string(subdirectory)), .init("baseRef", .string(baseRef)),
            .init("baseCommit", text(baseCommit)), .init("headCommit", text(headCommit)), .init("owner", .string(owner)),
            .init("state", .string(state.rawValue)), .init("summary", text(summary)), .init("filesChanged", int(filesChanged)),
            .init("additions", int(additions)), .init("deletions", int(deletions)),
            .init("appliedAs", text(appliedAs)), .init("appliedTo", text(appliedTo)),
            .init("gitDirectory", text(gitDirectory)), .init("commonDirectory", text(commonDirectory)),
            .init("gitSetup", text(gitSetup)),
        ])
    }

    public init?(json: JSONValue) {
        guard let path = json["path"]?.stringValue, let branch = json["branch"]?.stringValue,
            let repository = json["repository"]?.stringValue, let owner = json["owner"]?.stringValue,
            let state = json["state"]?.stringValue.flatMap(State.init(rawValue:))
        else { return nil }
        self.init(
            path: path, branch: branch, repository: repository, subdirectory: json["subdirectory"]?.stringValue ?? "",
            baseRef: json["baseRef"]?.stringValue ?? "HEAD", owner: owner)
        self.state = state
        baseCommit = json["baseCommit"]?.stringValue
        headCommit = json["headCommit"]?.stringValue
        summary = json["summary"]?.stringValue
        filesChanged = json["filesChanged"]?.intValue
        additions = json["additions"]?.intValue
        deletions = json["deletions"]?.intValue
        appliedAs = json["appliedAs"]?.stringValue
        appliedTo = json["appliedTo"]?.stringValue
        gitDirectory = json["gitDirectory"]?.stringValue
        commonDirectory = json["commonDirectory"]?.stringValue
        gitSetup = json["gitSetup"]?.stringValue
    }

    /// Marks the worktree as one whose agent never ran (killed while it was made): no change.
    mutating func recordNothing() {
        guard let baseCommit else { return }
        headCommit = baseCommit
        state = .ready
        summary = WorktreeDiff(files: [], patchBytes: 0, truncated: false, capBytes: 0).summary
        filesChanged = 0
        additions = 0
        deletions = 0
    }
}
