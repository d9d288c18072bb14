import ArgumentParser
import Gateway

/// `agentgate token`: the token scripts use, read from (or rotated in) the data dir.
struct TokenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Print the server's token; --rotate replaces it and signs every dashboard session out.")

    @Flag(help: "Write a new random token to the token file; a running server takes it within a second and ends its sessions.")
    var rotate = false

    @Option(help: "Where the server keeps its token (default: ~/.agentgate).")
    var dataDir: String?

    @Option(help: "The server's --token-file, when it was started with one (instead of the data dir's).")
    var tokenFile: String?

    func run() throws {
        let file = tokenFile ?? TokenFile.path(dataDirectory: dataDir ?? defaultDataDirectory())
        if rotate {
            do {
                try TokenFile.rotate(file: file)
            } catch {
                throw ClientFailure(message: error.description, exitCode: 8).exit()
            }
            printError("agentgate: new token written to \(file); a running server uses it from now on and every session made with the old one is signed out")
        }
        let existing: String?
        do {
            existing = try TokenFile.existing(file: file)
        } catch {
            throw ClientFailure(message: error.description, exitCode: 4).exit()
        }
        guard let token = existing else {
            throw ClientFailure(message: "no token in \(file) (the server makes one on its first start)", exitCode: 4).exit()
        }
        print(token)
    }
}
