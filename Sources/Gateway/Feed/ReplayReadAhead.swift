/// How many more slices a viewer's replay may read ahead of it: pure arithmetic, so the
/// sharing rule is tested without a socket.
///
/// A lone late viewer gets `perViewer` slices ahead (the next is ready while the loop
/// writes this one); a crowd shares `total` between them, down to one each. Slices still
/// queued for the viewer count against its share. A replay with nothing queued and nothing
/// on its way always gets one, so every viewer moves however many replay at once.
enum ReplayReadAhead {
    static func slicesToGrant(queuedBytes: Int, outstanding: Int, activeReplays: Int, slicesOut: Int,
                              sliceBytes: Int, perViewer: Int, total: Int) -> Int {
        let sliceBytes = max(1, sliceBytes)
        let queuedSlices = (queuedBytes + sliceBytes - 1) / sliceBytes
        let held = queuedSlices + outstanding
        if held == 0 { return max(1, min(perViewer, total - slicesOut)) }
        let share = max(1, min(perViewer, total / max(1, activeReplays)))
        return max(0, min(share - held, total - slicesOut))
    }
}
