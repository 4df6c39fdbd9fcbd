package flows

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/podnet/podnet/internal/netnsutil"
	"github.com/podnet/podnet/internal/nstest"
)

// testGroup is the NFLOG group the kernel tests log to. Every test namespace uses the same one,
// which is also what the lab does with one agent per node namespace.
const testGroup = 7

// logNS is a fresh network namespace whose nftables table logs (to testGroup) and drops, to
// 127.0.0.1: TCP port OutPort in the output hook with prefix OutPrefix, TCP port InPort in the
// input hook with prefix InPrefix, and UDP port UDPPort in the output hook with prefix UDPPrefix.
type logNS struct {
	Name, Path string
	FD         int

	OutPort, InPort, UDPPort       uint16
	OutPrefix, InPrefix, UDPPrefix string
}

// newLogNS makes a logNS (named after nsPrefix) whose rules log with logPrefix (output hook) and
// logPrefix+"-in" (input hook). The namespace, and with it the table, is removed when the test
// ends, failed or not. It skips the test when not root.
func newLogNS(t *testing.T, nsPrefix, logPrefix string) *logNS {
	t.Helper()
	name, path := nstest.New(t, nsPrefix)
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() }) // before the namespace is deleted (cleanups run last-in first-out)
	n := &logNS{Name: name, Path: path, FD: int(h), OutPort: 8081, InPort: 8082, UDPPort: 8083,
		OutPrefix: logPrefix, InPrefix: logPrefix + "-in", UDPPrefix: logPrefix + "-udp"}

	c, err := nftables.New(nftables.WithNetNSFd(n.FD))
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	rand.Read(b)
	table := c.AddTable(&nftables.Table{Name: "podnet-flows-test-" + hex.EncodeToString(b), Family: nftables.TableFamilyIPv4})
	accept := nftables.ChainPolicyAccept
	chains := map[*nftables.ChainHook]*nftables.Chain{}
	for _, hook := range []*nftables.ChainHook{nftables.ChainHookOutput, nftables.ChainHookInput} {
		chains[hook] = c.AddChain(&nftables.Chain{Name: fmt.Sprintf("hook%d", *hook), Table: table, Type: nftables.ChainTypeFilter,
			Hooknum: hook, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	}
	for _, h := range []struct {
		hook   *nftables.ChainHook
		proto  byte
		port   uint16
		prefix string
	}{
		{nftables.ChainHookOutput, unix.IPPROTO_TCP, n.OutPort, n.OutPrefix},
		{nftables.ChainHookInput, unix.IPPROTO_TCP, n.InPort, n.InPrefix},
		{nftables.ChainHookOutput, unix.IPPROTO_UDP, n.UDPPort, n.UDPPrefix},
	} {
		// ip daddr 127.0.0.1 <proto> dport <port> log group <testGroup> prefix "<prefix>" drop
		c.AddRule(&nftables.Rule{Table: table, Chain: chains[h.hook], Exprs: []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{127, 0, 0, 1}},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{h.proto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, h.port)},
			&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX, Group: testGroup, Data: []byte(h.prefix)},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
	}
	if err := c.Flush(); err != nil {
		t.Fatalf("program the test table in %s: %v", name, err)
	}
	return n
}

// connect makes a TCP connection attempt from inside n to 127.0.0.1:port, which the table drops.
func (n *logNS) connect(t *testing.T, port uint16) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	c, err := netnsutil.DialContext(ctx, n.Path, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err == nil {
		c.Close()
		t.Fatalf("connected to 127.0.0.1:%d in %s: the table should drop it", port, n.Name)
	}
}

// start starts a Listener in n on testGroup that sends what it receives to the returned channel.
// It is stopped when the test ends.
func (n *logNS) start(t *testing.T) (*Listener, <-chan Packet) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan Packet, 64)
	l, err := Start(ctx, n.FD, testGroup, func(p Packet) {
		select {
		case ch <- p:
		default:
			t.Errorf("test packet channel full, dropped %+v", p)
		}
	})
	if err != nil {
		cancel()
		t.Fatalf("Start in %s: %v", n.Name, err)
	}
	t.Cleanup(func() {
		cancel()
		if err := l.Wait(); err != nil {
			t.Errorf("listener in %s: %v", n.Name, err)
		}
	})
	return l, ch
}

// next returns the next packet from ch, failing after a few seconds.
func next(t *testing.T, ch <-chan Packet) Packet {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-time.After(3 * time.Second):
		t.Fatal("no logged packet within 3s")
		return Packet{}
	}
}

// checkPacket checks that p is the SYN of a connection attempt to 127.0.0.1:port logged with
// prefix, at about the time since which it was sent.
func checkPacket(t *testing.T, p Packet, prefix string, port uint16, since time.Time) {
	t.Helper()
	lo := netip.MustParseAddr("127.0.0.1")
	if p.Prefix != prefix || p.Src != lo || p.Dst != lo || p.Protocol != ProtoTCP || p.DstPort != port || p.SrcPort == 0 {
		t.Errorf("got %+v, want prefix %q, 127.0.0.1 -> 127.0.0.1:%d TCP from some port", p, prefix, port)
	}
	// A kernel timestamp (input hook) may predate our clock reading by a little.
	if p.Time.Before(since.Add(-time.Second)) || p.Time.After(time.Now().Add(time.Second)) {
		t.Errorf("packet time %v, want between %v and now (%v)", p.Time, since, time.Now())
	}
}

func TestListenReceivesLoggedPackets(t *testing.T) {
	n := newLogNS(t, "flows", "podnet-test")
	l, ch := n.start(t)
	if l.Group() != testGroup {
		t.Errorf("Group() = %d", l.Group())
	}
	for _, c := range []struct {
		hook   string
		port   uint16
		prefix string
	}{{"output", n.OutPort, n.OutPrefix}, {"input", n.InPort, n.InPrefix}} {
		t.Run(c.hook, func(t *testing.T) {
			since := time.Now()
			n.connect(t, c.port)
			checkPacket(t, next(t, ch), c.prefix, c.port, since)
			// The SYN is retransmitted after 1s; the 200ms attempt must have produced only one.
			select {
			case p := <-ch:
				t.Errorf("unexpected second packet %+v", p)
			case <-time.After(100 * time.Millisecond):
			}
		})
	}
	if st := l.Stats(); st.Packets != 2 || st.NotIPv4+st.Malformed+st.Overflows+st.Errors != 0 || l.Dropped() != 0 {
		t.Errorf("Stats = %+v, want 2 packets and nothing else", st)
	}
}

func TestListenStopsOnCancel(t *testing.T) {
	n := newLogNS(t, "flows", "podnet-test")
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan Packet, 16)
	errc := make(chan error, 1)
	go func() { errc <- Listen(ctx, n.FD, testGroup, func(p Packet) { got <- p }) }()

	// Listen gives no signal that it is bound: retry until a packet comes through.
	deadline := time.Now().Add(5 * time.Second)
	for received := false; !received; {
		if time.Now().After(deadline) {
			t.Fatal("Listen received nothing within 5s")
		}
		n.connect(t, n.OutPort)
		select {
		case <-got:
			received = true
		case <-time.After(50 * time.Millisecond):
		}
	}

	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Listen returned %v after cancel, want nil", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Listen did not return within 3s of cancel")
	}
	// Stopped means unbound: the group can be bound again at once, and nothing more reaches
	// the old handler.
	for len(got) > 0 {
		<-got
	}
	_, ch := n.start(t)
	n.connect(t, n.OutPort)
	next(t, ch)
	if len(got) != 0 {
		t.Error("the stopped listener's handler was called")
	}
}

func TestListenCancelledAtOnce(t *testing.T) {
	n := newLogNS(t, "flows", "podnet-test")
	for range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		l, err := Start(ctx, n.FD, testGroup, func(Packet) {})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		cancel()
		select {
		case <-l.Done():
		case <-time.After(3 * time.Second):
			t.Fatal("listener did not stop within 3s of cancel")
		}
		if err := l.Wait(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestListenGroupPerNamespace runs listeners on the same group in two namespaces at once, as the
// lab does with one agent per node namespace in one process: each receives only what its own
// namespace logs. A second listener on the group in the same namespace is refused.
func TestListenGroupPerNamespace(t *testing.T) {
	a, b := newLogNS(t, "flowsa", "podnet-a"), newLogNS(t, "flowsb", "podnet-b")
	la, cha := a.start(t)
	lb, chb := b.start(t)

	since := time.Now()
	a.connect(t, a.OutPort)
	b.connect(t, b.InPort)
	checkPacket(t, next(t, cha), a.OutPrefix, a.OutPort, since)
	checkPacket(t, next(t, chb), b.InPrefix, b.InPort, since)
	time.Sleep(100 * time.Millisecond)
	if len(cha)+len(chb) != 0 {
		t.Errorf("extra packets: %d in a, %d in b", len(cha), len(chb))
	}
	if sa, sb := la.Stats(), lb.Stats(); sa.Packets != 1 || sb.Packets != 1 {
		t.Errorf("stats a %+v, b %+v, want one packet each", sa, sb)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if l, err := Start(ctx, a.FD, testGroup, func(Packet) {}); err == nil {
		cancel()
		l.Wait()
		t.Fatal("a second listener on the same group in one namespace was allowed")
	} else if !errors.Is(err, ErrGroupRefused) {
		t.Errorf("second listener: %v, want ErrGroupRefused", err)
	}
}

// TestListenSurvivesOverflow blocks the handler while far more packets are logged than the socket
// buffer holds: the kernel drops the excess and reports ENOBUFS, which the listener counts and
// carries on after.
func TestListenSurvivesOverflow(t *testing.T) {
	n := newLogNS(t, "flows", "podnet-test")
	ctx, cancel := context.WithCancel(context.Background())
	gate := make(chan struct{})
	var udp atomic.Int64
	tcp := make(chan Packet, 1)
	l, err := Start(ctx, n.FD, testGroup, func(p Packet) {
		<-gate
		switch p.Prefix {
		case n.UDPPrefix:
			udp.Add(1)
		case n.OutPrefix:
			tcp <- p
		}
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := l.Wait(); err != nil {
			t.Errorf("listener: %v", err)
		}
	})

	c, err := netnsutil.Dial(n.Path, "udp", fmt.Sprintf("127.0.0.1:%d", n.UDPPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const sent = 20000 // ~1 KiB of socket buffer each: far more than readBuffer holds
	for range sent {
		c.Write([]byte("x")) // dropped in output: EPERM, expected
	}
	close(gate)

	// The listener drains what was queued, sees ENOBUFS, and still receives new packets. (A
	// packet logged while the buffer is still full is lost too, so try a few times.)
	deadline := time.Now().Add(5 * time.Second)
	for got := false; !got; {
		if time.Now().After(deadline) {
			t.Fatalf("no packet after the overflow; stats %+v", l.Stats())
		}
		since := time.Now()
		n.connect(t, n.OutPort)
		select {
		case p := <-tcp:
			checkPacket(t, p, n.OutPrefix, n.OutPort, since)
			got = true
		case <-time.After(100 * time.Millisecond):
		}
	}
	st := l.Stats()
	t.Logf("sent %d, received %d UDP; stats %+v", sent, udp.Load(), st)
	if st.Overflows == 0 || udp.Load() >= sent || l.Dropped() == 0 {
		t.Errorf("want overflows and lost packets: received %d of %d, stats %+v", udp.Load(), sent, st)
	}
	if st.Errors != 0 {
		t.Errorf("unexpected receive errors: %+v", st)
	}
}
