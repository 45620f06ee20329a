package plugin

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tunnelwasm/tunnel/internal/plugstats"
)

// Defaults of the containment settings of [Options].
const (
	// DefaultTripFailures is how many failures within DefaultTripWindow
	// trip a plugin.
	DefaultTripFailures = 5
	// DefaultTripWindow is the window in which DefaultTripFailures
	// failures trip a plugin.
	DefaultTripWindow = 10 * time.Second
	// DefaultTripMaxBackoff is the longest a tripped plugin stays tripped:
	// the backoff starts at MinTripBackoff and doubles at every trip that
	// follows a trip without a successful call in between.
	DefaultTripMaxBackoff = time.Minute
	// MinTripBackoff is the first backoff of a plugin that trips.
	MinTripBackoff = time.Second
	// DefaultLogRate is how many log lines (and granted stdout/stderr
	// writes) per second a plugin may produce, on average.
	DefaultLogRate = 100
	// DefaultLogBurst is how many log lines a plugin may produce at once
	// before DefaultLogRate applies.
	DefaultLogBurst = 200
	// LogSuppressedEvery is how often the count of suppressed log lines is
	// reported while a plugin is over its log rate.
	LogSuppressedEvery = time.Second
)

// CPU: each plugin's instances share a wasm.CPUGate of
// wasm.DefaultCPUSlots() slots (GOMAXPROCS-1, at least 1): at most that many
// of its calls compute past their first slice at once, and each such call
// yields its P every slice and is throttled once it has run for long (see
// host/internal/wasm/yield.go), so that a plugin that spins leaves a P and
// most of a CPU to the other routes.

// breaker is a plugin's crash-loop breaker. Failures are counted over a
// sliding window; when TripFailures of them fall within TripWindow the
// plugin trips: for its backoff, new connections are refused (policy close)
// or bypass it (policy bypass), and no instance is made. Once the backoff
// has run out the plugin is on probation: connections use it again, the
// first failure trips it again with twice the backoff (up to
// TripMaxBackoff), and the first connection the guest serves to its end
// without a failure ends the probation, resets the backoff and logs the
// recovery.
type breaker struct {
	probation atomic.Bool // tripped, and no successful call since the backoff ran out

	mu      sync.Mutex
	fails   []time.Time // the most recent failures, oldest first, at most TripFailures
	until   time.Time   // tripped until then
	backoff time.Duration
	trips   int // since the plugin was made
	refused int // connections refused or bypassed while tripped, since the plugin was made
	// Since the last recovery: reported by its log line.
	tripsNow, refusedNow int
}

// now is the plugin's clock (replaced by tests through plugstats.SetClock).
func (p *Plugin) now() time.Time {
	if c := p.clock.Load(); c != nil {
		return (*c)()
	}
	return time.Now()
}

// admit decides whether a new connection may use the plugin. It returns
// how long the plugin stays tripped, or 0 when the connection may use it.
func (p *Plugin) admit() time.Duration {
	b := &p.brk
	if !b.probation.Load() {
		return 0
	}
	now := p.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	left := b.until.Sub(now)
	if left <= 0 {
		return 0
	}
	b.refused++
	b.refusedNow++
	return left
}

// failed records a failed call (or an instance that failed to start) and
// trips the plugin when that makes TripFailures within TripWindow, or when
// it is on probation.
func (p *Plugin) failed() {
	if p.opts.TripFailures < 0 {
		return
	}
	b := &p.brk
	now := p.now()
	b.mu.Lock()
	switch {
	case now.Before(b.until):
		// A connection admitted before the trip: the plugin is tripped
		// already.
		b.mu.Unlock()
		return
	case b.probation.Load():
		b.backoff = min(2*b.backoff, p.opts.TripMaxBackoff)
	default:
		cut := 0
		for cut < len(b.fails) && now.Sub(b.fails[cut]) >= p.opts.TripWindow {
			cut++
		}
		b.fails = append(b.fails[:0], b.fails[cut:]...)
		b.fails = append(b.fails, now)
		if len(b.fails) < p.opts.TripFailures {
			b.mu.Unlock()
			return
		}
		b.backoff = min(MinTripBackoff, p.opts.TripMaxBackoff)
	}
	b.fails = b.fails[:0]
	b.until = now.Add(b.backoff)
	b.trips++
	b.tripsNow++
	b.probation.Store(true)
	backoff, trips := b.backoff, b.tripsNow
	b.mu.Unlock()
	p.log.Error("plugin tripped", "policy", p.policy(), "failures", p.opts.TripFailures,
		"window", p.opts.TripWindow.String(), "backoff", backoff.String(), "trips", trips)
}

// succeeded records a connection the guest served to its end without a
// failure: the first one after a trip's backoff has run out ends the
// probation.
func (p *Plugin) succeeded() {
	b := &p.brk
	if !b.probation.Load() {
		return
	}
	now := p.now()
	b.mu.Lock()
	if !b.probation.Load() || now.Before(b.until) {
		b.mu.Unlock()
		return
	}
	b.probation.Store(false)
	trips, refused := b.tripsNow, b.refusedNow
	b.tripsNow, b.refusedNow, b.backoff = 0, 0, 0
	b.mu.Unlock()
	what := "refused"
	if p.opts.FailOpen {
		what = "bypassed"
	}
	p.log.Info("plugin recovered", "trips", trips, what, refused)
}

func (p *Plugin) policy() string {
	if p.opts.FailOpen {
		return "bypass"
	}
	return "close"
}

// breakerStats returns the breaker's counters (for tests, through plugstats).
func (p *Plugin) breakerStats() plugstats.Breaker {
	b := &p.brk
	now := p.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	return plugstats.Breaker{Trips: b.trips, Refused: b.refused, Tripped: now.Before(b.until), Probation: b.probation.Load()}
}

// logLimiter is a plugin's token bucket on guest log lines and on writes
// to a granted stdout or stderr. What it refuses is counted, and the count
// is logged every LogSuppressedEvery while lines are being suppressed, and
// when the plugin is closed.
type logLimiter struct {
	p *Plugin

	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed int
	timer      *time.Timer // armed while a count is pending
	closed     bool
}

// allow takes a token: false means the line is suppressed (and counted).
func (l *logLimiter) allow() bool {
	now := l.p.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	rate, burst := l.p.opts.LogRate, float64(l.p.opts.LogBurst)
	if l.last.IsZero() {
		l.tokens = burst
	} else if d := now.Sub(l.last); d > 0 {
		l.tokens = min(burst, l.tokens+d.Seconds()*rate)
	}
	l.last = now
	if l.tokens >= 1 {
		l.tokens--
		return true
	}
	l.suppressed++
	if l.timer == nil && !l.closed {
		l.timer = time.AfterFunc(LogSuppressedEvery, l.report)
	}
	return false
}

// report logs the count of suppressed lines, if any.
func (l *logLimiter) report() {
	l.mu.Lock()
	n := l.suppressed
	l.suppressed = 0
	l.timer = nil
	l.mu.Unlock()
	if n > 0 {
		l.p.log.Warn(fmt.Sprintf("plugin %s: %d log lines suppressed", l.p.opts.Name, n),
			"suppressed", n, "log_rate", l.p.opts.LogRate, "log_burst", l.p.opts.LogBurst)
	}
}

// close reports what is pending and stops the timer.
func (l *logLimiter) close() {
	l.mu.Lock()
	l.closed = true
	if l.timer != nil {
		l.timer.Stop()
	}
	l.mu.Unlock()
	l.report()
}

// limitedWriter is a granted stdout or stderr under the plugin's log rate:
// a write the limiter refuses is dropped (and counted), and reported as
// written so that the guest carries on.
type limitedWriter struct {
	w io.Writer
	l *logLimiter
}

// Write passes p on when the limiter allows it.
func (w limitedWriter) Write(p []byte) (int, error) {
	if !w.l.allow() {
		return len(p), nil
	}
	return w.w.Write(p)
}
