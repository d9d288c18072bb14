import Foundation
import Glibc
import TestSupport
import Testing

@testable import Gateway

/// Roles and presence over real WebSockets (issue 17): the connection that launched a job
/// steers it, a viewer is refused until control is handed to it, and every viewer that asked
/// for presence sees the viewer count and who controls the job, live.
@Suite(.serialized, .processExclusive, .timeLimit(.minutes(5)))
struct PresenceTests {
    /// Messages until one satisfies `condition` (nil if the connection ends first).
    static func next(_ viewer: Viewer, where condition: ([String: Any]) -> Bool) -> [String: Any]? {
        while let message = viewer.next() {
            if condition(message) { return message }
        }
        return nil
    }

    static func presence(_ viewer: Viewer, _ job: String, viewers: Int) -> [String: Any]? {
        presenceCounting(viewer, job, viewers: viewers).message
    }

    /// The presence that says `viewers`, and how many presence messages came until it.
    static func presenceCounting(_ viewer: Viewer, _ job: String, viewers: Int) -> (message: [String: Any]?, count: Int) {
        var count = 0
        let message = next(viewer) {
            guard $0["type"] as? String == "presence", $0["job"] as? String == job else { return false }
            count += 1
            return $0["viewers"] as? Int == viewers
        }
        return (message, count)
    }

    @Test func aHundredViewersComeAndGoAndEveryOneSeesTheCount() throws {
        let gateway = try RunningGateway()
        defer { gateway.stop() }
        let job = try launch(gateway, script: "exec sleep 30")
        let watcher = try Viewer(gateway)
        watcher.send(#"{"op":"subscribe","job":"\#(job)","presence":true,"req":1}"#)
        let ack = try #require(Self.next(watcher) { $0["type"] as? String == "ack" })
        #expect((ack["connection"] as? Int ?? 0) > 0)
        var crowd: [Viewer] = []
        for _ in 0..<100 {
            let viewer = try Viewer(gateway)
            viewer.send(#"{"op":"subscribe","job":"\#(job)","presence":true}"#)
            crowd.append(viewer)
        }
        let (fullMessage, seenBeforeFull) = Self.presenceCounting(watcher, job, viewers: 101)
        let full = try #require(fullMessage)
        #expect(full["controller"] is NSNull && full["you"] as? String == "viewer")
        #expect(Self.presence(crowd[99], job, viewers: 101) != nil)
        // Half leave: some say so, some just go.
        for (index, viewer) in crowd.prefix(50).enumerated() {
            if index % 2 == 0 { viewer.send(#"{"op":"unsubscribe","job":"\#(job)"}"#) } else { _ = shutdown(viewer.client.fd, Int32(SHUT_RDWR)) }
        }
        let (half, seenBeforeHalf) = Self.presenceCounting(watcher, job, viewers: 51)
        #expect(half != nil)
        #expect(Self.presence(crowd[60], job, viewers: 51) != nil)
        // Coalesced: 150 changes reached the watcher as a few messages, not one each.
        #expect(seenBeforeFull + seenBeforeHalf < 40, "\(seenBeforeFull) + \(seenBeforeHalf) presence messages")
        _ = try gateway.request("DELETE", "/api/agents/jobs/\(job)")
    }

    @Test func theLauncherSteersAViewerIsRefusedUntilControlIsHandedOver() throws {
        let gateway = try RunningGateway()
        defer { gateway.stop() }
        let launcher = try Viewer(gateway)
        launcher.send(#"{"op":"launch","provider":"codex","prompt":"x","env":{"FAKE_SCRIPT":"exec sleep 30"},"req":"l"}"#)
        let launched = try #require(Self.next(launcher) { $0["req"] as? String == "l" })
        let job = try #require((launched["job"] as? [String: Any])?["id"] as? String)
        let launcherID = try #require(launched["connection"] as? Int)
        launcher.send(#"{"op":"subscribe","job":"\#(job)","presence":true}"#)
        let other = try Viewer(gateway)
        other.send(#"{"op":"subscribe","job":"\#(job)","presence":true,"req":"s"}"#)
        let otherID = try #require(Self.next(other) { $0["req"] as? String == "s" }?["connection"] as? Int)
        let seen = try #require(Self.presence(other, job, viewers: 2))
        #expect(seen["controller"] as? Int == launcherID && seen["you"] as? String == "viewer")
        #expect(Self.presence(launcher, job, viewers: 2)?["you"] as? String == "controller")

        // A viewer may not kill; it asks for control, and the controller is told who asks.
        other.send(#"{"op":"kill","job":"\#(job)","req":"k"}"#)
        let refused = try #require(Self.next(other) { $0["req"] as? String == "k" })
        #expect(refused["code"] as? String == "not_controller", "\(refused)")
        // Nor kill everything: "*" is every job it may steer, and it may steer none.
        other.send(#"{"op":"kill","job":"*","req":"ka"}"#)
        #expect(Self.next(other) { $0["req"] as? String == "ka" }?["killed"] as? Int == 0)
        let status = try gateway.request("GET", "/api/agents/jobs/\(job)").json["job"] as? [String: Any]
        #expect(status?["status"] as? String == "running")
        other.send(#"{"op":"control","job":"\#(job)","req":"c"}"#)
        let asked = try #require(Self.next(other) { $0["req"] as? String == "c" })
        #expect(asked["asked"] as? Bool == true && asked["controller"] as? Int == launcherID)
        let request = try #require(Self.next(launcher) { $0["type"] as? String == "control_request" })
        #expect(request["from"] as? Int == otherID && request["job"] as? String == job)
        // Only the holder hands over, and only to a watcher.
        other.send(#"{"op":"handover","job":"\#(job)","to":\#(otherID),"req":"h"}"#)
        #expect(Self.next(other) { $0["req"] as? String == "h" }?["code"] as? String == "not_controller")
        launcher.send(#"{"op":"handover","job":"\#(job)","to":99999,"req":"h"}"#)
        #expect(Self.next(launcher) { $0["req"] as? String == "h" }?["code"] as? String == "not_watching")
        launcher.send(#"{"op":"handover","job":"\#(job)","to":\#(otherID),"req":"h2"}"#)
        #expect(Self.next(launcher) { $0["req"] as? String == "h2" }?["controller"] as? Int == otherID)
        let now = try #require(Self.next(other) { $0["type"] as? String == "presence" && $0["controller"] as? Int == otherID })
        #expect(now["you"] as? String == "controller")
        // The old controller is a viewer now; the new one steers.
        launcher.send(#"{"op":"kill","job":"\#(job)","req":"k2"}"#)
        #expect(Self.next(launcher) { $0["req"] as? String == "k2" }?["code"] as? String == "not_controller")
        // The controller leaves: nobody holds it, so anyone may steer.
        _ = shutdown(other.client.fd, Int32(SHUT_RDWR))
        #expect(Self.next(launcher) { $0["type"] as? String == "presence" && $0["viewers"] as? Int == 1 && $0["controller"] is NSNull } != nil)
        launcher.send(#"{"op":"kill","job":"\#(job)","req":"k3"}"#)
        #expect(Self.next(launcher) { $0["req"] as? String == "k3" }?["type"] as? String == "ack")
    }
}
