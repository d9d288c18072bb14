import CSystemShims
import Glibc
import Testing

@testable import EventLoop

@Suite(.timeLimit(.minutes(1)))
struct EventLoopTests {
    @Test func timersFireInDeadlineOrderAndCancelledOnesDoNot() throws {
        let loop = try EventLoop()
        var fired: [Int] = []
        loop.schedule(afterMilliseconds: 30) { fired.append(3) }
        loop.schedule(afterMilliseconds: 10) { fired.append(1) }
        let cancelled = loop.schedule(afterMilliseconds: 20) { fired.append(99) }
        loop.schedule(afterMilliseconds: 20) { fired.append(2) }
        loop.cancel(cancelled)
        #expect(loop.run(untilMilliseconds: 2_000) { fired.count == 3 })
        #expect(fired == [1, 2, 3])
    }

    @Test func readableFdCallsItsHandlerUntilDeregistered() throws {
        let loop = try EventLoop()
        let pipe = try FileDescriptor.pipe()
        defer { close(pipe.read); close(pipe.write) }
        var received: [UInt8] = []
        var registration: EventLoop.Registration?
        registration = try loop.register(fd: pipe.read, interest: .readable) { _ in
            var byte: UInt8 = 0
            if read(pipe.read, &byte, 1) == 1 { received.append(byte) }
            if received.count == 3 { loop.deregister(registration!) }
        }
        #expect(loop.registrationCount == 1)
        var bytes: [UInt8] = [1, 2, 3, 4]
        _ = write(pipe.write, &bytes, 4)
        // Level-triggered: one byte per call, the handler is called again while bytes remain.
        #expect(loop.run(untilMilliseconds: 2_000) { received.count == 3 })
        loop.runOnce(timeoutMilliseconds: 50)
        #expect(received == [1, 2, 3])
        #expect(loop.registrationCount == 0)
        loop.deregister(registration!)  // twice is harmless
    }

    @Test func executeFromAnotherThreadWakesTheLoop() throws {
        let loop = try EventLoop()
        let done = LoopBound(Box())
        let thread = Thread { loop.execute { done.value.value = true } }
        thread.start()
        let start = MonotonicClock.nanoseconds()
        #expect(loop.run(untilMilliseconds: 5_000) { done.value.value })
        #expect(MonotonicClock.nanoseconds() - start < 4_000_000_000)
    }

    @Test func endOfTurnHooksRunAfterHandlers() throws {
        let loop = try EventLoop()
        var order: [String] = []
        loop.schedule(afterMilliseconds: 0) {
            order.append("timer")
            loop.atEndOfTurn { order.append("end") }
        }
        #expect(loop.run(untilMilliseconds: 1_000) { order.count == 2 })
        #expect(order == ["timer", "end"])
    }

    @Test func stopEndsRunFromAnotherThread() throws {
        let loop = try EventLoop()
        let thread = Thread {
            usleep(50_000)
            loop.stop()
        }
        thread.start()
        loop.run()  // returns only because of stop()
    }

    @Test func timerHeapOrdersManyEntries() {
        var heap = TimerHeap()
        var generator = SystemRandomNumberGenerator()
        let deadlines = (0..<500).map { _ in UInt64.random(in: 0..<1000, using: &generator) }
        for (id, deadline) in deadlines.enumerated() { heap.push(.init(deadline: deadline, id: UInt64(id))) }
        var popped: [UInt64] = []
        while let entry = heap.popFirst() { popped.append(entry.deadline) }
        #expect(popped == deadlines.sorted())
    }
}

final class Box: @unchecked Sendable {
    var value = false
}

import Foundation
