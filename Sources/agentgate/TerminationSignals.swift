import AgentCore
import Dispatch
import EventLoop
import Foundation

/// SIGINT and SIGTERM become a call of `handler` on the loop, with the job manager, instead
/// of ending the process: its jobs would be orphaned otherwise. Keep the returned sources
/// until the loop is done, then cancel them.
/// SIGHUP becomes a call of `handler` on the loop (the operator's "read your configuration
/// again").
func handleReloadSignal(loop: EventLoop, manager: JobManager, _ handler: @escaping @Sendable (JobManager) -> Void) -> DispatchSourceSignal {
    signal(SIGHUP, SIG_IGN)
    let bound = LoopBound(manager)
    let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
    source.setEventHandler { loop.execute { handler(bound.value) } }
    source.resume()
    return source
}

func handleTerminationSignals(
    loop: EventLoop, manager: JobManager, _ handler: @escaping @Sendable (JobManager) -> Void
) -> [DispatchSourceSignal] {
    signal(SIGINT, SIG_IGN)
    signal(SIGTERM, SIG_IGN)
    let bound = LoopBound(manager)
    return [SIGINT, SIGTERM].map { number in
        let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
        source.setEventHandler {
            loop.execute { handler(bound.value) }
        }
        source.resume()
        return source
    }
}
