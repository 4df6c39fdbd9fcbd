package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"runtime/pprof"
	"time"

	"github.com/google/nftables"
	discoveryv1 "k8s.io/api/discovery/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/podnet/podnet/internal/proxy"

	"github.com/podnet/podnet/bench/internal/benchenv"
)

var opts = proxy.Options{ClusterCIDR: clusterCIDR}

type syncResult struct {
	services             int
	render, apply, total time.Duration
	elements, chains     int
	readBack             int
}

// fullSync renders and applies n generated Services into an empty table in a fresh namespace,
// runs times per size, and reads the table back once to count what the kernel holds.
func fullSync(ctx context.Context, e *env, sizes []int, runs int) ([]syncResult, error) {
	var out []syncResult
	for _, n := range sizes {
		snap := genSnapshot(n)
		var renders, applies, totals []time.Duration
		res := syncResult{services: n}
		for r := 0; r < runs; r++ {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			err := func() error {
				ns, err := e.OpenNS(ctx, fmt.Sprintf("sync%d-%d", n, r))
				if err != nil {
					return err
				}
				defer ns.Release()
				k, err := proxy.NewKernel(int(ns.H))
				if err != nil {
					return fmt.Errorf("nftables in %s: %w", ns.Name, err)
				}
				defer k.Close()
				start := time.Now()
				rs := proxy.Render(snap, opts)
				rendered := time.Now()
				st, err := k.Apply(rs)
				if err != nil {
					return fmt.Errorf("full sync of %d Services: %w", n, err)
				}
				done := time.Now()
				renders = append(renders, rendered.Sub(start))
				applies = append(applies, done.Sub(rendered))
				totals = append(totals, done.Sub(start))
				res.elements, res.chains = countElements(rs), len(rs.Chains)
				if st.ElementsAdded != res.elements {
					return fmt.Errorf("full sync of %d Services added %d elements, want %d", n, st.ElementsAdded, res.elements)
				}
				if r == 0 {
					// Read the table back with a second, fresh Kernel (as a restarted agent would).
					k2, err := proxy.NewKernel(int(ns.H))
					if err != nil {
						return err
					}
					defer k2.Close()
					if err := k2.Load(); err != nil {
						return fmt.Errorf("read back %d Services: %w", n, err)
					}
					for _, s := range rs.Sets {
						res.readBack += len(k2.Programmed(s.Name))
					}
					if res.readBack != res.elements {
						return fmt.Errorf("read back %d elements for %d Services, rendered %d", res.readBack, n, res.elements)
					}
				}
				fmt.Printf("  %6d Services: Render %7.1f ms  Apply %7.1f ms  (%d elements)\n", n,
					float64(rendered.Sub(start))/1e6, float64(done.Sub(rendered))/1e6, res.elements)
				return nil
			}()
			if err != nil {
				return nil, err
			}
		}
		res.render, res.apply, res.total = benchenv.MedianDur(renders), benchenv.MedianDur(applies), benchenv.MedianDur(totals)
		out = append(out, res)
	}
	return out, nil
}

var incOps = []string{"(a) add one Service", "(b) replace one endpoint IP", "(c) remove one Service"}

type opResult struct {
	total, render, apply time.Duration
	added, removed       int
}

type incResult struct {
	ops                     map[string]opResult
	fullTotal, fullRender   time.Duration // Proxier full resync with nothing changed
	fullApply               time.Duration
	rawAdd, rawDel, rawRepl time.Duration
}

// incremental runs a Proxier (as the agent does: listers over informer-style indexers, the
// EndpointSlice store indexed by Service) over n generated Services in a fresh namespace: one
// full Sync loads the table, then reps times it adds one Service, replaces one endpoint IP of an
// existing Service and removes the added Service again, each a store change, ServiceChanged and
// one timed Sync, which must be partial and change set elements only.
func incremental(ctx context.Context, e *env, n, reps int, profile string) (*incResult, error) {
	ns, err := e.OpenNS(ctx, fmt.Sprintf("inc%d", n))
	if err != nil {
		return nil, err
	}
	defer ns.Release()
	k, err := proxy.NewKernel(int(ns.H))
	if err != nil {
		return nil, fmt.Errorf("nftables in %s: %w", ns.Name, err)
	}
	defer k.Close()
	svcs, slices, err := newIndexers(n)
	if err != nil {
		return nil, err
	}
	p := proxy.New(proxy.Config{Node: benchNode, ClusterCIDR: clusterCIDR, Kernel: k,
		Services: corelisters.NewServiceLister(svcs), Slices: discoverylisters.NewEndpointSliceLister(slices),
		SliceIndex: slices, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	first, err := p.Sync(ctx)
	if err != nil {
		return nil, fmt.Errorf("load %d Services: %w", n, err)
	}
	if !first.Full || first.Ports != n || first.Apply.ElementsAdded == 0 {
		return nil, fmt.Errorf("first sync of %d Services: %+v", n, first)
	}
	changeIdx := n / 2 // a generated Service in the middle (the only one when n == 1)
	changeName := genName(changeIdx)

	type samples struct {
		total, render, apply []time.Duration
		added, removed       int
	}
	s := map[string]*samples{}
	for _, op := range incOps {
		s[op] = &samples{}
	}
	step := func(op, name string, change func() error) error {
		if err := change(); err != nil {
			return fmt.Errorf("%s with %d Services: %w", op, n, err)
		}
		p.ServiceChanged("bench", name)
		res, err := p.Sync(ctx)
		if err != nil {
			return fmt.Errorf("%s with %d Services: %w", op, n, err)
		}
		st := res.Apply
		if res.Full || res.ChangedServices != 1 {
			return fmt.Errorf("%s with %d Services: not a one-Service partial sync: %+v", op, n, res)
		}
		if st.ChainsAdded+st.ChainsRemoved+st.ChainsRewritten > 0 || st.ElementsAdded+st.ElementsRemoved == 0 {
			return fmt.Errorf("%s with %d Services: want an element-only change: %+v", op, n, st)
		}
		x := s[op]
		x.total = append(x.total, res.Total)
		x.render = append(x.render, res.Render)
		x.apply = append(x.apply, res.Total-res.Render)
		x.added, x.removed = st.ElementsAdded, st.ElementsRemoved
		return nil
	}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	// Replacement pod IPs sort after every generated endpoint of the changed Service, so the new
	// IP takes the replaced endpoint's slot (the minimal change: one endpoints-map element gets
	// new data).
	replBase := netip.MustParseAddr("10.244.250.0")
	for i := 0; i < reps; i++ {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		extra := extraName(i)
		if err := step(incOps[0], extra, func() error {
			if err := svcs.Add(genService("bench", extra, addrAdd(extraBase, i))); err != nil {
				return err
			}
			return slices.Add(genSlice("bench", extra, 100000+i))
		}); err != nil {
			return nil, err
		}
		if err := step(incOps[1], changeName, func() error {
			o, ok, err := slices.GetByKey("bench/" + changeName + "-x")
			if err != nil || !ok {
				return fmt.Errorf("slice of %s: found %v, %v", changeName, ok, err)
			}
			sl := o.(*discoveryv1.EndpointSlice).DeepCopy()
			sl.Endpoints[2].Addresses = []string{addrAdd(replBase, i).String()}
			return slices.Update(sl)
		}); err != nil {
			return nil, err
		}
		if err := step(incOps[2], extra, func() error {
			for _, x := range []struct {
				store cache.Indexer
				key   string
			}{{svcs, "bench/" + extra}, {slices, "bench/" + extra + "-x"}} {
				o, ok, err := x.store.GetByKey(x.key)
				if err != nil || !ok {
					return fmt.Errorf("%s: found %v, %v", x.key, ok, err)
				}
				if err := x.store.Delete(o); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}
	res := &incResult{ops: map[string]opResult{}}
	for _, op := range incOps {
		x := s[op]
		res.ops[op] = opResult{total: benchenv.MedianDur(x.total), render: benchenv.MedianDur(x.render), apply: benchenv.MedianDur(x.apply),
			added: x.added, removed: x.removed}
	}

	// The Proxier's periodic resync (Sync with nothing recorded): list, render and compare the
	// whole table, and an empty commit.
	var fTotal, fRender, fApply []time.Duration
	for i := 0; i < reps; i++ {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		r, err := p.Sync(ctx)
		if err != nil {
			return nil, fmt.Errorf("resync of %d Services: %w", n, err)
		}
		if !r.Full || r.Apply.Changed() || r.Ports != n {
			return nil, fmt.Errorf("resync of %d unchanged Services: %+v", n, r)
		}
		fTotal = append(fTotal, r.Total)
		fRender = append(fRender, r.Render)
		fApply = append(fApply, r.Total-r.Render)
	}
	res.fullTotal, res.fullRender, res.fullApply = benchenv.MedianDur(fTotal), benchenv.MedianDur(fRender), benchenv.MedianDur(fApply)
	// The kernel's own cost of a one-element change: straight netlink, no Render and no diff.
	// The probe element uses a ClusterIP no Service has and is removed again, so the table ends
	// as the Kernel remembers it.
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns.H)), nftables.AsLasting())
	if err != nil {
		return nil, err
	}
	defer conn.CloseLasting()
	set := &nftables.Set{Table: &nftables.Table{Name: proxy.TableName, Family: nftables.TableFamilyIPv4},
		Name: proxy.SetEndpoints, IsMap: true}
	var sample proxy.Element
	for _, el := range k.Programmed(proxy.SetEndpoints) {
		sample = el
		break
	}
	key := append([]byte(nil), sample.Key...)
	probe := netip.MustParseAddr("10.111.255.254").As4()
	copy(key, probe[:])
	val1 := sample.Data
	val2 := append([]byte(nil), sample.Data...)
	val2[3] ^= 0x7f
	// Check once that the probe element really lands in the kernel's map.
	if err := conn.SetAddElements(set, []nftables.SetElement{{Key: key, Val: val1}}); err != nil {
		return nil, err
	}
	if err := conn.Flush(); err != nil {
		return nil, fmt.Errorf("raw add: %w", err)
	}
	got, err := conn.GetSetElements(set)
	if err != nil {
		return nil, fmt.Errorf("read back %s: %w", proxy.SetEndpoints, err)
	}
	found := false
	for _, el := range got {
		found = found || (bytes.Equal(el.Key, key) && bytes.Equal(el.Val, val1))
	}
	if !found {
		return nil, fmt.Errorf("raw add: probe element not in %s (%d elements)", proxy.SetEndpoints, len(got))
	}
	if err := conn.SetDeleteElements(set, []nftables.SetElement{{Key: key}}); err != nil {
		return nil, err
	}
	if err := conn.Flush(); err != nil {
		return nil, fmt.Errorf("raw delete: %w", err)
	}
	var adds, dels, repls []time.Duration
	timed := func(ds *[]time.Duration, f func() error) error {
		if err := f(); err != nil {
			return err
		}
		start := time.Now()
		if err := conn.Flush(); err != nil {
			return err
		}
		*ds = append(*ds, time.Since(start))
		return nil
	}
	for i := 0; i < reps; i++ {
		if err := timed(&adds, func() error {
			return conn.SetAddElements(set, []nftables.SetElement{{Key: key, Val: val1}})
		}); err != nil {
			return nil, fmt.Errorf("raw add: %w", err)
		}
		if err := timed(&repls, func() error {
			if err := conn.SetDeleteElements(set, []nftables.SetElement{{Key: key, Val: val1}}); err != nil {
				return err
			}
			return conn.SetAddElements(set, []nftables.SetElement{{Key: key, Val: val2}})
		}); err != nil {
			return nil, fmt.Errorf("raw replace: %w", err)
		}
		if err := timed(&dels, func() error {
			return conn.SetDeleteElements(set, []nftables.SetElement{{Key: key}})
		}); err != nil {
			return nil, fmt.Errorf("raw delete: %w", err)
		}
	}
	res.rawAdd, res.rawDel, res.rawRepl = benchenv.MedianDur(adds), benchenv.MedianDur(dels), benchenv.MedianDur(repls)
	fmt.Printf("  %6d loaded: Proxier.Sync add %s, replace endpoint %s, remove %s (full resync %s; raw commit add %s, del %s, replace %s)\n",
		n, ms(res.ops[incOps[0]].total), ms(res.ops[incOps[1]].total), ms(res.ops[incOps[2]].total),
		ms(res.fullTotal), ms(res.rawAdd), ms(res.rawDel), ms(res.rawRepl))
	return res, nil
}
