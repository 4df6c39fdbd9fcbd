package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/podnet/podnet/internal/netnsutil"
	"github.com/podnet/podnet/internal/policy"

	"github.com/podnet/podnet/bench/internal/benchenv"
)

// lab is node-0 as a namespace with a bridge, and two real pods on it whose addresses are the
// synthetic cluster's probe-client and probe-server.
type lab struct {
	node, client, server *nsRef
	accepted             atomic.Int64
}

func buildLab(ctx context.Context, e *env) (*lab, error) {
	l := &lab{}
	var err error
	if l.node, err = e.OpenNS(ctx, "node"); err != nil {
		return nil, err
	}
	if l.client, err = e.OpenNS(ctx, "client"); err != nil {
		return nil, err
	}
	if l.server, err = e.OpenNS(ctx, "server"); err != nil {
		return nil, err
	}
	bits := fmt.Sprint(nodeCIDR(localNode).Bits())
	cmds := [][]string{
		{l.node.Name, "link", "add", "br0", "type", "bridge"},
		{l.node.Name, "addr", "add", gateway.String() + "/" + bits, "dev", "br0"},
		{l.node.Name, "link", "set", "br0", "up"},
	}
	for i, p := range []struct {
		ns *nsRef
		ip netip.Addr
	}{{l.client, clientIP}, {l.server, serverIP}} {
		host := fmt.Sprintf("veth%d", i)
		cmds = append(cmds,
			[]string{l.node.Name, "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", p.ns.Name},
			[]string{l.node.Name, "link", "set", host, "master", "br0", "up"},
			[]string{p.ns.Name, "addr", "add", p.ip.String() + "/" + bits, "dev", "eth0"},
			[]string{p.ns.Name, "link", "set", "eth0", "up"},
			[]string{p.ns.Name, "route", "add", "default", "via", gateway.String()},
		)
	}
	for _, c := range cmds {
		if err := ipn(ctx, c[0], c[1:]...); err != nil {
			return nil, err
		}
	}
	// Pod-to-pod traffic on one bridge reaches the ip forward hook only through br_netfilter.
	for _, s := range []struct {
		ns *nsRef
		kv string
	}{
		{l.node, "net.ipv4.ip_forward=1"},
		{l.node, "net.bridge.bridge-nf-call-iptables=1"},
		{l.client, "net.ipv4.ip_local_port_range=1024 65535"},
		{l.client, "net.ipv4.tcp_tw_reuse=1"},
		{l.server, "net.core.somaxconn=8192"},
	} {
		if err := sysctl(ctx, s.ns.Name, s.kv); err != nil {
			return nil, err
		}
	}
	// The server pod accepts on its http port and closes at once (probes and the conn/s test).
	ln, err := netnsutil.Listen(l.server.Path(), "tcp", netip.AddrPortFrom(serverIP, probePort).String())
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	e.OnCleanup(func() { ln.Close(); wg.Wait() })
	for a := 0; a < 2; a++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						continue
					}
					return
				}
				l.accepted.Add(1)
				c.Close()
			}
		}()
	}
	return l, nil
}

// probe is one connection attempt.
type probe struct {
	sent time.Time
	ok   bool
	err  unix.Errno // 0 and !ok: no answer within the timeout (denied: the SYN was dropped)
}

// prober opens a non-blocking TCP connection from the client pod to dst every period, on one
// thread in the client's namespace, and records each attempt's send time and fate: answered
// (SYN-ACK: allowed) or not answered within timeout (denied). Connections are reset at once.
type prober struct {
	stop chan struct{}
	done chan []probe
	err  chan error
}

func startProber(client netns.NsHandle, dst netip.AddrPort, period, timeout time.Duration) *prober {
	p := &prober{stop: make(chan struct{}), done: make(chan []probe, 1), err: make(chan error, 1)}
	go func() {
		// This thread enters the client namespace and is never unlocked: when the goroutine
		// ends the runtime discards the thread, so no other goroutine runs in the namespace.
		runtime.LockOSThread()
		if err := netns.Set(client); err != nil {
			p.err <- fmt.Errorf("enter the client namespace: %w", err)
			p.done <- nil
			return
		}
		p.done <- p.loop(dst, period, timeout)
	}()
	return p
}

type inflight struct {
	fd int
	i  int // index into the results
}

func (p *prober) loop(dst netip.AddrPort, period, timeout time.Duration) []probe {
	sa := &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
	var res []probe
	var fl []inflight
	defer func() {
		for _, f := range fl {
			unix.Close(f.fd)
		}
	}()
	next := time.Now()
	var pfds []unix.PollFd
	for {
		select {
		case <-p.stop:
			// Attempts still in flight have not had their timeout: drop them.
			for _, f := range fl {
				res[f.i].err = unix.EINPROGRESS
			}
			return res
		default:
		}
		now := time.Now()
		if !now.Before(next) {
			next = next.Add(period)
			if next.Before(now) {
				next = now.Add(period)
			}
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				p.err <- fmt.Errorf("probe socket: %w", err)
				return res
			}
			unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
			res = append(res, probe{sent: time.Now()})
			err = unix.Connect(fd, sa)
			switch {
			case err == nil:
				res[len(res)-1].ok = true
				unix.Close(fd)
			case err == unix.EINPROGRESS:
				fl = append(fl, inflight{fd, len(res) - 1})
			default:
				res[len(res)-1].err = err.(unix.Errno)
				unix.Close(fd)
			}
		}
		pfds = pfds[:0]
		for _, f := range fl {
			pfds = append(pfds, unix.PollFd{Fd: int32(f.fd), Events: unix.POLLOUT})
		}
		// Wake for the next probe, the oldest attempt's timeout, or at least every 5 ms (to stop).
		wait := min(time.Until(next), 5*time.Millisecond)
		if len(fl) > 0 {
			wait = min(wait, time.Until(res[fl[0].i].sent.Add(timeout)))
		}
		wait = max(0, wait)
		ts := unix.NsecToTimespec(int64(wait))
		if _, err := unix.Ppoll(pfds, &ts, nil); err != nil && err != unix.EINTR {
			p.err <- fmt.Errorf("probe poll: %w", err)
			return res
		}
		now = time.Now()
		keep := fl[:0]
		for k, f := range fl {
			if pfds[k].Revents != 0 {
				soerr, err := unix.GetsockoptInt(f.fd, unix.SOL_SOCKET, unix.SO_ERROR)
				switch {
				case err != nil:
					res[f.i].err = err.(unix.Errno)
				case soerr != 0:
					res[f.i].err = unix.Errno(soerr)
				default:
					res[f.i].ok = true
				}
				unix.Close(f.fd)
				continue
			}
			if now.Sub(res[f.i].sent) > timeout {
				unix.Close(f.fd) // no answer: denied
				continue
			}
			keep = append(keep, f)
		}
		fl = keep
	}
}

// finish stops the prober and returns its attempts.
func (p *prober) finish() ([]probe, error) {
	close(p.stop)
	res := <-p.done
	select {
	case err := <-p.err:
		return nil, err
	default:
	}
	return res, nil
}

// flip is what one measured change did.
type flip struct {
	latency  time.Duration // start of the change → first probe sent that had the new verdict
	lower    time.Duration // start of the change → last probe sent with the old verdict
	sync     step
	probes   int // probes sent after the start
	flaps    int // probes after the first new-verdict one that had the old verdict again
	preWrong int // probes before the start that did not have the old verdict
}

// measureFlip starts probing, applies the object set o the way the agent does, and returns when
// the client's connections went from allowed to denied (deny) or the reverse.
func measureFlip(ctx context.Context, l *lab, k *policy.Kernel, o objects, deny bool) (flip, error) {
	var f flip
	runtime.GC()
	p := startProber(l.client.H, netip.AddrPortFrom(serverIP, probePort), *flagPeriod, *flagTimeout)
	// Enough probes in the old state to see that it holds.
	time.Sleep(*flagTimeout + 20*time.Millisecond)
	t0 := time.Now()
	st, _, err := syncNode(k, o)
	if err != nil {
		p.finish()
		return f, err
	}
	f.sync = st
	// Every probe sent up to shortly after the apply must have had its timeout.
	select {
	case <-time.After(*flagTimeout + 50*time.Millisecond):
	case <-ctx.Done():
	}
	probes, err := p.finish()
	if err != nil {
		return f, err
	}
	if ctx.Err() != nil {
		return f, ctx.Err()
	}
	allowedOld := deny // the verdict before the change: allowed if we are measuring a deny
	denied := func(pr probe) bool { return !pr.ok && pr.err == 0 }
	isOld := func(pr probe) bool {
		if allowedOld {
			return pr.ok
		}
		return denied(pr)
	}
	isNew := func(pr probe) bool {
		if allowedOld {
			return denied(pr)
		}
		return pr.ok
	}
	first := -1
	for i, pr := range probes {
		if pr.err == unix.EINPROGRESS {
			continue // stopped before its timeout
		}
		if pr.sent.Before(t0) {
			if !isOld(pr) {
				f.preWrong++
			}
			continue
		}
		f.probes++
		if first < 0 {
			if isNew(pr) {
				first = i
				f.latency = pr.sent.Sub(t0)
			} else {
				f.lower = pr.sent.Sub(t0)
			}
			continue
		}
		if isOld(pr) {
			f.flaps++
		}
	}
	if first < 0 {
		what := "denied"
		if !deny {
			what = "allowed"
		}
		return f, fmt.Errorf("no probe was %s after the change (%d probes, apply took %s)", what, f.probes, ms(st.total()))
	}
	return f, nil
}

func enforce(ctx context.Context, e *env, t *benchenv.Table, l *lab, sizes []size) error {
	t.Section(fmt.Sprintf("2. change → enforced on node-0, probing client pod → server pod TCP %d every %s (no answer in %s = denied); median of %d rounds. "+
		"Per node: every node's agent recomputes independently, so on nodes with their own CPUs this is the all-nodes figure; "+
		"not included: informer delivery and the runner's 10 ms minimum interval", probePort, *flagPeriod, *flagTimeout, *flagRounds))
	for _, sz := range sizes {
		if err := enforceSize(ctx, t, l, sz); err != nil {
			return fmt.Errorf("%s: %w", sz, err)
		}
	}
	return nil
}

func enforceSize(ctx context.Context, t *benchenv.Table, l *lab, sz size) error {
	c := genCluster(sz.pods, sz.policies)
	base := objects{c.policies, c.pods, c.namespaces}
	with := func(np *networkingv1.NetworkPolicy) objects {
		o := base
		o.pols = append(append([]*networkingv1.NetworkPolicy(nil), base.pols...), np)
		return o
	}
	denyObjs, allowObjs := with(lockdown(false)), with(lockdown(true))
	t0 := time.Now()
	rs := policy.Render(policy.Compile(base.pols, base.pods, base.nss), nodeInfo(base.pods, localNode))
	built := time.Since(t0)
	k, inst, err := install(int(l.node.H), rs)
	if err != nil {
		return fmt.Errorf("initial apply: %w", err)
	}
	defer k.Close()
	total, _ := elements(rs)
	var denies, allows []flip
	for r := 0; r < *flagRounds; r++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d, err := measureFlip(ctx, l, k, denyObjs, true)
		if err != nil {
			return fmt.Errorf("round %d, deny: %w", r+1, err)
		}
		a, err := measureFlip(ctx, l, k, allowObjs, false)
		if err != nil {
			return fmt.Errorf("round %d, allow: %w", r+1, err)
		}
		fmt.Printf("  %s round %d: deny enforced after %s (sync %s, %d elements), allow after %s (sync %s, %d elements)\n",
			sz, r+1, ms(d.latency), ms(d.sync.total()), d.sync.changed, ms(a.latency), ms(a.sync.total()), a.sync.changed)
		denies, allows = append(denies, d), append(allows, a)
		// Back to the base set (untimed): the server is not isolated again.
		if _, _, err := syncNode(k, base); err != nil {
			return fmt.Errorf("round %d, restore: %w", r+1, err)
		}
	}
	row := func(name string, fs []flip) {
		var lat, lower, tot, cs, rs, as []time.Duration
		var changed []int
		flaps, pre, n := 0, 0, 0
		for _, f := range fs {
			lat, lower, tot = append(lat, f.latency), append(lower, f.lower), append(tot, f.sync.total())
			cs, rs, as = append(cs, f.sync.compile), append(rs, f.sync.render), append(as, f.sync.apply)
			changed = append(changed, f.sync.changed)
			flaps, pre, n = flaps+f.flaps, pre+f.preWrong, n+f.probes
		}
		sort.Ints(changed)
		worst := lat[0]
		for _, d := range lat {
			worst = max(worst, d)
		}
		notes := fmt.Sprintf("≤ 1 s %s (per node); max %s; last old-verdict probe at %s; sync Compile %s + Render %s + Apply %s = %s, %s elements",
			verdict(benchenv.MedianDur(lat) <= time.Second), ms(worst), ms(benchenv.MedianDur(lower)), ms(benchenv.MedianDur(cs)), ms(benchenv.MedianDur(rs)), ms(benchenv.MedianDur(as)),
			ms(benchenv.MedianDur(tot)), intRange(changed))
		if flaps > 0 || pre > 0 {
			notes += fmt.Sprintf("; WARNING %d probes flapped back, %d had the wrong verdict before the change", flaps, pre)
		}
		t.Add("    "+name, ms(benchenv.MedianDur(lat)), fmt.Sprintf("%.2f of 1 s", benchenv.MedianDur(lat).Seconds()), notes)
	}
	t.Add(fmt.Sprintf("%s (+2 probe pods; node-0 table: %d elements, Compile+Render %s + first Apply %s)", sz, total, ms(built), ms(inst)), "", "", "")
	if diff, err := verify(int(l.node.H), rs); err != nil {
		return err
	} else if diff != "" {
		fmt.Printf("  %s: WARNING: after the rounds, the %s\n", sz, diff)
		t.Add("    WARNING: the table differs after the rounds", "", "", diff)
	}
	row("add a policy that denies client → server", denies)
	row("change it to allow the client", allows)
	return nil
}
