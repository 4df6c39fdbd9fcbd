// Command services benchmarks podnet's Service proxy (internal/proxy) against the DESIGN.md
// targets and prints one ratio table from one run (run as root: go run ./bench/services).
//
// Everything is measured against podnet's own kernel code: snapshots are built directly (Services
// with ClusterIPs in 10.96.0.0/12, three endpoints each with pod IPs in 10.244.0.0/16), rendered
// with proxy.Render and programmed with proxy.Kernel.Apply into network namespaces the benchmark
// creates (all named pnbench-<random>-…, removed on exit, error or Ctrl-C):
//
//  1. full sync (Render + Apply into an empty table) of 1k, 10k and 30k Services, each in a
//     fresh namespace;
//  2. with 10k Services loaded and with 1, as the agent runs: a proxy.Proxier over listers backed
//     by indexers holding corev1.Service and discoveryv1.EndpointSlice objects (three endpoints
//     each), loaded by one full Sync; then adding one Service, replacing one endpoint IP of one
//     Service and removing one Service, each a store change, ServiceChanged and one partial
//     Proxier.Sync, repeated -reps times (medians, split into Render and ApplyDelta), with the
//     Proxier's full resync of the unchanged table and the kernel commit of a one-element change
//     sent straight over netlink for reference;
//  3. the new-connection rate from a client pod to a server pod on a node namespace's bridge:
//     straight to the pod IP, and to a ClusterIP with 1 and with 10k Services loaded.
//
// Traffic only ever goes to addresses inside the benchmark's own namespaces.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podnet/podnet/bench/internal/benchenv"
)

var (
	flagSizes    = flag.String("sizes", "1000,10000,30000", "Service counts for the full-sync test")
	flagSyncRuns = flag.Int("sync-runs", 3, "full syncs per size, each in a fresh namespace (median reported)")
	flagReps     = flag.Int("reps", 20, "repetitions of each one-Service change (median reported)")
	flagLoaded   = flag.Int("loaded", 10000, "Services loaded for the incremental and connection-rate tests")
	flagConnT    = flag.Duration("conn-time", 3*time.Second, "duration of one connection-rate measurement")
	flagRounds   = flag.Int("rounds", 3, "connection-rate rounds (order alternates; median reported)")
	flagWorkers  = flag.Int("workers", 4, "client threads opening connections")
	flagProfile  = flag.String("cpuprofile", "", "write a CPU profile of the incremental test (10k loaded) to this file")
)

func main() {
	flag.Parse()
	os.Exit(run())
}

func run() int {
	return benchenv.Main("services", func(ctx context.Context, be *benchenv.Env) error { return bench(ctx, &env{be}) })
}

// env is a benchmark run's namespaces and cleanups.
type env struct{ *benchenv.Env }

func sh(ctx context.Context, args ...string) error { return benchenv.Sh(ctx, args...) }

func ipn(ctx context.Context, ns string, args ...string) error { return benchenv.IPN(ctx, ns, args...) }

func sysctl(ctx context.Context, ns, kv string) error {
	return sh(ctx, "ip", "netns", "exec", ns, "sysctl", "-q", "-w", kv)
}

// nsRef is a namespace of the run with an open handle.
type nsRef = benchenv.NS

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "?"
	}
	return unix.ByteSliceToString(u.Release[:])
}

func bench(ctx context.Context, e *env) error {
	var sizes []int
	for _, s := range strings.Split(*flagSizes, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(s), &n); err != nil || n < 1 {
			return fmt.Errorf("-sizes: bad size %q", s)
		}
		sizes = append(sizes, n)
	}
	loaded := *flagLoaded
	fmt.Printf("podnet Service proxy benchmark: kernel %s, %d CPUs, namespaces %s-*\n", kernelRelease(), runtime.NumCPU(), e.ID)
	t := &benchenv.Table{Last: "target / reference"}

	// 1. Full sync.
	fmt.Println("[1/3] full sync…")
	full, err := fullSync(ctx, e, sizes, *flagSyncRuns)
	if err != nil {
		return err
	}
	t.Section(fmt.Sprintf("1. full sync: Render + Kernel.Apply into an empty table, fresh namespace each run, median of %d", *flagSyncRuns))
	for _, r := range full {
		ratio, target := "", ""
		if r.services == 10000 {
			ratio = fmt.Sprintf("%.2f× target", r.total.Seconds()/1.0)
			target = fmt.Sprintf("≤ 1 s %s; kube-proxy nftables 16 s (%.0f× slower)", verdict(r.total.Seconds() <= 1.0), 16/r.total.Seconds())
		}
		t.Add(fmt.Sprintf("%s Services × 3 eps (%d elements, %d chains)", kfmt(r.services), r.elements, r.chains),
			fmt.Sprintf("%.3f s", r.total.Seconds()),
			ratio,
			strings.TrimSpace(fmt.Sprintf("Render %.3f s + Apply %.3f s %s", r.render.Seconds(), r.apply.Seconds(), target)))
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}

	// 2. Incremental changes.
	fmt.Println("[2/3] one-Service changes…")
	incBig, err := incremental(ctx, e, loaded, *flagReps, *flagProfile)
	if err != nil {
		return err
	}
	incOne, err := incremental(ctx, e, 1, *flagReps, "")
	if err != nil {
		return err
	}
	t.Section(fmt.Sprintf("2. one change, Proxier.Sync (partial) over listers of %s (resp. 1) Services + EndpointSlices, median of %d; ratio %s/1 loaded (want ≈ 1.0); target ≤ 10 ms (kube-proxy 141–227 ms)",
		kfmt(loaded), *flagReps, kfmt(loaded)))
	for _, op := range incOps {
		b, o := incBig.ops[op], incOne.ops[op]
		t.Add(op+": Proxier.Sync total", ms(b.total), fmt.Sprintf("%.2f (1 loaded: %s)", ratioDur(b.total, o.total), ms(o.total)),
			fmt.Sprintf("≤ 10 ms %s; partial, +%d/-%d elements, no chains", verdict(b.total <= 10*time.Millisecond), b.added, b.removed))
		t.Add("    Render (lister get + RenderPort + Delta)", ms(b.render), fmt.Sprintf("%.2f (1 loaded: %s)", ratioDur(b.render, o.render), ms(o.render)), "")
		t.Add("    ApplyDelta (Total − Render)", ms(b.apply), fmt.Sprintf("%.2f (1 loaded: %s)", ratioDur(b.apply, o.apply), ms(o.apply)), "")
	}
	t.Add(fmt.Sprintf("full resync at %s (Proxier, nothing changed)", kfmt(loaded)), ms(incBig.fullTotal),
		fmt.Sprintf("%.0f (1 loaded: %s)", ratioDur(incBig.fullTotal, incOne.fullTotal), ms(incOne.fullTotal)),
		fmt.Sprintf("reference: list + Render %s, Apply %s (diff of every element + empty commit)", ms(incBig.fullRender), ms(incBig.fullApply)))
	t.Add("  raw commit: add 1 element", ms(incBig.rawAdd), fmt.Sprintf("%.2f (1 loaded: %s)", ratioDur(incBig.rawAdd, incOne.rawAdd), ms(incOne.rawAdd)), "netlink straight, no Render/diff")
	t.Add("  raw commit: delete 1 element", ms(incBig.rawDel), fmt.Sprintf("%.2f (1 loaded: %s)", ratioDur(incBig.rawDel, incOne.rawDel), ms(incOne.rawDel)), "")
	t.Add("  raw commit: replace 1 element (del+add)", ms(incBig.rawRepl), fmt.Sprintf("%.2f (1 loaded: %s)", ratioDur(incBig.rawRepl, incOne.rawRepl), ms(incOne.rawRepl)), "")
	if ctx.Err() != nil {
		return ctx.Err()
	}

	// 3. New-connection rate.
	fmt.Println("[3/3] new-connection rate…")
	cr, err := connRate(ctx, e, loaded)
	if err != nil {
		return err
	}
	t.Section(fmt.Sprintf("3. new TCP connections/s, client pod → server pod on one node bridge, %s × %d rounds (order alternates), %d client threads, median",
		*flagConnT, *flagRounds, *flagWorkers))
	for _, s := range cr.scenarios {
		var runs []string
		for _, x := range s.results {
			runs = append(runs, fmt.Sprintf("%.0f", x))
		}
		ratio := ""
		if s != cr.direct {
			ratio = fmt.Sprintf("%.3f vs (i)", benchenv.Median(s.results)/benchenv.Median(cr.direct.results))
		}
		t.Add(s.name, fmt.Sprintf("%.0f/s", benchenv.Median(s.results)), ratio, "runs "+strings.Join(runs, " "))
	}
	big, one, direct := benchenv.Median(cr.big.results), benchenv.Median(cr.one.results), benchenv.Median(cr.direct.results)
	t.Add(fmt.Sprintf("(iii)/(ii): ClusterIP, %s vs 1 Service loaded", kfmt(loaded)), "", fmt.Sprintf("%.3f", big/one), "want ≈ 1.0")
	t.Add(fmt.Sprintf("(iii)/(i): ClusterIP with %s loaded / pod IP", kfmt(loaded)), "", fmt.Sprintf("%.3f", big/direct),
		fmt.Sprintf("≥ 0.95 %s (kube-proxy ≈ 0.90); paired %.3f", verdict(big/direct >= 0.95), pairedRatio(cr.big.results, cr.direct.results)))
	t.Add(fmt.Sprintf("(iii)/(i'): ClusterIP / pod IP, both with %s loaded", kfmt(loaded)), "", fmt.Sprintf("%.3f", big/benchenv.Median(cr.directLoaded.results)),
		"the Service hop alone")
	t.Add("(iii)/(ref): podnet's table / one static dnat rule", "", fmt.Sprintf("%.3f", big/benchenv.Median(cr.ref.results)),
		fmt.Sprintf("what the table's design costs over the minimal DNAT; paired %.3f", pairedRatio(cr.big.results, cr.ref.results)))
	if cr.errors > 0 {
		t.Add("failed connection attempts (all scenarios)", fmt.Sprint(cr.errors), "", "")
	}

	fmt.Printf("\npodnet internal/proxy, kernel %s, %d CPUs, one run. Set elements loaded: %s.\n\n", kernelRelease(), runtime.NumCPU(), elementsSummary(full, loaded, cr.elements))
	t.Print()
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

func ratioDur(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
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

func kfmt(n int) string {
	if n >= 1000 && n%1000 == 0 {
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

func elementsSummary(full []syncResult, loaded, connElems int) string {
	var parts []string
	for _, r := range full {
		parts = append(parts, fmt.Sprintf("%s Services → %d (read back from the kernel: %d)", kfmt(r.services), r.elements, r.readBack))
	}
	parts = append(parts, fmt.Sprintf("connection test with %s → %d", kfmt(loaded), connElems))
	return strings.Join(parts, "; ")
}
