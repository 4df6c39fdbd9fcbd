// Command throughput measures pod networking throughput with iperf3 and prints it as ratios against
// baselines measured in the same run (run as root: go run ./bench/throughput).
//
// It builds its own network namespaces (all named pnbench-<random>-…, removed on exit, error or
// Ctrl-C):
//
//   - a raw veth pair between two namespaces (baseline for same-node),
//   - per routing backend, a two-node cluster: an underlay namespace with a bridge, two node
//     namespaces with eth0 on it, and in each node a bridge cni0 holding the pod gateway with pods
//     attached by veth pairs, the way podnet-cni wires them; routing between the nodes is
//     programmed by internal/routing's host-gw and vxlan backends.
//
// Scenarios: raw veth, node↔node over the underlay (baseline for cross-node), same-node pod↔pod
// through the bridge, cross-node pod↔pod over host-gw and over vxlan. Each is run -runs times,
// interleaved round by round so drift affects all alike; the table shows medians and ratios.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/podnet/podnet/bench/internal/benchenv"
	"github.com/podnet/podnet/internal/routing"
)

var (
	flagRuns     = flag.Int("runs", 3, "iperf3 runs per scenario (the median is reported)")
	flagDuration = flag.Int("t", 3, "seconds per iperf3 run")
	flagIperf    = flag.String("iperf3", "/usr/bin/iperf3", "iperf3 binary")
	flagPort     = flag.Int("port", 5201, "iperf3 port (inside the benchmark's namespaces)")
)

func main() {
	flag.Parse()
	os.Exit(run())
}

func run() int {
	if _, err := os.Stat(*flagIperf); err != nil && os.Geteuid() == 0 {
		fmt.Fprintf(os.Stderr, "throughput: iperf3: %v\n", err)
		return 2
	}
	return benchenv.Main("throughput", func(ctx context.Context, be *benchenv.Env) error { return bench(ctx, &env{be}) })
}

// env is a benchmark run's namespaces and handles.
type env struct{ *benchenv.Env }

func sh(ctx context.Context, args ...string) error { return benchenv.Sh(ctx, args...) }

// ipn runs `ip -n ns args...`.
func ipn(ctx context.Context, ns string, args ...string) error { return benchenv.IPN(ctx, ns, args...) }

// newNS creates a namespace named <id>-<suffix> with lo up and records it for cleanup.
func (e *env) newNS(ctx context.Context, suffix string) (string, error) { return e.NewNS(ctx, suffix) }

func (e *env) handle(ns string) (*netlink.Handle, error) {
	nsh, err := netns.GetFromName(ns)
	if err != nil {
		return nil, fmt.Errorf("open namespace %s: %w", ns, err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", ns, err)
	}
	e.OnCleanup(h.Close)
	return h, nil
}

// endpoint is one place iperf3 runs: a namespace and the address to reach it at.
type endpoint struct {
	ns string
	ip string
}

// rawVeth builds two namespaces joined by a veth pair.
func (e *env) rawVeth(ctx context.Context) (client, server endpoint, err error) {
	a, err := e.newNS(ctx, "va")
	if err != nil {
		return
	}
	b, err := e.newNS(ctx, "vb")
	if err != nil {
		return
	}
	for _, c := range [][]string{
		{a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b},
		{a, "addr", "add", "10.250.0.1/24", "dev", "eth0"},
		{b, "addr", "add", "10.250.0.2/24", "dev", "eth0"},
		{a, "link", "set", "eth0", "up"},
		{b, "link", "set", "eth0", "up"},
	} {
		if err = ipn(ctx, c[0], c[1:]...); err != nil {
			return
		}
	}
	return endpoint{a, "10.250.0.1"}, endpoint{b, "10.250.0.2"}, nil
}

// cluster is two nodes on an underlay bridge, each with a cni0 bridge and pods.
type cluster struct {
	nodes []endpoint   // node namespaces with their underlay IPs
	pods  [][]endpoint // pods per node
}

// newCluster builds a two-node cluster routed by the given backend. Node 1 gets two pods (for the
// same-node scenario), node 2 one.
func (e *env) newCluster(ctx context.Context, tag, kind string) (*cluster, error) {
	ul, err := e.newNS(ctx, tag+"-ul")
	if err != nil {
		return nil, err
	}
	if err := ipn(ctx, ul, "link", "add", "br0", "type", "bridge"); err != nil {
		return nil, err
	}
	if err := ipn(ctx, ul, "link", "set", "br0", "up"); err != nil {
		return nil, err
	}
	c := &cluster{}
	var nodes []routing.Node
	var hs []*netlink.Handle
	for i := 1; i <= 2; i++ {
		n, err := e.newNS(ctx, fmt.Sprintf("%s-n%d", tag, i))
		if err != nil {
			return nil, err
		}
		ip := fmt.Sprintf("192.168.%d.%d", 200, i)
		port := fmt.Sprintf("ul%d", i)
		for _, cmd := range [][]string{
			{n, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", ul},
			{ul, "link", "set", port, "master", "br0", "up"},
			{n, "addr", "add", ip + "/24", "dev", "eth0"},
			{n, "link", "set", "eth0", "up"},
		} {
			if err := ipn(ctx, cmd[0], cmd[1:]...); err != nil {
				return nil, err
			}
		}
		if err := sh(ctx, "ip", "netns", "exec", n, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"); err != nil {
			return nil, err
		}
		h, err := e.handle(n)
		if err != nil {
			return nil, err
		}
		hs = append(hs, h)
		c.nodes = append(c.nodes, endpoint{n, ip})
		nodes = append(nodes, routing.Node{
			Name:       fmt.Sprintf("node%d", i),
			PodCIDR:    &net.IPNet{IP: net.IPv4(10, 244, byte(i), 0).To4(), Mask: net.CIDRMask(24, 32)},
			InternalIP: net.ParseIP(ip).To4(),
		})
	}
	// Routing backend on every node: Setup, publish the VTEP MAC, Sync with all nodes.
	mtu := 0
	bs := make([]routing.Backend, len(nodes))
	for i := range nodes {
		b, err := routing.New(kind, routing.Config{Handle: hs[i], Underlay: "eth0", Local: nodes[i]})
		if err != nil {
			return nil, err
		}
		info, err := b.Setup()
		if err != nil {
			return nil, fmt.Errorf("%s setup on node%d: %w", kind, i+1, err)
		}
		nodes[i].VTEPMAC = info.VTEPMAC
		mtu = info.MTU
		bs[i] = b
	}
	for i, b := range bs {
		if _, err := b.Sync(nodes); err != nil {
			return nil, fmt.Errorf("%s sync on node%d: %w", kind, i+1, err)
		}
	}
	// Pods on a cni0 bridge per node, with the backend's MTU.
	for i, n := range c.nodes {
		node := i + 1
		gw := fmt.Sprintf("10.244.%d.1", node)
		for _, cmd := range [][]string{
			{n.ns, "link", "add", "cni0", "type", "bridge"},
			{n.ns, "addr", "add", gw + "/24", "dev", "cni0"},
			{n.ns, "link", "set", "cni0", "up"},
		} {
			if err := ipn(ctx, cmd[0], cmd[1:]...); err != nil {
				return nil, err
			}
		}
		npods := 1
		if node == 1 {
			npods = 2
		}
		var pods []endpoint
		for k := 1; k <= npods; k++ {
			p, err := e.newNS(ctx, fmt.Sprintf("%s-n%dp%d", tag, node, k))
			if err != nil {
				return nil, err
			}
			hostIf := fmt.Sprintf("veth%d", k)
			ip := fmt.Sprintf("10.244.%d.%d", node, 10+k)
			for _, cmd := range [][]string{
				{n.ns, "link", "add", hostIf, "mtu", fmt.Sprint(mtu), "type", "veth", "peer", "name", "eth0", "mtu", fmt.Sprint(mtu), "netns", p},
				{n.ns, "link", "set", hostIf, "master", "cni0", "up"},
				{p, "addr", "add", ip + "/24", "dev", "eth0"},
				{p, "link", "set", "eth0", "up"},
				{p, "route", "add", "default", "via", gw},
			} {
				if err := ipn(ctx, cmd[0], cmd[1:]...); err != nil {
					return nil, err
				}
			}
			pods = append(pods, endpoint{p, ip})
		}
		c.pods = append(c.pods, pods)
	}
	return c, nil
}

// iperf runs one iperf3 test from client to server and returns the received bits per second.
func iperf(ctx context.Context, client, server endpoint) (float64, error) {
	port := fmt.Sprint(*flagPort)
	srvCtx, cancelSrv := context.WithCancel(ctx)
	defer cancelSrv()
	srv := exec.CommandContext(srvCtx, "ip", "netns", "exec", server.ns, *flagIperf, "-s", "-1", "-p", port)
	var srvOut bytes.Buffer
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	if err := srv.Start(); err != nil {
		return 0, fmt.Errorf("start iperf3 server in %s: %w", server.ns, err)
	}
	srvDone := make(chan struct{})
	go func() { srv.Wait(); close(srvDone) }()
	// However this returns, the server is gone afterwards: it exits by itself after one test
	// (-s -1); otherwise it is killed.
	defer func() {
		select {
		case <-srvDone:
		case <-time.After(5 * time.Second):
		}
		cancelSrv()
		<-srvDone
	}()
	// Wait until the server listens.
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", server.ns, "ss", "-Hltn", "sport = :"+port).Output()
		if err == nil && len(bytes.TrimSpace(out)) > 0 {
			break
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("iperf3 server in %s did not start listening: %s", server.ns, srvOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", client.ns, *flagIperf,
		"-c", server.ip, "-p", port, "-t", fmt.Sprint(*flagDuration), "-J").Output()
	var res struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		if err == nil {
			err = jerr
		}
		return 0, fmt.Errorf("iperf3 client %s → %s: %v", client.ns, server.ip, err)
	}
	if res.Error != "" {
		return 0, fmt.Errorf("iperf3 client %s → %s: %s", client.ns, server.ip, res.Error)
	}
	if err != nil {
		return 0, fmt.Errorf("iperf3 client %s → %s: %v", client.ns, server.ip, err)
	}
	if res.End.SumReceived.BitsPerSecond <= 0 {
		return 0, fmt.Errorf("iperf3 client %s → %s: no throughput in result", client.ns, server.ip)
	}
	return res.End.SumReceived.BitsPerSecond, nil
}

type scenario struct {
	name           string
	client, server endpoint
	results        []float64
}

func bench(ctx context.Context, e *env) error {
	fmt.Printf("building namespaces (%s-*)…\n", e.ID)
	vc, vs, err := e.rawVeth(ctx)
	if err != nil {
		return err
	}
	hg, err := e.newCluster(ctx, "hg", routing.KindHostGW)
	if err != nil {
		return err
	}
	vx, err := e.newCluster(ctx, "vx", routing.KindVXLAN)
	if err != nil {
		return err
	}
	veth := &scenario{name: "raw veth pair", client: vc, server: vs}
	underlay := &scenario{name: "node↔node underlay", client: hg.nodes[0], server: hg.nodes[1]}
	same := &scenario{name: "same-node pod↔pod (bridge)", client: hg.pods[0][0], server: hg.pods[0][1]}
	hostgw := &scenario{name: "cross-node pod↔pod host-gw", client: hg.pods[0][0], server: hg.pods[1][0]}
	vxlan := &scenario{name: "cross-node pod↔pod vxlan", client: vx.pods[0][0], server: vx.pods[1][0]}
	all := []*scenario{veth, underlay, same, hostgw, vxlan}

	for r := 1; r <= *flagRuns; r++ {
		for _, s := range all {
			bps, err := iperf(ctx, s.client, s.server)
			if err != nil {
				return fmt.Errorf("%s, run %d: %w", s.name, r, err)
			}
			s.results = append(s.results, bps)
			fmt.Printf("  run %d  %-30s %6.2f Gbit/s\n", r, s.name, bps/1e9)
		}
	}

	type row struct {
		s      *scenario
		base   *scenario
		target float64
	}
	rows := []row{{veth, nil, 0}, {underlay, nil, 0}, {same, veth, 0.95}, {hostgw, underlay, 0.95}, {vxlan, underlay, 0.90}}
	fmt.Printf("\niperf3 TCP, %d s per run, %d runs per scenario interleaved round by round, all in this run.\n", *flagDuration, *flagRuns)
	fmt.Printf("ratio = median / median of its baseline; paired = median of the per-round ratios (less sensitive to drift).\n\n")
	fmt.Printf("%-30s %8s  %-24s %-20s %-7s %s\n", "scenario", "median", "runs (Gbit/s)", "ratio", "paired", "target")
	fmt.Println(strings.Repeat("-", 104))
	for _, rw := range rows {
		var runs []string
		for _, x := range rw.s.results {
			runs = append(runs, fmt.Sprintf("%.2f", x/1e9))
		}
		m := benchenv.Median(rw.s.results)
		ratio, paired, target := "baseline", "", ""
		if rw.base != nil {
			q := m / benchenv.Median(rw.base.results)
			var per []float64
			for i := range rw.s.results {
				per = append(per, rw.s.results[i]/rw.base.results[i])
			}
			verdict := "met"
			if q < rw.target {
				verdict = "MISSED"
			}
			ratio = fmt.Sprintf("%.3f vs %s", q, shortName(rw.base))
			paired = fmt.Sprintf("%.3f", benchenv.Median(per))
			target = fmt.Sprintf("≥ %.2f %s", rw.target, verdict)
		}
		fmt.Printf("%-30s %5.2f Gb  %-24s %-20s %-7s %s\n", rw.s.name, m/1e9, strings.Join(runs, " "), ratio, paired, target)
	}
	return nil
}

func shortName(s *scenario) string {
	switch {
	case strings.HasPrefix(s.name, "raw veth"):
		return "raw veth"
	case strings.HasPrefix(s.name, "node↔node"):
		return "underlay"
	}
	return s.name
}
