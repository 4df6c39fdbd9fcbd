// Command policy benchmarks podnet's NetworkPolicy enforcement (internal/policy) against the
// DESIGN.md targets and prints one table from one run (run as root: go run ./bench/policy; about
// two minutes on 2 cores with the default flags).
//
// Everything runs podnet's own code the way the agent's policy runner does: the whole object set
// (Pods, Namespaces, NetworkPolicies — real k8s.io/api objects) goes through policy.Compile,
// policy.Render for one node (its pods as LocalPodIPs, its pod CIDR as PodCIDRs), and
// policy.Kernel.Apply into that node's namespace. The synthetic cluster (objects.go) has 10 nodes
// with a /22 pod CIDR each; pods are spread round robin, so the measured node (node-0) holds 1/10
// of them. Policies mix podSelector by app label, namespaceSelector, ipBlock with except,
// numeric, named and ranged ports, ingress and egress. Every whole-table install is read back
// from the kernel and its elements counted, so no figure is taken over an incomplete table.
//
// It builds its own network namespaces (all named pnbench-<random>-…, removed on exit, error or
// Ctrl-C, with every nft table and process inside them):
//
//  1. control plane: Compile, Render and the first Kernel.Apply (a fresh namespace each run) for
//     500 and 5,000 pods × 100 and 1,000 policies; then one change at a time — add a policy,
//     delete it, modify one, relabel a pod, and back — as a full Compile + Render + Apply; the
//     Apply of an unchanged table (userspace diff alone) and one-element commits straight over
//     netlink (kernel alone) split the Apply;
//  2. change → enforced: a node namespace with a bridge and two real pods (veth) whose addresses
//     belong to the synthetic set; the client probes the server's TCP port every millisecond
//     while a NetworkPolicy that denies it is added (and then changed to allow it); the latency
//     is the time from the start of the recompute to the first probe sent that was denied
//     (resp. allowed);
//  3. throughput: iperf3 client pod → server pod across the bridge, with no policy table and with
//     1,000 policies selecting both pods, alternated; and new TCP connections per second, also
//     with an empty policy table (only a connection's first packet goes through the allow-set
//     lookups; later packets match "ct state established").
//
// Traffic only ever goes to addresses inside the benchmark's own namespaces.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podnet/podnet/bench/internal/benchenv"
)

var (
	flagCP           = flag.String("cp", "500x100,500x1000,5000x100,5000x1000", "part 1 sizes, pods x policies")
	flagCPRuns       = flag.Int("cp-runs", 3, "part 1: Compile/Render/first Apply runs per size (each Apply in a fresh namespace)")
	flagCPBudget     = flag.Duration("cp-budget", 8*time.Second, "part 1: after the first run, no new build run starts past this much time per size")
	flagReps         = flag.Int("reps", 5, "part 1: repetitions of each one-object change (median reported)")
	flagChangeBudget = flag.Duration("change-budget", 20*time.Second, "part 1: after the first round, no new round of changes starts past this much time per size")
	flagEnforce      = flag.String("enforce", "500x100,500x1000,5000x1000", "part 2 sizes, pods x policies")
	flagRounds       = flag.Int("rounds", 5, "part 2: deny/allow rounds per size (median reported)")
	flagPeriod       = flag.Duration("probe-period", time.Millisecond, "part 2: a new probe connection every")
	flagTimeout      = flag.Duration("probe-timeout", 50*time.Millisecond, "part 2: a probe not answered within this is denied")
	flagTPPods       = flag.Int("tp-pods", 5000, "part 3: synthetic pods (peers of the policies)")
	flagTPPols       = flag.Int("tp-policies", 1000, "part 3: policies selecting the client and server pods")
	flagRuns         = flag.Int("runs", 5, "part 3: iperf3 runs per scenario, alternated (median reported)")
	flagDuration     = flag.Int("t", 3, "part 3: seconds per iperf3 run")
	flagConnT        = flag.Duration("conn-time", 1500*time.Millisecond, "part 3: duration of one connection-rate measurement")
	flagWorkers      = flag.Int("workers", 2, "part 3: client threads opening connections")
	flagIperf        = flag.String("iperf3", "/usr/bin/iperf3", "iperf3 binary")
)

func main() {
	flag.Parse()
	// A closed stdout (| head) must not kill the run before it has cleaned up.
	signal.Ignore(syscall.SIGPIPE)
	os.Exit(run())
}

func run() int {
	if _, err := os.Stat(*flagIperf); err != nil && os.Geteuid() == 0 {
		fmt.Fprintf(os.Stderr, "policy: iperf3: %v\n", err)
		return 2
	}
	return benchenv.Main("policy", func(ctx context.Context, be *benchenv.Env) error { return bench(ctx, &env{be}) })
}

// env is a benchmark run's namespaces and cleanups.
type env struct{ *benchenv.Env }

func ipn(ctx context.Context, ns string, args ...string) error { return benchenv.IPN(ctx, ns, args...) }

func sysctl(ctx context.Context, ns, kv string) error {
	return benchenv.Sh(ctx, "ip", "netns", "exec", ns, "sysctl", "-q", "-w", kv)
}

// nsRef is a namespace of the run with an open handle.
type nsRef = benchenv.NS

// size is one pods × policies combination.
type size struct{ pods, policies int }

func (s size) String() string {
	return fmt.Sprintf("%s pods × %s policies", kfmt(s.pods), kfmt(s.policies))
}

func parseSizes(flagName, v string) ([]size, error) {
	var out []size
	for _, f := range strings.Split(v, ",") {
		var s size
		if _, err := fmt.Sscanf(strings.TrimSpace(f), "%dx%d", &s.pods, &s.policies); err != nil || s.pods < 10 || s.policies < 1 {
			return nil, fmt.Errorf("-%s: bad size %q (want PODSxPOLICIES, pods ≥ 10)", flagName, f)
		}
		out = append(out, s)
	}
	return out, nil
}

func medianInt(xs []int) int {
	f := make([]float64, len(xs))
	for i, x := range xs {
		f[i] = float64(x)
	}
	return int(benchenv.Median(f))
}

func pairedRatio(a, b []float64) float64 {
	var r []float64
	for i := range a {
		if i < len(b) && b[i] > 0 {
			r = append(r, a[i]/b[i])
		}
	}
	return benchenv.Median(r)
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "?"
	}
	return unix.ByteSliceToString(u.Release[:])
}

func kfmt(n int) string {
	if n >= 1000 && n%1000 == 0 {
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func bench(ctx context.Context, e *env) error {
	cpSizes, err := parseSizes("cp", *flagCP)
	if err != nil {
		return err
	}
	enSizes, err := parseSizes("enforce", *flagEnforce)
	if err != nil {
		return err
	}
	start := time.Now()
	fmt.Printf("podnet NetworkPolicy benchmark: kernel %s, %d CPUs, namespaces %s-*\n", kernelRelease(), runtime.NumCPU(), e.ID)
	fmt.Printf("synthetic cluster: %d nodes, pods round robin, the measured node (node-0) holds 1/%d of them; pod CIDR per node /22\n",
		numNodes, numNodes)
	t := &benchenv.Table{Last: "target / notes"}

	fmt.Println("[1/3] control plane: Compile, Render, first Apply, one-object changes…")
	if err := controlPlane(ctx, e, t, cpSizes); err != nil {
		return err
	}
	fmt.Printf("[2/3] change → enforced, probing real pods… (%.0f s)\n", time.Since(start).Seconds())
	lab, err := buildLab(ctx, e)
	if err != nil {
		return err
	}
	if err := enforce(ctx, e, t, lab, enSizes); err != nil {
		return err
	}
	fmt.Printf("[3/3] throughput and connection rate, with and without %s policies… (%.0f s)\n", kfmt(*flagTPPols), time.Since(start).Seconds())
	if err := throughput(ctx, t, lab); err != nil {
		return err
	}
	fmt.Printf("\npodnet internal/policy, kernel %s, %d CPUs, one run (%.0f s).\n\n", kernelRelease(), runtime.NumCPU(), time.Since(start).Seconds())
	t.Print()
	return nil
}
