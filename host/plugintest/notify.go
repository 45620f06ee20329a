package plugintest

// notifier tells the goroutines waiting for some state to change that it
// changed. The state and the notifier are guarded by their owner's mutex:
// call both methods with it held. The zero value is ready to use.
type notifier struct{ ch chan struct{} }

// changed wakes every waiter.
func (n *notifier) changed() {
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
}

// next returns a channel closed at the next change.
func (n *notifier) next() <-chan struct{} {
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}
