/// Carries a loop-confined object through a `@Sendable` closure to `EventLoop.execute`.
/// The value must only be touched on its loop's thread; this wrapper is the one place that
/// promise is made.
public struct LoopBound<Value>: @unchecked Sendable {
    public let value: Value
    public init(_ value: Value) { self.value = value }
}
