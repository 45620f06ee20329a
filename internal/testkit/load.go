package testkit

import (
	"sync"
	"testing"
	"time"
)

// Load is clients working in a loop while a test changes things under
// them (reloads, swaps): each calls its step with a count until Stop or its
// first error, and the test waits for steps to complete in between.
type Load struct {
	stop     chan struct{}
	progress chan struct{}
	errs     chan error
	wg       sync.WaitGroup
}

// StartLoad starts clients goroutines, client i calling step(i, n) for
// n = 0, 1, ... until Stop; a step's error ends that client and is
// reported by Wait or Stop.
func StartLoad(clients int, step func(client, n int) error) *Load {
	l := &Load{stop: make(chan struct{}), progress: make(chan struct{}, 64), errs: make(chan error, clients)}
	for i := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for n := 0; ; n++ {
				select {
				case <-l.stop:
					return
				default:
				}
				if err := step(i, n); err != nil {
					l.errs <- err
					return
				}
				select {
				case l.progress <- struct{}{}:
				default:
				}
			}
		}()
	}
	return l
}

// Forget drops the completed steps not waited for yet, so that the next
// Wait counts only steps that complete after it.
func (l *Load) Forget() {
	for len(l.progress) > 0 {
		<-l.progress
	}
}

// Wait waits for k more steps to complete, failing t at a client's error
// or when none completes within timeout.
func (l *Load) Wait(t testing.TB, k int, timeout time.Duration) {
	t.Helper()
	for range k {
		select {
		case <-l.progress:
		case err := <-l.errs:
			t.Fatal(err)
		case <-time.After(timeout):
			t.Fatalf("no step of the load completed within %v", timeout)
		}
	}
}

// Stop stops the clients, waits for them and returns their errors.
func (l *Load) Stop() []error {
	close(l.stop)
	l.wg.Wait()
	close(l.errs)
	var errs []error
	for err := range l.errs {
		errs = append(errs, err)
	}
	return errs
}
