#if canImport(Glibc)
import Glibc
#endif
import CSystemShims
import EventLoop

/// An agent whose supervisor died before it (killed, or crashed): no one will write its
/// `exit.json`, yet the agent works on and its spools still fill. The server follows the agent
/// itself through a pidfd, and reads its wait status from the kernel once it ends — by
/// reaping it (it was re-parented to this server, a subreaper) or, when init inherited it,
/// from `PIDFD_INFO_EXIT` (Linux 6.15+). On older kernels the status is unknown (`status`
/// stays nil) but no output is lost.
final class LostAgentWatch {
    let agent: AgentRecord
    /// How the agent ended, once known.
    private(set) var status: ExitStatus?
    private let loop: EventLoop
    private var fd: Int32
    private var registration: EventLoop.Registration?
    private var onEnd: ((ExitStatus?) -> Void)?
    private var timers: [EventLoop.TimerID] = []

    /// How long after the agent's end its status is waited for (whoever reaps it).
    static let collectMilliseconds = 2_000

    /// Nil when the agent is gone already or fails its identity check.
    init?(agent: AgentRecord, loop: EventLoop, onEnd: @escaping (ExitStatus?) -> Void) {
        let fd = ag_pidfd_open(agent.pid)
        guard fd >= 0 else { return nil }
        // Checked after the pidfd is open: from here on it names this process, never a reuse.
        guard agent.identityHolds else {
            close(fd)
            return nil
        }
        self.agent = agent
        self.loop = loop
        self.fd = fd
        self.onEnd = onEnd
        registration = try? loop.register(fd: fd, interest: .readable) { [unowned self] _ in self.ended() }
        if registration == nil {
            close(fd)
            return nil
        }
    }

    deinit { stop() }

    /// SIGTERM to the agent's group, SIGKILL after the grace period: what its supervisor would
    /// have done.
    func terminate(graceMilliseconds: Int) {
        guard onEnd != nil else { return }
        kill(-agent.pgid, SIGTERM)
        timers.append(loop.schedule(afterMilliseconds: graceMilliseconds) { [weak self] in self?.killNow() })
    }

    func killNow() {
        guard onEnd != nil else { return }
        kill(-agent.pgid, SIGKILL)
    }

    private func ended() {
        if let registration { loop.deregister(registration) }
        registration = nil
        // What it left in its group goes with it (the group cannot be reused while it has
        // members, so no identity is needed for this).
        kill(-agent.pgid, SIGKILL)
        collect(until: Self.collectMilliseconds / 10)
    }

    /// Asks the kernel for the status every 10 ms until it is known or `rounds` run out.
    private func collect(until rounds: Int) {
        var wait: Int32 = 0
        switch ag_pidfd_exit_status(fd, &wait) {
        case 1:
            status = ExitStatus(waitStatus: wait)
            finish()
        case 0 where rounds > 0:
            timers.append(loop.schedule(afterMilliseconds: 10) { [weak self] in self?.collect(until: rounds - 1) })
        default:
            finish()
        }
    }

    private func finish() {
        let callback = onEnd
        stop()
        callback?(status)
    }

    private func stop() {
        onEnd = nil
        if let registration { loop.deregister(registration) }
        registration = nil
        if fd >= 0 { close(fd) }
        fd = -1
        for timer in timers { loop.cancel(timer) }
        timers = []
    }
}
