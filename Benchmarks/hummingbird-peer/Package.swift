// swift-tools-version: 6.0
// The comparison server for the fan-out benchmark: the same job (spawn an agent, send each
// stdout line as a JSON text frame to every viewer) written the idiomatic way on
// Hummingbird 2 + hummingbird-websocket (SwiftNIO). Never a dependency of agentgate.
import PackageDescription

let package = Package(
    name: "hummingbird-peer",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.8.1"),
    ],
    targets: [
        .executableTarget(
            name: "HummingbirdPeer",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "HummingbirdWSCompression", package: "hummingbird-websocket"),
            ]
        )
    ],
    swiftLanguageModes: [.v6]
)
