// Package runner coalesces "something changed" signals into syncs: at most one sync per
// MinInterval, a periodic full resync every MaxInterval, and retries with exponential backoff when
// a sync fails. Informer handlers call Request and return at once; all kernel work happens in the
// sync function, on the runner's own goroutine.
package runner

import (
	"context"
	"log/slog"
	"time"
)

// Runner runs one sync function under a bounded frequency.
type Runner struct {
	name        string
	fn          func(ctx context.Context) error
	minInterval time.Duration
	maxInterval time.Duration
	maxBackoff  time.Duration
	kick        chan struct{}
	log         *slog.Logger
}

// New makes a runner; fn is never called concurrently with itself.
func New(name string, fn func(ctx context.Context) error, minInterval, maxInterval time.Duration, log *slog.Logger) *Runner {
	if log == nil {
		log = slog.Default()
	}
	return &Runner{name: name, fn: fn, minInterval: minInterval, maxInterval: maxInterval,
		maxBackoff: 10 * time.Second, kick: make(chan struct{}, 1), log: log}
}

// Request asks for a sync soon; it never blocks and coalesces with pending requests.
func (r *Runner) Request() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run calls fn once at start and then whenever requested, until ctx is done.
func (r *Runner) Run(ctx context.Context) {
	var last time.Time
	backoff := time.Duration(0)
	periodic := time.NewTimer(r.maxInterval)
	defer periodic.Stop()
	pending := true
	for {
		if pending {
			if wait := r.minInterval - time.Since(last); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
			last = time.Now()
			err := r.fn(ctx)
			if ctx.Err() != nil {
				return
			}
			pending = false
			if err != nil {
				if backoff == 0 {
					backoff = r.minInterval
					if backoff < 50*time.Millisecond {
						backoff = 50 * time.Millisecond
					}
				} else if backoff *= 2; backoff > r.maxBackoff {
					backoff = r.maxBackoff
				}
				r.log.Warn("sync failed, will retry", "runner", r.name, "err", err, "retryIn", backoff)
				go func(d time.Duration) {
					select {
					case <-ctx.Done():
					case <-time.After(d):
						r.Request()
					}
				}(backoff)
			} else {
				backoff = 0
			}
			if !periodic.Stop() {
				select {
				case <-periodic.C:
				default:
				}
			}
			periodic.Reset(r.maxInterval)
		}
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
			pending = true
		case <-periodic.C:
			pending = true
		}
	}
}
