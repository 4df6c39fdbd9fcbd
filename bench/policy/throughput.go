package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/podnet/podnet/internal/policy"

	"github.com/podnet/podnet/bench/internal/benchenv"
)

// tpScenario is one state of node-0's policy table.
type tpScenario struct {
	name    string
	prepare func() error
	iperf   []float64 // bits/s
	conns   []float64 // connections/s
	failed  []string  // connection attempts that failed
}

func throughput(ctx context.Context, t *benchenv.Table, l *lab) error {
	c := genCluster(*flagTPPods, 0)
	pols := c.throughputPolicies(*flagTPPols)
	big := policy.Render(policy.Compile(pols, c.pods, c.namespaces), nodeInfo(c.pods, localNode))
	empty := policy.Render(policy.Compile(nil, c.pods, c.namespaces), nodeInfo(c.pods, localNode))
	bigN, bigPer := elements(big)
	program := func(rs *policy.Ruleset) func() error {
		return func() error {
			// A new Kernel: its first Apply rebuilds the table atomically, whatever is there.
			k, _, err := install(int(l.node.H), rs)
			if err != nil {
				return err
			}
			return k.Close()
		}
	}
	none := &tpScenario{name: "(a) no policy table in node-0", prepare: func() error { return deleteTable(l.node.H) }}
	loaded := &tpScenario{name: fmt.Sprintf("(b) %s policies select both pods", kfmt(*flagTPPols)), prepare: program(big)}
	emptyT := &tpScenario{name: "(c) policy table, no policy", prepare: program(empty)}
	nl, err := l.node.Netlink()
	if err != nil {
		return err
	}
	// Rounds; in each, the table goes through the three states (order reversed every other
	// round, so drift hits all alike), and in each state the connection rate and (for (a) and
	// (b)) iperf3 are measured.
	for r := 0; r < *flagRuns; r++ {
		order := []*tpScenario{none, emptyT, loaded}
		if r%2 == 1 {
			order = []*tpScenario{loaded, emptyT, none}
		}
		for _, s := range order {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err := s.prepare(); err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			if s == loaded && r == 0 {
				// The table is what it claims: a port no policy allows is dropped (no RST).
				if ok, errno := probeOnce(l.client.H, netip.AddrPortFrom(serverIP, 9), 200*time.Millisecond); ok || errno != 0 {
					return fmt.Errorf("%s: client → server:9 was not dropped (connected %v, error %v)", s.name, ok, errno)
				}
			}
			time.Sleep(200 * time.Millisecond) // let the kernel finish freeing the old table
			if err := nl.ConntrackTableFlush(netlink.ConntrackTable); err != nil {
				return fmt.Errorf("flush conntrack in node-0: %w", err)
			}
			rate, fails, err := connRate(ctx, l, *flagConnT, *flagWorkers)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			s.conns = append(s.conns, rate)
			s.failed = append(s.failed, fails...)
			line := fmt.Sprintf("  round %d  %-36s %8.0f conn/s", r+1, s.name, rate)
			if len(fails) > 0 {
				line += fmt.Sprintf(" (%d failed: %s)", len(fails), fails[0])
			}
			bps, err := iperf(ctx, l)
			if err != nil {
				return fmt.Errorf("%s, round %d: %w", s.name, r+1, err)
			}
			s.iperf = append(s.iperf, bps)
			fmt.Printf("%s  %6.2f Gbit/s\n", line, bps/1e9)
		}
	}

	t.Section(fmt.Sprintf("3. client pod → server pod across node-0's bridge; (b): %s policies in the pods' namespace select both (ingress + egress), %s synthetic pods as peers; "+
		"node-0 table %d elements (%s). Runs alternate; median of %d", kfmt(*flagTPPols), kfmt(*flagTPPods), bigN, setSummary(bigPer), *flagRuns))
	runs := func(xs []float64, scale float64, f string) string {
		var p []string
		for _, x := range xs {
			p = append(p, fmt.Sprintf(f, x/scale))
		}
		return "runs " + strings.Join(p, " ")
	}
	for _, s := range []*tpScenario{none, emptyT, loaded} {
		ratio, notes := "baseline", runs(s.iperf, 1e9, "%.2f")
		if s != none {
			q := benchenv.Median(s.iperf) / benchenv.Median(none.iperf)
			ratio = fmt.Sprintf("%.3f vs (a)", q)
			notes = fmt.Sprintf("paired %.3f; %s", pairedRatio(s.iperf, none.iperf), notes)
			if s == loaded {
				notes = fmt.Sprintf("≥ 0.95 %s; %s", verdict(q >= 0.95), notes)
			}
		}
		t.Add(fmt.Sprintf("iperf3 TCP %d s, %s", *flagDuration, s.name), fmt.Sprintf("%.2f Gbit/s", benchenv.Median(s.iperf)/1e9), ratio, notes)
	}
	t.Add("    (b)/(c): the policies alone", "", fmt.Sprintf("%.3f", benchenv.Median(loaded.iperf)/benchenv.Median(emptyT.iperf)),
		fmt.Sprintf("paired %.3f; an established connection's packets leave at the first rule (ct state established), so (b) ≈ (c) is expected; (a)→(c) is conntrack", pairedRatio(loaded.iperf, emptyT.iperf)))
	for _, s := range []*tpScenario{none, emptyT, loaded} {
		ratio := "baseline"
		if s != none {
			ratio = fmt.Sprintf("%.3f vs (a)", benchenv.Median(s.conns)/benchenv.Median(none.conns))
		}
		notes := runs(s.conns, 1, "%.0f")
		if s != none {
			notes = fmt.Sprintf("paired %.3f; %s", pairedRatio(s.conns, none.conns), notes)
		}
		if len(s.failed) > 0 {
			notes += fmt.Sprintf("; %d attempts failed (%s)", len(s.failed), s.failed[0])
		}
		t.Add(fmt.Sprintf("new TCP conn/s (%d threads), %s", *flagWorkers, s.name), fmt.Sprintf("%.0f/s", benchenv.Median(s.conns)), ratio, notes)
	}
	t.Add("    (b)/(c): the allow-set lookups alone", "", fmt.Sprintf("%.3f", benchenv.Median(loaded.conns)/benchenv.Median(emptyT.conns)),
		fmt.Sprintf("paired %.3f; every new connection is looked up in both allow sets; (a) has no conntrack in node-0 at all, (b) and (c) do",
			pairedRatio(loaded.conns, emptyT.conns)))
	return nil
}

// deleteTable removes the policy table from the namespace, if there is one.
func deleteTable(ns netns.NsHandle) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return err
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return err
	}
	for _, tb := range tables {
		if tb.Name == policy.TableName {
			c.DelTable(tb)
			return c.Flush()
		}
	}
	return nil
}

// probeOnce makes one connection attempt from the client pod: connected, or the error (0: no
// answer within timeout).
func probeOnce(client netns.NsHandle, dst netip.AddrPort, timeout time.Duration) (bool, unix.Errno) {
	p := startProber(client, dst, time.Hour, timeout)
	time.Sleep(timeout + 20*time.Millisecond)
	res, err := p.finish()
	if err != nil || len(res) == 0 {
		return false, unix.EIO
	}
	return res[0].ok, res[0].err
}

// iperf runs one iperf3 TCP test from the client pod to the server pod and returns the received
// bits per second.
func iperf(ctx context.Context, l *lab) (float64, error) {
	port := fmt.Sprint(iperfPort)
	srvCtx, cancelSrv := context.WithCancel(ctx)
	defer cancelSrv()
	srv := exec.CommandContext(srvCtx, "ip", "netns", "exec", l.server.Name, *flagIperf, "-s", "-1", "-B", serverIP.String(), "-p", port)
	var srvOut bytes.Buffer
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	if err := srv.Start(); err != nil {
		return 0, fmt.Errorf("start iperf3 server: %w", err)
	}
	srvDone := make(chan struct{})
	go func() { srv.Wait(); close(srvDone) }()
	// However this returns, the server is gone afterwards (it exits after one test, -1, or is
	// killed).
	defer func() {
		select {
		case <-srvDone:
		case <-time.After(5 * time.Second):
		}
		cancelSrv()
		<-srvDone
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", l.server.Name, "ss", "-Hltn", "sport = :"+port).Output()
		if err == nil && len(bytes.TrimSpace(out)) > 0 {
			break
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("iperf3 server did not start listening: %s", srvOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", l.client.Name, *flagIperf,
		"-c", serverIP.String(), "-p", port, "-t", fmt.Sprint(*flagDuration), "-J").Output()
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
		return 0, fmt.Errorf("iperf3 client: %v", err)
	}
	if res.Error != "" {
		return 0, fmt.Errorf("iperf3 client: %s", res.Error)
	}
	if err != nil {
		return 0, fmt.Errorf("iperf3 client: %v", err)
	}
	if res.End.SumReceived.BitsPerSecond <= 0 {
		return 0, fmt.Errorf("iperf3 client: no throughput in the result")
	}
	return res.End.SumReceived.BitsPerSecond, nil
}

// connRate opens TCP connections from the client pod to the server pod's http port on workers
// threads for d (each connect, then an RST close) and returns connections per second and the
// errors of failed attempts.
func connRate(ctx context.Context, l *lab, d time.Duration, workers int) (float64, []string, error) {
	sa := &unix.SockaddrInet4{Port: probePort, Addr: serverIP.As4()}
	var ok atomic.Int64
	var mu sync.Mutex
	var failed []string
	errc := make(chan error, workers)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Locked and never unlocked: the runtime discards the thread with the goroutine.
			runtime.LockOSThread()
			if err := netns.Set(l.client.H); err != nil {
				errc <- fmt.Errorf("enter the client namespace: %w", err)
				return
			}
			tv := unix.Timeval{Sec: 1}
			for time.Now().Before(deadline) && ctx.Err() == nil {
				fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					errc <- err
					return
				}
				unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
				unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
				if err := benchenv.Connect(fd, sa); err != nil {
					mu.Lock()
					failed = append(failed, err.Error())
					mu.Unlock()
				} else {
					ok.Add(1)
				}
				unix.Close(fd)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errc)
	if err := <-errc; err != nil {
		return 0, nil, err
	}
	if ctx.Err() != nil {
		return 0, nil, ctx.Err()
	}
	return float64(ok.Load()) / elapsed.Seconds(), failed, nil
}
