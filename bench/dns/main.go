//go:build linux

// Command dns benchmarks podnet's cluster DNS server (internal/dns) against CoreDNS serving the
// same objects, and prints one ratio table from one run (go run ./bench/dns; root is needed only
// for the larger client socket buffers, and taskset pins the processes).
//
// Objects: -services ClusterIP Services (ports http/80 and metrics/9090, both named) and
// -headless headless Services with three ready endpoints each, in ten namespaces of cluster.local.
// podnet's Server (a child process of this binary) gets them through Index.Replace. CoreDNS (built
// once with `go install` into a cache directory, outside podnet's module) gets them from the lab's
// read-only Kubernetes API (internal/lab: a Store and its KubeAPI handler) served by this process
// over HTTP on 127.0.0.1; its Corefile has the kubernetes plugin only (no fallthrough, no forward,
// no cache), plus bind 127.0.0.1 — and a second CoreDNS with `cache 30` as well.
//
// Each server runs with GOMAXPROCS=1, pinned to CPU 0. The load generator is a child process
// pinned to CPU 1 (see load.go): for -dur per server per round, -rounds rounds in alternating
// order, it keeps -window queries in flight; qps is correct answers per second on that one core
// (the median over rounds). Then latency: the same paced load, half of CoreDNS's (uncached)
// median rate, for each server. Before measuring, every question of the mix is asked once of
// every server and its answer checked in full; under load each answer's header is checked.
//
// Everything listens on and talks to 127.0.0.1 only; CoreDNS has nothing to forward to.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"

	pdns "github.com/podnet/podnet/internal/dns"
	"github.com/podnet/podnet/internal/lab"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podnet/podnet/bench/internal/benchenv"
)

const roleEnv = "PODNET_BENCH_DNS_ROLE"

var (
	flagServices  = flag.Int("services", 1000, "ClusterIP Services")
	flagHeadless  = flag.Int("headless", 100, "headless Services (3 endpoints each)")
	flagDur       = flag.Duration("dur", 5*time.Second, "one throughput measurement")
	flagLatDur    = flag.Duration("lat-dur", 3*time.Second, "one latency measurement")
	flagRounds    = flag.Int("rounds", 3, "throughput rounds (order alternates; median reported)")
	flagWindow    = flag.Int("window", 64, "queries in flight in the throughput test")
	flagLatFrac   = flag.Float64("lat-load", 0.5, "paced load for latency, as a fraction of CoreDNS's uncached max rate")
	flagCoreDNS   = flag.String("coredns", "", "CoreDNS binary (default: built once with go install into the cache directory)")
	flagVersion   = flag.String("coredns-version", "v1.11.3", "CoreDNS version to build")
	flagServerCPU = flag.Int("server-cpu", 0, "CPU the servers are pinned to")
	flagLoadCPU   = flag.Int("load-cpu", 1, "CPU the load generator is pinned to")

	// child flags
	flagTarget = flag.String("target", "", "load child: server address")
	flagRate   = flag.Float64("rate", 0, "load child: paced rate (0: closed loop)")
	flagPid    = flag.Int("pid", 0, "load child: server pid, for its CPU time")
)

type loadArgs struct {
	target             string
	services, headless int
	window             int
	rate               float64
	warm, dur          time.Duration
	pid                int
}

func main() {
	flag.Parse()
	var err error
	switch os.Getenv(roleEnv) {
	case "server":
		err = serveChild()
	case "load":
		var r *loadResult
		r, err = runLoad(loadArgs{target: *flagTarget, services: *flagServices, headless: *flagHeadless, window: *flagWindow,
			rate: *flagRate, warm: 500 * time.Millisecond, dur: *flagDur, pid: *flagPid})
		if err == nil {
			err = json.NewEncoder(os.Stdout).Encode(r)
		}
	default:
		err = run()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "dns bench: %v\n", err)
		os.Exit(1)
	}
}

// serveChild is podnet's server: the Index built by Replace, one UDP socket on 127.0.0.1.
func serveChild() error {
	c := newCluster(*flagServices, *flagHeadless)
	ix, err := pdns.NewIndex(pdns.Config{})
	if err != nil {
		return err
	}
	ix.Replace(c.services, c.slices, nil, c.namespaces)
	srv, err := pdns.NewServer(pdns.ServerConfig{Index: ix, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		return err
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(pc.LocalAddr().String())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return srv.ServeUDP(ctx, pc)
}

// server is one DNS server under test.
type server struct {
	name string
	addr string
	cmd  *exec.Cmd
}

func (s *server) pid() int { return s.cmd.Process.Pid }

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	began := time.Now()
	loadBefore := loadavg()
	if runtime.NumCPU() < 2 {
		return errors.New("needs at least 2 CPUs (one for the servers, one for the load generator)")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	coredns, err := corednsBinary(ctx)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "podnet-bench-dns-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	// The objects, in a lab store behind the lab's Kubernetes API, served over HTTP on loopback.
	c := newCluster(*flagServices, *flagHeadless)
	store, err := lab.NewStore("")
	if err != nil {
		return err
	}
	defer store.Close()
	cl := store.Client()
	for _, ns := range c.namespaces {
		if _, err := cl.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	for _, svc := range c.services {
		if _, err := cl.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	for _, sl := range c.slices {
		if _, err := cl.DiscoveryV1().EndpointSlices(sl.Namespace).Create(ctx, sl, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	kapi, err := lab.StartKubeAPI(store, filepath.Join(tmp, "api.sock"), quiet)
	if err != nil {
		return err
	}
	defer kapi.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: kapi, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()
	kubeconfig := filepath.Join(tmp, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: bench
  cluster:
    server: http://%s
contexts:
- name: bench
  context:
    cluster: bench
    user: bench
users:
- name: bench
  user: {}
current-context: bench
`, ln.Addr())), 0o600); err != nil {
		return err
	}

	// The servers, each GOMAXPROCS=1 on the server CPU.
	pin := func(cpu int, name string, args ...string) *exec.Cmd {
		cmd := exec.Command("taskset", append([]string{"-c", strconv.Itoa(cpu), name}, args...)...)
		cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		return cmd
	}
	var servers []*server
	defer func() {
		for _, s := range servers {
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
			_ = s.cmd.Wait()
		}
	}()
	pcmd := pin(*flagServerCPU, self, "-services", strconv.Itoa(*flagServices), "-headless", strconv.Itoa(*flagHeadless))
	pcmd.Env = append(pcmd.Env, roleEnv+"=server")
	out, err := pcmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := pcmd.Start(); err != nil {
		return err
	}
	pod := &server{name: "podnet", cmd: pcmd}
	servers = append(servers, pod)
	line := make([]byte, 64)
	n, err := out.Read(line)
	if err != nil {
		return fmt.Errorf("podnet server: %w", err)
	}
	pod.addr = strings.TrimSpace(string(line[:n]))

	var cdLog strings.Builder
	for _, cd := range []struct{ name, extra string }{{"CoreDNS", ""}, {"CoreDNS cache 30", "    cache 30\n"}} {
		port, err := freeUDPPort()
		if err != nil {
			return err
		}
		corefile := filepath.Join(tmp, fmt.Sprintf("Corefile.%d", port))
		conf := fmt.Sprintf("cluster.local:%d {\n    bind 127.0.0.1\n%s    kubernetes cluster.local {\n        kubeconfig %s\n    }\n}\n", port, cd.extra, kubeconfig)
		if err := os.WriteFile(corefile, []byte(conf), 0o600); err != nil {
			return err
		}
		cmd := pin(*flagServerCPU, coredns, "-conf", corefile, "-quiet")
		cmd.Stdout, cmd.Stderr = &cdLog, &cdLog
		cmd.Dir = tmp
		if err := cmd.Start(); err != nil {
			return err
		}
		servers = append(servers, &server{name: cd.name, addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd})
	}

	// Wait until each answers correctly, then check every question of the mix in full.
	qs := mix(*flagServices, *flagHeadless, 4096, 1)
	for _, s := range servers {
		if err := waitReady(ctx, s, &qs[0]); err != nil {
			return fmt.Errorf("%v\nCoreDNS output:\n%s", err, cdLog.String())
		}
	}
	setup := time.Since(began)
	fmt.Printf("servers ready (%.1fs): podnet %s, CoreDNS %s, CoreDNS+cache %s; objects: %d ClusterIP + %d headless Services\n",
		setup.Seconds(), servers[0].addr, servers[1].addr, servers[2].addr, *flagServices, *flagHeadless)
	verifyBad := map[string]int{}
	for _, s := range servers {
		bad, msgs := verify(s, qs)
		verifyBad[s.name] = bad
		for _, m := range msgs {
			fmt.Printf("  WRONG %s: %s\n", s.name, m)
		}
	}

	load := func(s *server, rate float64, dur time.Duration) (*loadResult, error) {
		cmd := pin(*flagLoadCPU, self, "-target", s.addr, "-services", strconv.Itoa(*flagServices), "-headless", strconv.Itoa(*flagHeadless),
			"-window", strconv.Itoa(*flagWindow), "-rate", strconv.FormatFloat(rate, 'f', 0, 64), "-dur", dur.String(), "-pid", strconv.Itoa(s.pid()))
		cmd.Env = append(os.Environ(), roleEnv+"=load")
		b, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", s.name, err)
		}
		r := &loadResult{}
		if err := json.Unmarshal(b, r); err != nil {
			return nil, fmt.Errorf("load %s: %w: %s", s.name, err, b)
		}
		for _, e := range r.Errors {
			fmt.Printf("  WRONG %s: %s\n", s.name, e)
		}
		return r, nil
	}

	// Throughput: rounds in alternating order.
	type agg struct {
		qps, cpu                    []float64
		sent, ok, wrong, lost, late int64
	}
	res := map[string]*agg{}
	for _, s := range servers {
		res[s.name] = &agg{}
	}
	for round := 0; round < *flagRounds; round++ {
		order := slices.Clone(servers)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, s := range order {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r, err := load(s, 0, *flagDur)
			if err != nil {
				return err
			}
			a := res[s.name]
			a.qps, a.cpu = append(a.qps, r.QPS), append(a.cpu, r.ServerCPU)
			a.sent, a.ok, a.wrong, a.lost, a.late = a.sent+r.Sent, a.ok+r.OK, a.wrong+r.Wrong, a.lost+r.Lost, a.late+r.Late
			fmt.Printf("  round %d %-17s %8.0f q/s  server CPU %3.0f%%  wrong %d lost %d\n", round+1, s.name, r.QPS, 100*r.ServerCPU, r.Wrong, r.Lost)
		}
	}

	// Latency at the same paced load for each.
	rate := *flagLatFrac * benchenv.Median(res["CoreDNS"].qps)
	lat := map[string]*loadResult{}
	for _, s := range servers {
		r, err := load(s, rate, *flagLatDur)
		if err != nil {
			return err
		}
		lat[s.name] = r
	}

	podQPS := benchenv.Median(res["podnet"].qps)
	fmt.Printf("\nDNS, one core per server (GOMAXPROCS=1, CPU %d; load generator on CPU %d), %d ClusterIP + %d headless Services, mix 40%% A / 20%% SRV / 20%% headless A / 20%% NXDOMAIN\n",
		*flagServerCPU, *flagLoadCPU, *flagServices, *flagHeadless)
	fmt.Printf("throughput: %d rounds x %v, %d in flight; latency: paced at %.0f q/s (%.0f%% of CoreDNS's uncached max) for %v\n\n",
		*flagRounds, *flagDur, *flagWindow, rate, 100**flagLatFrac, *flagLatDur)
	fmt.Printf("| server | q/s on 1 core (median) | rounds | server CPU | q per server CPU-s | podnet / this (q/s, q/CPU-s) | p50 µs | p99 µs | p99.9 µs | wrong (verify / load) | lost |\n")
	fmt.Printf("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	perCPU := func(a *agg) float64 {
		var xs []float64
		for i := range a.qps {
			if a.cpu[i] > 0 {
				xs = append(xs, a.qps[i]/a.cpu[i])
			}
		}
		return benchenv.Median(xs)
	}
	for _, s := range servers {
		a, l := res[s.name], lat[s.name]
		var rs []string
		for _, q := range a.qps {
			rs = append(rs, fmt.Sprintf("%.0f", q/1e3)+"k")
		}
		ratio := "—"
		if s.name != "podnet" {
			ratio = fmt.Sprintf("%.2f, %.2f", podQPS/benchenv.Median(a.qps), perCPU(res["podnet"])/perCPU(a))
		}
		fmt.Printf("| %s | %.0f | %s | %.0f%% | %.0f | %s | %.0f | %.0f | %.0f | %d / %d | %d |\n", s.name, benchenv.Median(a.qps), strings.Join(rs, " "),
			100*benchenv.Median(a.cpu), perCPU(a), ratio, l.P50us, l.P99us, l.P999us, verifyBad[s.name], a.wrong+l.Wrong, a.lost+l.Lost)
	}
	target := podQPS / benchenv.Median(res["CoreDNS"].qps)
	verdict := "meets"
	if target < 1.5 {
		verdict = "MISSES"
	}
	fmt.Printf("\npodnet / CoreDNS (uncached) = %.2f q/s on one core (%.2f per server CPU-second): %s the DESIGN.md target (>= 1.5).\n",
		target, perCPU(res["podnet"])/perCPU(res["CoreDNS"]), verdict)
	fmt.Printf("load average before / after: %s / %s (other work on the host shows as server CPU below 100%%). Total %.0fs.\n",
		loadBefore, loadavg(), time.Since(began).Seconds())
	return nil
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func freeUDPPort() (int, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port, nil
}

func exchange(addr string, q *query) (*dns.Msg, error) {
	m := new(dns.Msg)
	if err := m.Unpack(q.wire); err != nil {
		return nil, err
	}
	m.Id = dns.Id()
	c := &dns.Client{Net: "udp", Timeout: time.Second}
	r, _, err := c.Exchange(m, addr)
	return r, err
}

func waitReady(ctx context.Context, s *server, q *query) error {
	deadline := time.Now().Add(90 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if s.cmd.ProcessState != nil {
			return fmt.Errorf("%s exited", s.name)
		}
		r, err := exchange(s.addr, q)
		if err == nil {
			if last = check(q, r); last == "" {
				return nil
			}
		} else {
			last = err.Error()
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%s at %s not ready after 90s: %s", s.name, s.addr, last)
}

// verify asks every question of the mix once and checks each answer in full.
func verify(s *server, qs []query) (bad int, msgs []string) {
	for i := range qs {
		r, err := exchange(s.addr, &qs[i])
		why := ""
		if err != nil {
			why = err.Error()
		} else {
			why = check(&qs[i], r)
		}
		if why != "" {
			bad++
			if len(msgs) < 5 {
				msgs = append(msgs, fmt.Sprintf("%s %s: %s", qs[i].name, dns.TypeToString[qs[i].qtype], why))
			}
		}
	}
	return bad, msgs
}

// corednsBinary returns -coredns, or CoreDNS built once into the cache directory.
func corednsBinary(ctx context.Context) (string, error) {
	if *flagCoreDNS != "" {
		return *flagCoreDNS, nil
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		base = "/var/cache"
	}
	dir := filepath.Join(base, "podnet-bench", "coredns-"+*flagVersion)
	bin := filepath.Join(dir, "coredns")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	work, err := os.MkdirTemp("", "podnet-bench-coredns-build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	fmt.Fprintf(os.Stderr, "building CoreDNS %s into %s (once; takes a few minutes)…\n", *flagVersion, dir)
	cmd := exec.CommandContext(ctx, "go", "install", "github.com/coredns/coredns@"+*flagVersion)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-mod=mod", "GOWORK=off")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building CoreDNS: %w", err)
	}
	return bin, nil
}
