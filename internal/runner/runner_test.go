package runner

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestCoalescesRequests(t *testing.T) {
	var calls atomic.Int32
	r := New("t", func(context.Context) error { calls.Add(1); return nil }, 100*time.Millisecond, time.Hour, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	for i := 0; i < 50; i++ {
		r.Request()
	}
	time.Sleep(350 * time.Millisecond)
	// One initial sync plus at most a few coalesced ones, never 50.
	if n := calls.Load(); n < 2 || n > 4 {
		t.Fatalf("calls = %d, want 2..4 (initial + coalesced)", n)
	}
}

func TestRetriesFailures(t *testing.T) {
	var calls atomic.Int32
	r := New("t", func(context.Context) error {
		if calls.Add(1) < 3 {
			return errors.New("boom")
		}
		return nil
	}, 10*time.Millisecond, time.Hour, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for calls.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if calls.Load() < 3 {
		t.Fatalf("failed sync was not retried: %d calls", calls.Load())
	}
}

func TestPeriodicResync(t *testing.T) {
	var calls atomic.Int32
	r := New("t", func(context.Context) error { calls.Add(1); return nil }, time.Millisecond, 30*time.Millisecond, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	time.Sleep(200 * time.Millisecond)
	if calls.Load() < 3 {
		t.Fatalf("no periodic resync: %d calls", calls.Load())
	}
}
