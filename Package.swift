// swift-tools-version: 6.0
import PackageDescription

/// Release builds skip the run-time exclusivity checks (debug builds, which run the tests, keep
/// them): on the per-line path of every job they were 6% of the server's CPU (perf, S10).
let serverSettings: [SwiftSetting] = [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]

let package = Package(
    name: "agentgate",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "agentgate", targets: ["agentgate"]),
        .library(name: "AgentCore", targets: ["AgentCore"]),
        .library(name: "EventLoop", targets: ["EventLoop"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // Linux syscalls that Glibc does not export to Swift (epoll, eventfd, pidfd) and a
        // posix_spawn wrapper that puts each child in its own session.
        .target(name: "CSystemShims"),
        // The system libsqlite3 (Debian: libsqlite3-dev).
        .systemLibrary(name: "CSQLite", providers: [.apt(["libsqlite3-dev"])]),
        // fds, epoll poller, timers, cross-thread wake-ups. Knows nothing about agents or HTTP.
        .target(name: "EventLoop", dependencies: ["CSystemShims"], swiftSettings: serverSettings),
        // The system zlib (Debian: zlib1g-dev), for permessage-deflate.
        .systemLibrary(name: "CZlib", providers: [.apt(["zlib1g-dev"])]),
        // Sans-I/O HTTP/1.1: request head parser with limits, response encoder.
        .target(name: "HTTPCore", swiftSettings: serverSettings),
        // Sans-I/O RFC 6455: frames, parser, encoder, handshake, connection state machine, UTF-8.
        .target(name: "WebSocketCore", dependencies: ["HTTPCore"], swiftSettings: serverSettings),
        // RFC 7692 permessage-deflate: negotiation and zlib compressor.
        .target(name: "WebSocketDeflate", dependencies: ["WebSocketCore", "CZlib"], swiftSettings: serverSettings),
        // WebSocket connections served on the event loop (server role), the echo server.
        .target(name: "WebSocketServer", dependencies: ["EventLoop", "HTTPCore", "WebSocketCore", "WebSocketDeflate"], swiftSettings: serverSettings),
        // Agents, launch specs, process supervision, output formats, jobs, store, hooks. No sockets.
        .target(name: "AgentCore", dependencies: ["EventLoop", "CSystemShims", "CSQLite"], swiftSettings: serverSettings),
        // The gateway: access policy (token, Host, Origin); routes and subscriptions come next.
        .target(name: "Gateway", dependencies: ["AgentCore", "EventLoop", "HTTPCore", "WebSocketCore", "WebSocketDeflate", "WebSocketServer"], swiftSettings: serverSettings),
        .executableTarget(
            name: "agentgate",
            dependencies: [
                "AgentCore", "CSystemShims", "EventLoop", "Gateway", "HTTPCore", "WebSocketCore", "WebSocketDeflate", "WebSocketServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: serverSettings
        ),
        // Temporary directories, fake agents on a temporary PATH, fixture paths.
        .target(name: "TestSupport", dependencies: ["EventLoop", "HTTPCore", "WebSocketCore"], path: "Tests/TestSupport"),
        .testTarget(name: "EventLoopTests", dependencies: ["EventLoop", "CSystemShims", "TestSupport"]),
        .testTarget(name: "HTTPCoreTests", dependencies: ["HTTPCore"]),
        .testTarget(name: "GatewayTests", dependencies: ["Gateway", "AgentCore", "HTTPCore", "EventLoop", "WebSocketServer", "TestSupport"]),
        .testTarget(name: "WebSocketTests", dependencies: ["HTTPCore", "WebSocketCore", "WebSocketDeflate", "WebSocketServer", "EventLoop", "TestSupport"]),
        .testTarget(
            name: "AgentCoreTests",
            dependencies: ["AgentCore", "EventLoop", "CSystemShims", "TestSupport"],
            exclude: ["Golden"]
        ),
        // Runs the built `agentgate` binary as a user would.
        .testTarget(name: "CommandLineTests", dependencies: ["agentgate", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
