#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CSystemShims
import Synchronization

/// A single-threaded reactor: fd readiness, timers and cross-thread tasks, all run on the
/// thread that calls `run()`.
///
/// ```
///   other threads ──execute()──▶ [task queue] ──eventfd──┐
///                                                       ▼
///   fds (sockets, pipes, pidfds) ──epoll (level)──▶  run(): wait ▶ fd handlers ▶ tasks ▶ timers ▶ turn-end hooks
/// ```
///
/// epoll (or poll(2), see `Backend`) is used level-triggered: a handler that leaves bytes unread is simply called again
/// on the next turn, so no "became ready between EAGAIN and wait" race exists. Each
/// registration carries a unique 64-bit id in epoll's user data, and events whose id is no
/// longer registered are dropped, so a reused fd number never receives an old event.
///
/// Everything except `execute(_:)`, `stop()` and `isInLoopThread` must be called on the loop
/// thread; that confinement is why the class is `@unchecked Sendable`.
public final class EventLoop: @unchecked Sendable {
    /// What a registration wants to hear about.
    public struct Interest: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let readable = Interest(rawValue: EventBits.input)
        public static let writable = Interest(rawValue: EventBits.output)
    }

    /// What epoll reported for one fd. `hangup` and `error` are always reported.
    public struct Readiness: Sendable {
        public let rawValue: UInt32
        public var isReadable: Bool { rawValue & EventBits.input != 0 }
        public var isWritable: Bool { rawValue & EventBits.output != 0 }
        public var isHangup: Bool { rawValue & (EventBits.hangup | EventBits.readHangup) != 0 }
        public var isError: Bool { rawValue & EventBits.error != 0 }
    }

    /// A handle to an fd registration; pass it back to `modify` or `deregister`.
    public struct Registration: Hashable, Sendable {
        public let id: UInt64
        public let fd: Int32
    }

    /// A handle to a scheduled timer.
    public struct TimerID: Hashable, Sendable {
        public let id: UInt64
    }

    /// How fd readiness is waited for.
    public enum Backend: Sendable {
        /// epoll (Linux): O(ready) per wait.
        case epoll
        /// poll(2): O(registered) per wait; where epoll does not exist.
        case poll
        /// epoll where the system has it, poll otherwise.
        public static var automatic: Backend { ag_has_epoll() != 0 ? .epoll : .poll }
    }

    public let backend: Backend
    private let epollFD: Int32
    private let wakeFD: Int32
    /// The write end of the wake-up pipe where there is no eventfd (wakeFD is its read end).
    private let wakeWriteFD: Int32
    /// Registrations as poll(2) needs them: id → (fd, interest).
    private var pollRegistrations: [UInt64: (fd: Int32, events: UInt32)] = [:]
    private var handlers: [UInt64: (Readiness) -> Void] = [:]
    private var nextID: UInt64 = 1
    private var timers = TimerHeap()
    private var timerCallbacks: [UInt64: () -> Void] = [:]
    private var turnEndHooks: [() -> Void] = []
    private let pending = Mutex<[@Sendable () -> Void]>([])
    private let stopRequested = Atomic<Bool>(false)
    private let loopThread = Atomic<UInt>(0)
    private static let wakeID: UInt64 = 0

    /// One read buffer shared by every socket of this loop: reads happen one at a time on the
    /// loop thread, so an idle connection needs no buffer of its own.
    public let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 * 1024, alignment: 16)

    /// Also ignores SIGPIPE process-wide: a write to a closed pipe or socket must fail with
    /// EPIPE, not kill the server. (Children get default dispositions back at spawn.)
    public init(backend: Backend = .automatic) throws(SystemError) {
        ag_ignore_sigpipe()
        self.backend = backend
        if backend == .epoll {
            epollFD = ag_epoll_create()
            guard epollFD >= 0 else { throw SystemError.last("epoll_create1") }
        } else {
            epollFD = -1
        }
        var wake = ag_eventfd()
        var wakeWrite = wake
        if wake < 0 {
            guard let pipe = try? FileDescriptor.pipe(nonBlockingRead: true, nonBlockingWrite: true) else {
                let error = SystemError.last("pipe")
                if epollFD >= 0 { close(epollFD) }
                throw error
            }
            wake = pipe.read
            wakeWrite = pipe.write
        }
        wakeFD = wake
        wakeWriteFD = wakeWrite
        if backend == .epoll {
            // Every property is set here, so a throw runs deinit, which closes the fds.
            guard ag_epoll_ctl(epollFD, EventBits.controlAdd, wakeFD, EventBits.input, Self.wakeID) == 0 else {
                throw SystemError.last("epoll_ctl")
            }
        }
    }

    deinit {
        readBuffer.deallocate()
        close(wakeFD)
        if wakeWriteFD != wakeFD { close(wakeWriteFD) }
        if epollFD >= 0 { close(epollFD) }
    }

    // MARK: fds

    /// Watches `fd`. The loop does not own the fd: deregister before closing it.
    public func register(
        fd: Int32, interest: Interest, handler: @escaping (Readiness) -> Void
    ) throws(SystemError) -> Registration {
        let id = nextID
        nextID += 1
        if backend == .epoll {
            guard ag_epoll_ctl(epollFD, EventBits.controlAdd, fd, interest.rawValue | EventBits.readHangup, id) == 0 else {
                throw SystemError.last("epoll_ctl(ADD)")
            }
        } else {
            pollRegistrations[id] = (fd, interest.rawValue)
        }
        handlers[id] = handler
        return Registration(id: id, fd: fd)
    }

    public func modify(_ registration: Registration, interest: Interest) throws(SystemError) {
        if backend == .poll {
            pollRegistrations[registration.id] = (registration.fd, interest.rawValue)
            return
        }
        guard ag_epoll_ctl(
            epollFD, EventBits.controlModify, registration.fd, interest.rawValue | EventBits.readHangup, registration.id
        ) == 0 else {
            throw SystemError.last("epoll_ctl(MOD)")
        }
    }

    /// Stops watching; safe to call twice and from inside the fd's own handler.
    public func deregister(_ registration: Registration) {
        guard handlers.removeValue(forKey: registration.id) != nil else { return }
        if backend == .poll {
            pollRegistrations[registration.id] = nil
        } else {
            _ = ag_epoll_ctl(epollFD, EventBits.controlDelete, registration.fd, 0, 0)
        }
    }

    /// Number of live fd registrations (for tests and metrics).
    public var registrationCount: Int { handlers.count }

    // MARK: timers

    /// Runs `body` on the loop after `nanoseconds`.
    @discardableResult
    public func schedule(afterNanoseconds nanoseconds: UInt64, _ body: @escaping () -> Void) -> TimerID {
        let id = nextID
        nextID += 1
        timerCallbacks[id] = body
        timers.push(.init(deadline: MonotonicClock.nanoseconds() &+ nanoseconds, id: id))
        return TimerID(id: id)
    }

    @discardableResult
    public func schedule(afterMilliseconds ms: Int, _ body: @escaping () -> Void) -> TimerID {
        schedule(afterNanoseconds: UInt64(max(0, ms)) * 1_000_000, body)
    }

    public func cancel(_ timer: TimerID) {
        timerCallbacks[timer.id] = nil
    }

    /// Runs `body` once after the fd handlers of the current turn, before waiting again:
    /// the place to flush work batched during the turn.
    public func atEndOfTurn(_ body: @escaping () -> Void) {
        turnEndHooks.append(body)
    }

    // MARK: cross-thread

    /// Runs `body` on the loop thread soon. Safe from any thread.
    public func execute(_ body: @escaping @Sendable () -> Void) {
        pending.withLock { $0.append(body) }
        wake()
    }

    /// Makes `run()` return after the current turn. Safe from any thread.
    public func stop() {
        stopRequested.store(true, ordering: .sequentiallyConsistent)
        wake()
    }

    public var isInLoopThread: Bool {
        loopThread.load(ordering: .relaxed) == UInt(bitPattern: Int(bitPattern: pthread_self()))
    }

    private func wake() {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { write(wakeWriteFD, $0.baseAddress, wakeWriteFD == wakeFD ? 8 : 1) }
    }

    // MARK: running

    /// Serves events on the calling thread until `stop()`.
    public func run() {
        stopRequested.store(false, ordering: .sequentiallyConsistent)
        loopThread.store(UInt(bitPattern: Int(bitPattern: pthread_self())), ordering: .relaxed)
        defer { loopThread.store(0, ordering: .relaxed) }
        while !stopRequested.load(ordering: .sequentiallyConsistent) {
            runOnce(timeoutMilliseconds: nil)
        }
    }

    /// Runs turns until `condition` holds or `timeoutMilliseconds` pass; returns whether the
    /// condition held. For tests and one-shot command-line use.
    @discardableResult
    public func run(untilMilliseconds timeoutMilliseconds: Int, _ condition: () -> Bool) -> Bool {
        loopThread.store(UInt(bitPattern: Int(bitPattern: pthread_self())), ordering: .relaxed)
        defer { loopThread.store(0, ordering: .relaxed) }
        let deadline = MonotonicClock.nanoseconds() + UInt64(timeoutMilliseconds) * 1_000_000
        while !condition() {
            let now = MonotonicClock.nanoseconds()
            if now >= deadline { return false }
            runOnce(timeoutMilliseconds: Int((deadline - now) / 1_000_000) + 1)
        }
        return true
    }

    /// Ready fds taken per turn (64). The loop is level-triggered, so the rest are taken next
    /// turn, after timers and cross-thread tasks: a burst of a thousand handshakes costs many
    /// short turns, not one long one that every client waits behind.
    /// Work a turn does on deferrable work (replay slices) before it leaves the rest for the
    /// next (4 ms). Ready fds are all handled: epoll reports them in the same order each time,
    /// so skipping the tail of a batch would starve it behind a busy first fd.
    public static let turnBudgetNanoseconds: UInt64 = 4_000_000
    private var eventBits = [UInt32](repeating: 0, count: 64)
    private var eventData = [UInt64](repeating: 0, count: 64)

    /// One turn: wait (bounded by the next timer), dispatch fd events, tasks, due timers, then
    /// end-of-turn hooks.
    public func runOnce(timeoutMilliseconds: Int?) {
        // Called on its own (a test stepping the loop), it is the loop thread for the turn.
        let me = UInt(bitPattern: Int(bitPattern: pthread_self()))
        let entered = loopThread.compareExchange(expected: 0, desired: me, ordering: .relaxed).exchanged
        defer { if entered { loopThread.store(0, ordering: .relaxed) } }
        var timeout = timeoutMilliseconds ?? -1
        if let next = nextTimerDeadline() {
            let now = MonotonicClock.nanoseconds()
            let untilTimer = next > now ? Int((next - now + 999_999) / 1_000_000) : 0
            timeout = timeout < 0 ? untilTimer : min(timeout, untilTimer)
        }
        if !turnEndHooks.isEmpty { timeout = 0 }
        timeout = min(timeout, Int(Int32.max))

        let count = backend == .epoll ? waitEpoll(timeout) : waitPoll(timeout)
        let turnStart = MonotonicClock.nanoseconds()
        currentTurnStart = turnStart
        let turnCPUStart = Self.threadCPUNanoseconds()
        defer { noteTurn(MonotonicClock.nanoseconds() - turnStart, cpu: Self.threadCPUNanoseconds() - turnCPUStart) }
        if count > 0 {
            for index in 0..<count {
                let id = eventData[index]
                if id == Self.wakeID {
                    var value: UInt64 = 0
                    _ = withUnsafeMutableBytes(of: &value) { read(wakeFD, $0.baseAddress, 8) }
                    continue
                }
                // A handler earlier in this batch may have deregistered this one.
                guard let handler = handlers[id] else { continue }
                handler(Readiness(rawValue: eventBits[index]))
            }
        }
        runPendingTasks()
        runDueTimers()
        runTurnEndHooks()
    }

    /// The longest turn (its work, not its wait) since the last `takeLongestTurnMilliseconds`,
    /// and how many turns took more than 10 ms: a loop turn is what every client waits for.
    private var longestTurnNanoseconds: UInt64 = 0
    private var currentTurnStart: UInt64 = 0

    /// Time since the current turn began: work that can wait (replay slices) stops at the
    /// turn budget and goes on next turn.
    public var turnElapsedNanoseconds: UInt64 { MonotonicClock.nanoseconds() &- currentTurnStart }
    public private(set) var turnsOver10Milliseconds = 0
    /// The same in the loop thread's CPU time: what the turn's own work took, without the
    /// time the thread waited for a core (on a busy machine a turn can be preempted).
    private var longestTurnCPUNanoseconds: UInt64 = 0
    public private(set) var turnsOver10MillisecondsOfCPU = 0

    private func noteTurn(_ nanoseconds: UInt64, cpu: UInt64) {
        if nanoseconds > longestTurnNanoseconds { longestTurnNanoseconds = nanoseconds }
        if nanoseconds > 10_000_000 { turnsOver10Milliseconds += 1 }
        if cpu > longestTurnCPUNanoseconds { longestTurnCPUNanoseconds = cpu }
        if cpu > 10_000_000 { turnsOver10MillisecondsOfCPU += 1 }
    }

    private static func threadCPUNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
        return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
    }

    /// The longest turn since the last call in the loop thread's CPU time, in whole
    /// milliseconds (rounded up), and resets it.
    public func takeLongestTurnCPUMilliseconds() -> Int {
        let longest = longestTurnCPUNanoseconds
        longestTurnCPUNanoseconds = 0
        return Int((longest + 999_999) / 1_000_000)
    }

    /// The longest turn since the last call, in whole milliseconds (rounded up), and resets it.
    public func takeLongestTurnMilliseconds() -> Int {
        let longest = longestTurnNanoseconds
        longestTurnNanoseconds = 0
        return Int((longest + 999_999) / 1_000_000)
    }

    private func waitEpoll(_ timeout: Int) -> Int {
        let count = eventBits.withUnsafeMutableBufferPointer { bits in
            eventData.withUnsafeMutableBufferPointer { data in
                ag_epoll_wait(epollFD, bits.baseAddress, data.baseAddress, Int32(bits.count), Int32(timeout))
            }
        }
        return Int(max(0, count))
    }

    /// poll(2) over every registration; results are written where epoll's would be.
    private func waitPoll(_ timeout: Int) -> Int {
        var ids: [UInt64] = [Self.wakeID]
        var fds = [pollfd(fd: wakeFD, events: Int16(EventBits.input), revents: 0)]
        for (id, registration) in pollRegistrations {
            ids.append(id)
            fds.append(pollfd(fd: registration.fd, events: Int16(truncatingIfNeeded: registration.events), revents: 0))
        }
        let ready = fds.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), Int32(timeout)) }
        guard ready > 0 else { return 0 }
        if eventBits.count < fds.count {
            eventBits = [UInt32](repeating: 0, count: fds.count)
            eventData = [UInt64](repeating: 0, count: fds.count)
        }
        var count = 0
        for (index, entry) in fds.enumerated() where entry.revents != 0 {
            eventBits[count] = UInt32(UInt16(bitPattern: entry.revents))
            eventData[count] = ids[index]
            count += 1
        }
        return count
    }

    private func nextTimerDeadline() -> UInt64? {
        while let first = timers.first, timerCallbacks[first.id] == nil {
            _ = timers.popFirst()
        }
        return timers.first?.deadline
    }

    private func runPendingTasks() {
        let tasks = pending.withLock { tasks -> [@Sendable () -> Void] in
            let taken = tasks
            tasks.removeAll()
            return taken
        }
        for task in tasks { task() }
    }

    private func runDueTimers() {
        let now = MonotonicClock.nanoseconds()
        while let first = timers.first, first.deadline <= now {
            _ = timers.popFirst()
            if let callback = timerCallbacks.removeValue(forKey: first.id) {
                callback()
            }
        }
    }

    private func runTurnEndHooks() {
        while !turnEndHooks.isEmpty {
            let hooks = turnEndHooks
            turnEndHooks.removeAll()
            for hook in hooks { hook() }
        }
    }
}

/// Readiness bits. poll(2) and epoll share these values on Linux (POLLIN == EPOLLIN, …).
enum EventBits {
    static let input: UInt32 = 0x001
    static let output: UInt32 = 0x004
    static let error: UInt32 = 0x008
    static let hangup: UInt32 = 0x010
    static let readHangup: UInt32 = 0x2000
    /// epoll_ctl operations (EPOLL_CTL_ADD, _DEL, _MOD), spelled out so this file compiles
    /// where <sys/epoll.h> does not exist.
    static let controlAdd: Int32 = 1
    static let controlDelete: Int32 = 2
    static let controlModify: Int32 = 3
}
