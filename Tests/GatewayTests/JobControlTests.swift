import Testing

@testable import Gateway

/// Who steers a job, without sockets: every transition of `JobControl`.
struct JobControlTests {
    @Test func theLauncherControlsAndOthersWaitForIt() {
        var control = JobControl()
        #expect(control.mayControl("j", 7), "nobody controls a job launched over REST: anyone may steer it")
        control.launched("j", by: 1)
        #expect(control.controller(of: "j") == 1 && control.mayControl("j", 1) && !control.mayControl("j", 2))
        let second = control.ask("j", 2)
        let third = control.ask("j", 3)
        let again = control.ask("j", 1)
        #expect(second == .asked(holder: 1, new: true) && third == .asked(holder: 1, new: true))
        #expect(again == .granted, "the holder asking again keeps it")
        #expect(control.jobs["j"]?.asking == [2, 3])
        // Asking again while waiting tells the holder nothing more (attacker trial: 400,000
        // asks got the holder cut as a slow reader, and control passed to the asker).
        for _ in 0..<1_000 { #expect(control.ask("j", 2) == .asked(holder: 1, new: false)) }
        #expect(control.jobs["j"]?.asking == [2, 3] && control.controller(of: "j") == 1)
    }

    @Test func controlPassesToTheOldestAskerStillWatchingWhenItsHolderLeaves() {
        var control = JobControl()
        control.launched("j", by: 1)
        _ = control.ask("j", 2)
        _ = control.ask("j", 3)
        // 2 left without saying so (its connection's subscription is gone): 3 is next.
        let passed = control.left("j", 1, isWatching: { $0 == 3 })
        #expect(passed)
        #expect(control.controller(of: "j") == 3 && control.jobs["j"]?.asking == [])
        let released = control.left("j", 3, isWatching: { _ in true })
        #expect(released)
        #expect(control.controller(of: "j") == nil && control.jobs["j"] == nil && control.mayControl("j", 9))
        let unchanged = control.left("j", 4, isWatching: { _ in true })
        #expect(!unchanged, "nothing changes for a connection that held nothing")
    }

    @Test func onlyTheHolderHandsOverAndOnlyToAWatcher() {
        var control = JobControl()
        control.launched("j", by: 1)
        _ = control.ask("j", 2)
        let taken = control.handOver("j", from: 2, to: 2, isWatching: { _ in true })
        #expect(!taken, "an asker cannot take it")
        let toAStranger = control.handOver("j", from: 1, to: 5, isWatching: { $0 == 2 })
        #expect(!toAStranger, "to a connection that does not watch")
        let handed = control.handOver("j", from: 1, to: 2, isWatching: { $0 == 2 })
        #expect(handed)
        #expect(control.controller(of: "j") == 2 && control.jobs["j"]?.asking == [])
        #expect(control.jobs(of: 2) == ["j"] && control.jobs(of: 1) == [])
        control.forget("j")
        #expect(control.controller(of: "j") == nil)
    }

    @Test func askersAreBounded() {
        var control = JobControl()
        control.launched("j", by: 0)
        for connection in 1...(JobControl.maxAsking + 10) { _ = control.ask("j", connection) }
        #expect(control.jobs["j"]?.asking.count == JobControl.maxAsking)
    }
}
