package flows

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	nflog "github.com/florianl/go-nflog/v2"
	"golang.org/x/sys/unix"
)

// Snaplen is how many bytes of each logged packet the kernel copies to a Listener: enough for an
// IPv4 header with options and the ports after it.
const Snaplen = 128

// readBuffer is the socket receive buffer a Listener asks for (SO_RCVBUFFORCE, as root), so a
// burst of logged packets is queued rather than dropped while the handler catches up.
const readBuffer = 1 << 20

// ListenerStats counts what a Listener has received. All counters only grow.
type ListenerStats struct {
	// Packets is how many IPv4 packets were passed to the handler.
	Packets uint64
	// NotIPv4 is how many logged packets were skipped because they were not IPv4 (e.g. IPv6
	// packets logged to the same group from an inet table).
	NotIPv4 uint64
	// Malformed is how many messages were skipped because they had no payload or a payload
	// ParsePacket rejects.
	Malformed uint64
	// Overflows is how many times the kernel reported (ENOBUFS) that it dropped log messages
	// because the socket's receive buffer was full. Each overflow loses one or more packets;
	// the kernel does not say how many.
	Overflows uint64
	// Errors is how many other errors receiving from the netlink socket returned. The listener
	// keeps going after each (with a short pause after repeated ones).
	Errors uint64
}

// ErrGroupRefused is returned by Start (and Listen) when the kernel refuses to bind the group
// (EPERM): another socket in the namespace has it, or the caller lacks CAP_NET_ADMIN there.
var ErrGroupRefused = errors.New("group refused: bound by another socket in this network namespace, or no CAP_NET_ADMIN")

// Listener receives the packets the kernel logs to one NFLOG group in one network namespace. It is
// made by Start and runs until its context is done.
type Listener struct {
	group  uint16
	nf     *nflog.Nflog
	handle func(Packet)
	done   chan struct{}
	err    error // set before done is closed

	// stopMu guards stopped: the receive goroutine holds it shared while calling handle, and
	// stopping takes it exclusively, so once stopping has taken it handle is never called again.
	stopMu  sync.RWMutex
	stopped bool

	fatal     chan error // the receive loop's reason to stop, other than the context (buffered 1)
	errStreak int        // consecutive receive errors; only touched by the receive goroutine

	packets, notIPv4, malformed, overflows, errors atomic.Uint64
}

// Listen receives the packets the kernel logs to NFLOG group in the network namespace netnsFD (an
// open namespace file descriptor; 0 or -1 means the caller's namespace) and calls handle for each IPv4
// packet, until ctx is done. It returns nil when ctx is done, or an error if the group could not be
// bound (ErrGroupRefused: another socket in that namespace has it) or receiving failed for good.
// See Start.
func Listen(ctx context.Context, netnsFD int, group uint16, handle func(Packet)) error {
	l, err := Start(ctx, netnsFD, group, handle)
	if err != nil {
		return err
	}
	return l.Wait()
}

// Start binds a netlink socket, created in the network namespace netnsFD (0 = the caller's), to
// NFLOG group and receives the packets logged to it in the background until ctx is done. It returns
// once the group is bound, so packets logged after Start returns are received.
//
// Semantics:
//   - NFLOG groups are per network namespace: listeners in different namespaces may use the same
//     group number at once, and each receives only what its own namespace logs. Within a namespace
//     a group has at most one listener; binding a second fails (ErrGroupRefused).
//   - While no socket is bound to a group, the kernel discards what is logged to it.
//   - The kernel copies the first Snaplen bytes of each packet and sends each one at once (queue
//     threshold 1) rather than batching them for up to a second.
//   - handle is called on one goroutine, one packet at a time, with the rule's prefix and a
//     timestamp: the kernel's packet timestamp where it gives one (packets logged in the prerouting,
//     input and forward hooks), otherwise the time the packet was received from the socket (output
//     and postrouting hooks). A handle that blocks delays receiving; the kernel then drops what does
//     not fit in the socket buffer (counted in Stats().Overflows). Non-IPv4 and unparseable packets
//     are counted and skipped.
//   - Receive errors, above all ENOBUFS on overflow, are counted and do not stop the listener.
//   - When ctx is done the listener stops: it waits for a handle call in progress to return, then
//     closes the socket, which unbinds the group, and closes Done; handle is not called after that.
//
// A negative netnsFD is taken as 0, like the other namespace-bound handles in podnet. The log rule
// should leave the snaplen and queue threshold unset (NFTA_LOG_SNAPLEN, NFTA_LOG_QTHRESHOLD): set
// there, they override the listener's per-group settings.
func Start(ctx context.Context, netnsFD int, group uint16, handle func(Packet)) (*Listener, error) {
	nf, err := nflog.Open(&nflog.Config{
		NetNS:    max(netnsFD, 0),
		Group:    group,
		Copymode: nflog.CopyPacket,
		Bufsize:  Snaplen, // go-nflog's name for the copy range (NFULA_CFG_MODE copy_range)
		QThresh:  1,
	})
	if err != nil {
		return nil, fmt.Errorf("nflog group %d: open netlink socket: %w", group, err)
	}
	l := &Listener{
		group:  group,
		nf:     nf,
		handle: handle,
		done:   make(chan struct{}),
		fatal:  make(chan error, 1),
	}
	l.setReadBuffer()

	// go-nflog stops its receive loop when this context is done; it is cancelled on ctx or on a
	// fatal receive error.
	rctx, cancel := context.WithCancel(ctx)
	if err := nf.RegisterWithErrorFunc(rctx, l.hook, func(err error) int { return l.onError(rctx, err) }); err != nil {
		cancel()
		nf.Con.Close()
		// go-nflog formats (%v) rather than wraps the kernel's error, so match its text.
		if errors.Is(err, unix.EPERM) || strings.Contains(err.Error(), unix.EPERM.Error()) {
			return nil, fmt.Errorf("nflog group %d: %w (%v)", group, ErrGroupRefused, err)
		}
		return nil, fmt.Errorf("nflog group %d: %w", group, err)
	}
	go func() {
		var err error
		select {
		case <-rctx.Done():
		case err = <-l.fatal:
		}
		cancel()
		l.stopMu.Lock() // waits for a handle call in progress
		l.stopped = true
		l.stopMu.Unlock()
		// Close the socket itself rather than nf.Close: that waits on a WaitGroup that go-nflog's
		// receive goroutine adds to after starting, a race if ctx is done at once. Closing the
		// socket unbinds the group in the kernel and ends go-nflog's goroutines (their last
		// calls on the closed socket fail harmlessly).
		nf.Con.Close()
		l.err = err
		close(l.done)
	}()
	return l, nil
}

// Done is closed when the listener has stopped: its socket is closed and handle will not be called
// again.
func (l *Listener) Done() <-chan struct{} { return l.done }

// Wait blocks until the listener has stopped and returns why: nil when its context was done, else
// the receive error that stopped it.
func (l *Listener) Wait() error {
	<-l.done
	return l.err
}

// Group is the NFLOG group the listener is bound to.
func (l *Listener) Group() uint16 { return l.group }

// Stats returns the listener's counters. It is safe to call at any time.
func (l *Listener) Stats() ListenerStats {
	return ListenerStats{
		Packets:   l.packets.Load(),
		NotIPv4:   l.notIPv4.Load(),
		Malformed: l.malformed.Load(),
		Overflows: l.overflows.Load(),
		Errors:    l.errors.Load(),
	}
}

// Dropped is how many times logged packets were lost: kernel overflows (each losing one or more
// packets) plus messages that could not be parsed. Non-IPv4 packets are not counted.
func (l *Listener) Dropped() uint64 { return l.overflows.Load() + l.malformed.Load() }

// hook is go-nflog's callback for each logged packet. It always returns 0: returning anything
// else would stop go-nflog's receive loop.
func (l *Listener) hook(a nflog.Attribute) int {
	l.errStreak = 0
	if a.Payload == nil {
		l.malformed.Add(1)
		return 0
	}
	p, err := ParsePacket(*a.Payload)
	if err != nil {
		if errors.Is(err, ErrNotIPv4) {
			l.notIPv4.Add(1)
		} else {
			l.malformed.Add(1)
		}
		return 0
	}
	if a.Prefix != nil {
		p.Prefix = *a.Prefix
	}
	// The kernel sends NFULA_TIMESTAMP only in the prerouting, input and forward hooks; an skb
	// without a timestamp would show as the epoch.
	if a.Timestamp != nil && a.Timestamp.Unix() > 0 {
		p.Time = *a.Timestamp
	} else {
		p.Time = time.Now()
	}
	l.stopMu.RLock()
	defer l.stopMu.RUnlock()
	if l.stopped {
		return 0
	}
	l.packets.Add(1)
	l.handle(p)
	return 0
}

// onError is go-nflog's callback for each error receiving from the socket; returning 0 keeps its
// receive loop going (it checks ctx before every receive, so it still ends when ctx is done).
func (l *Listener) onError(ctx context.Context, err error) int {
	if ctx.Err() != nil {
		return 0 // the read deadline go-nflog sets to interrupt the receive on cancellation
	}
	var ne net.Error
	switch {
	case errors.Is(err, unix.ENOBUFS):
		l.overflows.Add(1)
		return 0
	case errors.As(err, &ne) && ne.Timeout():
		return 0 // no deadline is set otherwise; harmless
	case errors.Is(err, net.ErrClosed), errors.Is(err, unix.EBADF):
		select {
		case l.fatal <- fmt.Errorf("nflog group %d: receive: %w", l.group, err):
		default:
		}
		return 1
	}
	l.errors.Add(1)
	// Back off on a run of errors so a persistently failing socket does not spin.
	l.errStreak++
	if l.errStreak > 1 {
		pause := min(time.Duration(l.errStreak)*time.Millisecond, 100*time.Millisecond)
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	return 0
}

// setReadBuffer enlarges the socket's receive buffer, beyond net.core.rmem_max where allowed.
// Failing is not an error: the default buffer works, it just overflows sooner.
func (l *Listener) setReadBuffer() {
	if rc, err := l.nf.Con.SyscallConn(); err == nil {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, readBuffer)
		}); err == nil && serr == nil {
			return
		}
	}
	_ = l.nf.Con.SetReadBuffer(readBuffer)
}
