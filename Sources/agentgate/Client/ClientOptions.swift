import AgentCore
import ArgumentParser
import Foundation
import Gateway

/// How a client command finds the server and its token.
struct ClientOptions: ParsableArguments {
    @Option(help: "The server's URL (default: AGENTGATE_SERVER or http://127.0.0.1:7777).")
    var server: String?

    @Option(help: "Short for --server http://127.0.0.1:PORT (a server started with serve --port PORT).")
    var port: Int?

    @Option(help: "Where the server keeps its token (default: ~/.agentgate); AGENTGATE_TOKEN wins.")
    var dataDir: String?

    @Option(help: "Read the token from this file, as `serve --token-file` does (instead of the data dir's).")
    var tokenFile: String?

    var dataDirectory: String { dataDir ?? defaultDataDirectory() }

    /// The file the token is read from: `--token-file`, or the data dir's.
    var tokenPath: String { tokenFile ?? TokenFile.path(dataDirectory: dataDirectory) }

    func api() throws(ClientFailure) -> ServerAPI {
        let environment = ProcessInfo.processInfo.environment
        let address = try ServerAddress(server ?? port.map { "http://127.0.0.1:\($0)" } ?? environment["AGENTGATE_SERVER"] ?? "http://127.0.0.1:7777")
        let supplied: String?
        do {
            // An unsafe token file or a short token is refused here as the server refuses it.
            if let token = try TokenFile.fromEnvironment(environment) {
                supplied = token
            } else {
                supplied = try TokenFile.existing(file: tokenPath)
            }
        } catch {
            throw ClientFailure(message: error.description, exitCode: 4)
        }
        guard let token = supplied else {
            throw ClientFailure(
                message: "no token in \(tokenPath): set AGENTGATE_TOKEN, or pass the server's --data-dir (or --token-file)", exitCode: 4)
        }
        return ServerAPI(address: address, token: token)
    }
}

/// Runs a client command body, turning its failure into one line and an exit code; a
/// body that returns a non-zero status (a job's outcome) exits with it.
func runClient(_ body: () throws(ClientFailure) -> Int32) throws {
    let code: Int32
    do {
        code = try body()
    } catch {
        throw error.exit()
    }
    if code != 0 { throw ExitCode(code) }
}

/// Refuses what cannot be a job id (the server's are 16 hex digits; letters, digits, `-` and
/// `_`, 1–64, are taken): an id goes into the request's path, where an empty one, `?`, `/`
/// or `..` names another route (`agentgate kill '?'` once killed every job).
func validateJobID(_ id: String) throws {
    let allowed = id.utf8.allSatisfy { byte in
        (byte >= 0x30 && byte <= 0x39) || (byte | 0x20 >= 0x61 && byte | 0x20 <= 0x7A) || byte == 0x2D || byte == 0x5F
    }
    guard !id.isEmpty, id.utf8.count <= 64, allowed else {
        throw ValidationError("not a job id: \(TerminalText.escaped(id)) (ids are like 3c95f544f24390f5; see `agentgate jobs`)")
    }
}
