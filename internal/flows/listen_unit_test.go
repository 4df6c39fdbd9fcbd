package flows

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"

	nflog "github.com/florianl/go-nflog/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// TestListenerErrorPolicy checks which receive errors keep go-nflog's loop going (0) and how they
// are counted, without a kernel.
func TestListenerErrorPolicy(t *testing.T) {
	recvErr := func(err error) error { return &netlink.OpError{Op: "receive", Err: os.NewSyscallError("recvmsg", err)} }
	live := context.Background()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name  string
		ctx   context.Context
		err   error
		ret   int
		stats ListenerStats
		fatal bool
	}{
		{name: "overflow", ctx: live, err: recvErr(unix.ENOBUFS), stats: ListenerStats{Overflows: 1}},
		{name: "other error", ctx: live, err: recvErr(unix.EIO), stats: ListenerStats{Errors: 1}},
		{name: "timeout", ctx: live, err: recvErr(os.ErrDeadlineExceeded)},
		{name: "anything once cancelled", ctx: done, err: recvErr(unix.EIO)},
		{name: "closed socket once cancelled", ctx: done, err: &netlink.OpError{Op: "receive", Err: net.ErrClosed}},
		{name: "closed socket while live is fatal", ctx: live, err: &netlink.OpError{Op: "receive", Err: net.ErrClosed}, ret: 1, fatal: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &Listener{fatal: make(chan error, 1)}
			if ret := l.onError(tt.ctx, tt.err); ret != tt.ret {
				t.Errorf("onError(%v) = %d, want %d", tt.err, ret, tt.ret)
			}
			if st := l.Stats(); st != tt.stats {
				t.Errorf("Stats = %+v, want %+v", st, tt.stats)
			}
			if fatal := len(l.fatal) == 1; fatal != tt.fatal {
				t.Errorf("fatal = %v, want %v", fatal, tt.fatal)
			}
		})
	}
	// A run of errors backs off but still returns 0, and a success resets the streak.
	l := &Listener{fatal: make(chan error, 1), handle: func(Packet) {}}
	for range 5 {
		if l.onError(live, errors.New("boom")) != 0 {
			t.Fatal("a generic error stopped the loop")
		}
	}
	if l.errStreak != 5 || l.Stats().Errors != 5 {
		t.Errorf("streak %d, stats %+v", l.errStreak, l.Stats())
	}
	payload := ipv4(ProtoTCP, nil, 0, ports(1, 2, 16), 0)
	prefix := "p"
	if l.hook(nflog.Attribute{Payload: &payload, Prefix: &prefix}) != 0 || l.errStreak != 0 {
		t.Errorf("hook: streak %d", l.errStreak)
	}
}

// TestListenerHook checks how go-nflog attributes become packets and counters.
func TestListenerHook(t *testing.T) {
	var got []Packet
	l := &Listener{handle: func(p Packet) { got = append(got, p) }}
	tcp := ipv4(ProtoTCP, nil, 0, ports(1, 2, 16), 0)
	v6 := append([]byte{0x60}, make([]byte, 39)...)
	short := tcp[:10]
	prefix := "podnet-x"
	l.hook(nflog.Attribute{Payload: &tcp, Prefix: &prefix})
	l.hook(nflog.Attribute{Payload: &tcp}) // no prefix
	l.hook(nflog.Attribute{Payload: &v6})
	l.hook(nflog.Attribute{Payload: &short})
	l.hook(nflog.Attribute{})
	want := ListenerStats{Packets: 2, NotIPv4: 1, Malformed: 2}
	if st := l.Stats(); st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}
	if len(got) != 2 || got[0].Prefix != prefix || got[1].Prefix != "" || got[0].DstPort != 2 || got[0].Time.IsZero() {
		t.Errorf("packets %+v", got)
	}
	if l.Dropped() != 2 {
		t.Errorf("Dropped = %d, want 2", l.Dropped())
	}
	l.stopped = true
	l.hook(nflog.Attribute{Payload: &tcp})
	if len(got) != 2 {
		t.Error("handle called after stop")
	}
}
