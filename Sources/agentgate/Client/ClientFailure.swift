import AgentCore
import ArgumentParser

/// Why a client command could not do its job: one line on stderr and an exit code per
/// cause, so scripts can tell them apart.
///
/// | code | meaning |
/// |---|---|
/// | 0 | done (or the command succeeded) |
/// | 1 | the job failed or was interrupted |
/// | 2 | the request was refused as invalid (400) or the command line was wrong |
/// | 3 | cannot reach the server (connection refused, bad address) |
/// | 4 | the token was refused (401) or the Host/Origin (403); no token, a token shorter than 32 characters, or an unsafe token file |
/// | 5 | no such job (404) |
/// | 6 | the server went away mid-stream |
/// | 7 | the job had already finished (409) |
/// | 8 | any other server error |
/// | 130 | Ctrl-C detached from a job that keeps running |
/// | 137 | the job was killed |
struct ClientFailure: Error {
    var message: String
    var exitCode: Int32

    static func unreachable(_ server: String, _ detail: String) -> ClientFailure {
        ClientFailure(message: "cannot reach the agentgate server at \(server): \(detail) (is `agentgate serve` running?)", exitCode: 3)
    }

    static let serverGone = ClientFailure(message: "the server went away while streaming (re-attach with `agentgate tail ID --follow`)", exitCode: 6)

    /// The failure for an HTTP error answer `{"error", "code"}`.
    static func http(_ status: Int, _ body: JSONReply) -> ClientFailure {
        let message = body["error"]?.stringValue ?? "HTTP \(status)"
        switch status {
        case 400, 413, 422: return ClientFailure(message: message + (body["field"]?.stringValue.map { " (field: \($0))" } ?? ""), exitCode: 2)
        case 401: return ClientFailure(message: "the server refused the token (set AGENTGATE_TOKEN or check <data dir>/token)", exitCode: 4)
        case 403: return ClientFailure(message: message, exitCode: 4)
        case 404: return ClientFailure(message: message, exitCode: 5)
        case 409: return ClientFailure(message: message, exitCode: 7)
        default: return ClientFailure(message: "server error \(status): \(message)", exitCode: 8)
        }
    }
}

extension ClientFailure {
    /// Prints the line and exits with the code.
    func exit() -> ExitCode {
        printError("agentgate: " + TerminalText.escaped(message))
        return ExitCode(exitCode)
    }
}
