package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/podnet/podnet/internal/netnsutil"
	"github.com/podnet/podnet/internal/proxy"

	"github.com/podnet/podnet/bench/internal/benchenv"
)

var (
	nodeGW   = netip.MustParseAddr("10.244.1.1")
	clientIP = netip.MustParseAddr("10.244.1.2")
	serverIP = netip.MustParseAddr("10.244.1.3")
)

type connScenario struct {
	name    string
	dst     netip.AddrPort
	prepare func() error // puts the proxy table in the scenario's state
	results []float64
}

type connResult struct {
	scenarios         []*connScenario
	direct, one, big  *connScenario
	directLoaded, ref *connScenario
	errors            int
	elements          int
}

// connRate builds a node namespace with a bridge, a client pod and a server pod, and measures
// how many TCP connections per second the client opens to the server pod's IP and to a ClusterIP.
func connRate(ctx context.Context, e *env, loaded int) (*connResult, error) {
	node, err := e.OpenNS(ctx, "node")
	if err != nil {
		return nil, err
	}
	client, err := e.OpenNS(ctx, "client")
	if err != nil {
		return nil, err
	}
	server, err := e.OpenNS(ctx, "server")
	if err != nil {
		return nil, err
	}
	cmds := [][]string{
		{node.Name, "link", "add", "br0", "type", "bridge"},
		{node.Name, "addr", "add", nodeGW.String() + "/24", "dev", "br0"},
		{node.Name, "link", "set", "br0", "up"},
		{node.Name, "route", "add", "10.96.0.0/12", "dev", "br0"},
	}
	for i, p := range []struct {
		ns *nsRef
		ip netip.Addr
	}{{client, clientIP}, {server, serverIP}} {
		host := fmt.Sprintf("veth%d", i)
		cmds = append(cmds,
			[]string{node.Name, "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", p.ns.Name},
			[]string{node.Name, "link", "set", host, "master", "br0", "up"},
			[]string{node.Name, "link", "set", host, "type", "bridge_slave", "hairpin", "on"},
			[]string{p.ns.Name, "addr", "add", p.ip.String() + "/24", "dev", "eth0"},
			[]string{p.ns.Name, "link", "set", "eth0", "up"},
			[]string{p.ns.Name, "route", "add", "default", "via", nodeGW.String()},
		)
	}
	for _, c := range cmds {
		if err := ipn(ctx, c[0], c[1:]...); err != nil {
			return nil, err
		}
	}
	for _, s := range []struct {
		ns *nsRef
		kv string
	}{
		{node, "net.ipv4.ip_forward=1"},
		{client, "net.ipv4.tcp_tw_reuse=1"},
		{client, "net.ipv4.ip_local_port_range=1024 65535"},
		{server, "net.core.somaxconn=8192"},
	} {
		if err := sysctl(ctx, s.ns.Name, s.kv); err != nil {
			return nil, err
		}
	}

	// The server pod accepts on three ports (the target Service's three endpoints) and closes.
	var accepted [3]atomic.Int64
	var wg sync.WaitGroup
	defer wg.Wait()
	for k := 0; k < 3; k++ {
		l, err := netnsutil.Listen(server.Path(), "tcp", netip.AddrPortFrom(serverIP, uint16(backendPort+k)).String())
		if err != nil {
			return nil, err
		}
		defer l.Close()
		for a := 0; a < 2; a++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					c, err := l.Accept()
					if err != nil {
						var ne net.Error
						if errors.As(err, &ne) && ne.Timeout() {
							continue
						}
						return
					}
					accepted[k].Add(1)
					c.Close()
				}
			}()
		}
	}

	k, err := proxy.NewKernel(int(node.H))
	if err != nil {
		return nil, fmt.Errorf("nftables in %s: %w", node.Name, err)
	}
	defer k.Close()
	nl, err := node.Netlink()
	if err != nil {
		return nil, err
	}
	target := targetPortSpec(serverIP)
	rsOne := proxy.Render(proxy.Snapshot{Ports: []proxy.ServicePort{target}}, opts)
	big := genSnapshot(loaded - 1)
	big = withPorts(big, target)
	rsBig := proxy.Render(big, opts)
	res := &connResult{elements: countElements(rsBig)}
	apply := func(rs *proxy.Ruleset) func() error {
		return func() error {
			_, err := k.Apply(rs)
			return err
		}
	}
	svc := netip.AddrPortFrom(targetIP, targetPort)
	pod := netip.AddrPortFrom(serverIP, backendPort)
	ref, err := newRefDNAT(node.H)
	if err != nil {
		return nil, err
	}
	defer ref.close()
	noRef := func(f func() error) func() error {
		return func() error {
			if err := ref.remove(); err != nil {
				return err
			}
			return f()
		}
	}
	res.direct = &connScenario{name: "(i) pod IP, no proxy table in the node", dst: pod, prepare: noRef(k.Delete)}
	res.ref = &connScenario{name: "(ref) ClusterIP, one static nft dnat rule", dst: svc, prepare: func() error {
		if err := k.Delete(); err != nil {
			return err
		}
		return ref.install(svc, pod)
	}}
	res.directLoaded = &connScenario{name: fmt.Sprintf("(i') pod IP, %s Services loaded", kfmt(loaded)), dst: pod, prepare: noRef(apply(rsBig))}
	res.one = &connScenario{name: "(ii) ClusterIP, 1 Service loaded", dst: svc, prepare: noRef(apply(rsOne))}
	res.big = &connScenario{name: fmt.Sprintf("(iii) ClusterIP, %s Services loaded", kfmt(loaded)), dst: svc, prepare: noRef(apply(rsBig))}
	res.scenarios = []*connScenario{res.direct, res.ref, res.directLoaded, res.one, res.big}

	clientNS := client.H
	// Warm everything up once (threads, caches, the server's accept loops).
	if err := res.direct.prepare(); err != nil {
		return nil, err
	}
	if _, _, err := measure(ctx, clientNS, pod, time.Second, *flagWorkers); err != nil {
		return nil, err
	}
	for r := 0; r < *flagRounds; r++ {
		order := append([]*connScenario(nil), res.scenarios...)
		if r%2 == 1 {
			for i, j := 0, len(order)-1; i < j; i, j = i+1, j-1 {
				order[i], order[j] = order[j], order[i]
			}
		}
		for _, s := range order {
			if err := s.prepare(); err != nil {
				return nil, fmt.Errorf("%s: %w", s.name, err)
			}
			// Warm up (and prove the path works), then measure from an empty conntrack table.
			if err := flushConntrack(nl); err != nil {
				return nil, err
			}
			if _, errs, err := measure(ctx, clientNS, s.dst, 300*time.Millisecond, *flagWorkers); err != nil {
				return nil, err
			} else if errs > 0 {
				return nil, fmt.Errorf("%s: %d connections failed during warm-up", s.name, errs)
			}
			if err := flushConntrack(nl); err != nil {
				return nil, err
			}
			var before [3]int64
			for i := range accepted {
				before[i] = accepted[i].Load()
			}
			rate, errs, err := measure(ctx, clientNS, s.dst, *flagConnT, *flagWorkers)
			if err != nil {
				return nil, err
			}
			res.errors += errs
			s.results = append(s.results, rate)
			spread := ""
			if s.dst == svc && s != res.ref {
				spread = fmt.Sprintf("  (accepted per endpoint %d/%d/%d)", accepted[0].Load()-before[0],
					accepted[1].Load()-before[1], accepted[2].Load()-before[2])
			}
			fmt.Printf("  round %d  %-40s %8.0f conn/s%s\n", r+1, s.name, rate, spread)
		}
	}
	return res, nil
}

func flushConntrack(nl *netlink.Handle) error {
	if err := nl.ConntrackTableFlush(netlink.ConntrackTable); err != nil {
		return fmt.Errorf("flush conntrack in the node: %w", err)
	}
	return nil
}

// measure opens connections to dst from workers threads in the client namespace for d, and
// returns successful connections per second and failed attempts.
func measure(ctx context.Context, clientNS netns.NsHandle, dst netip.AddrPort, d time.Duration, workers int) (float64, int, error) {
	sa := &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
	var ok, failed atomic.Int64
	errc := make(chan error, workers)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// This thread enters the client namespace and is never unlocked: when the goroutine
			// ends the runtime discards the thread, so no other goroutine runs in the namespace.
			runtime.LockOSThread()
			if err := netns.Set(clientNS); err != nil {
				errc <- fmt.Errorf("enter the client namespace: %w", err)
				return
			}
			buf := make([]byte, 64)
			for time.Now().Before(deadline) && ctx.Err() == nil {
				if err := oneConn(sa, buf); err != nil {
					failed.Add(1)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errc)
	if err := <-errc; err != nil {
		return 0, 0, err
	}
	if ctx.Err() != nil {
		return 0, 0, ctx.Err()
	}
	return float64(ok.Load()) / elapsed.Seconds(), int(failed.Load()), nil
}

// oneConn connects, waits for the server to close, and closes with an RST (SO_LINGER 0) so
// neither side keeps the port in TIME_WAIT.
func oneConn(sa *unix.SockaddrInet4, buf []byte) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
		return err
	}
	tv := unix.Timeval{Sec: 1}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		return err
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
	err = benchenv.Connect(fd, sa)
	if err != nil {
		return err
	}
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
	}
}

// refDNAT is the floor for any nftables Service proxy: a table of its own with one static dnat
// rule for the one ClusterIP, in the node namespace.
type refDNAT struct {
	conn      *nftables.Conn
	table     *nftables.Table
	installed bool
}

func newRefDNAT(node netns.NsHandle) (*refDNAT, error) {
	c, err := nftables.New(nftables.WithNetNSFd(int(node)), nftables.AsLasting())
	if err != nil {
		return nil, err
	}
	return &refDNAT{conn: c, table: &nftables.Table{Name: "pnbench-ref", Family: nftables.TableFamilyIPv4}}, nil
}

func (r *refDNAT) install(svc, pod netip.AddrPort) error {
	if r.installed {
		return nil
	}
	c := r.conn
	c.AddTable(r.table)
	ch := c.AddChain(&nftables.Chain{Name: "prerouting", Table: r.table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
	port := func(p uint16) []byte { return []byte{byte(p >> 8), byte(p)} }
	sa, pa := svc.Addr().As4(), pod.Addr().As4()
	// ip daddr SVC tcp dport PORT dnat to POD:PORT
	c.AddRule(&nftables.Rule{Table: r.table, Chain: ch, Exprs: []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: sa[:]},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: port(svc.Port())},
		&expr.Immediate{Register: 1, Data: pa[:]},
		&expr.Immediate{Register: 2, Data: port(pod.Port())},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("reference dnat table: %w", err)
	}
	r.installed = true
	return nil
}

func (r *refDNAT) remove() error {
	if !r.installed {
		return nil
	}
	r.conn.DelTable(r.table)
	if err := r.conn.Flush(); err != nil {
		return fmt.Errorf("delete the reference dnat table: %w", err)
	}
	r.installed = false
	return nil
}

func (r *refDNAT) close() {
	r.remove()
	r.conn.CloseLasting()
}
