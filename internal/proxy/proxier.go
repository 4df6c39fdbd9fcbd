package proxy

import (
	"context"
	"log/slog"
	"net/netip"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// SliceServiceIndex is the EndpointSlice informer index (namespace/service-name) the proxier
// uses to find one Service's slices without scanning all of them.
const SliceServiceIndex = "podnet-service"

// SliceServiceIndexFunc indexes EndpointSlices by namespace/service-name.
func SliceServiceIndexFunc(obj interface{}) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok || s.Labels[discoveryv1.LabelServiceName] == "" {
		return nil, nil
	}
	return []string{s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName]}, nil
}

// Config wires a Proxier to one node.
type Config struct {
	Node        string
	ClusterCIDR netip.Prefix
	Kernel      *Kernel
	Conntrack   Conntrack // nil: no conntrack cleanup
	Services    corelisters.ServiceLister
	Slices      discoverylisters.EndpointSliceLister
	SliceIndex  cache.Indexer // optional, indexed by SliceServiceIndex
	Log         *slog.Logger
}

// HealthCheck is one externalTrafficPolicy Local Service's health-check port and how many
// endpoints it has on this node.
type HealthCheck struct {
	Port           uint16
	LocalEndpoints int
}

// SyncResult reports one sync, for metrics and health.
type SyncResult struct {
	Full            bool // the whole table was rendered and compared (start, resync, after an error)
	Ports           int  // Service ports programmed
	ChangedServices int
	Apply           ApplyStats
	Render          time.Duration // snapshot and render
	Total           time.Duration // everything, kernel included
	StaleFlows      int
	FlowsDeleted    uint
	Affinity        int // stale affinity choices removed
	HealthChecks    map[types.NamespacedName]HealthCheck
	Elements        map[string]int // elements per set
	NoLocalInternal int            // internalTrafficPolicy Local ports without a local endpoint
	NoLocalExternal int            // externalTrafficPolicy Local ports without a local endpoint
}

// svcFacts is what the proxier remembers of one Service between syncs.
type svcFacts struct {
	ports    []ServicePort
	hc       *HealthCheck
	noLocalI int
	noLocalE int
}

// Proxier keeps one node's proxy table in step with the cluster. Informer handlers call
// ServiceChanged (they never touch the kernel); Sync, run by a bounded-frequency runner,
// re-renders only the Services that changed and applies their element difference in one
// transaction. The first sync, the periodic resync and the sync after an error render and compare
// the whole table instead.
type Proxier struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	dirty    map[types.NamespacedName]bool
	needFull bool

	desired *Desired
	svcs    map[types.NamespacedName]*svcFacts
	hcs     map[types.NamespacedName]HealthCheck
	noLocI  int
	noLocE  int
}

// New makes a proxier.
func New(cfg Config) *Proxier {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Proxier{cfg: cfg, log: cfg.Log, dirty: map[types.NamespacedName]bool{}, needFull: true}
}

// ServiceChanged records that a Service or one of its EndpointSlices changed.
func (p *Proxier) ServiceChanged(ns, name string) {
	p.mu.Lock()
	p.dirty[types.NamespacedName{Namespace: ns, Name: name}] = true
	p.mu.Unlock()
}

// RequestFull makes the next sync a full one.
func (p *Proxier) RequestFull() {
	p.mu.Lock()
	p.needFull = true
	p.mu.Unlock()
}

// Sync brings the table in step: only the changed Services when it can, all of them otherwise
// (a sync with nothing recorded is the runner's periodic resync, and is full).
func (p *Proxier) Sync(ctx context.Context) (SyncResult, error) {
	p.mu.Lock()
	dirty := p.dirty
	p.dirty = map[types.NamespacedName]bool{}
	full := p.needFull || p.desired == nil || len(dirty) == 0
	p.needFull = false
	p.mu.Unlock()
	var res SyncResult
	var err error
	if full {
		res, err = p.fullSync()
	} else {
		res, err = p.partialSync(dirty)
	}
	if err != nil {
		p.mu.Lock()
		p.needFull = true
		p.mu.Unlock()
		p.cfg.Kernel.Forget()
	}
	return res, err
}

func (p *Proxier) fullSync() (SyncResult, error) {
	start := time.Now()
	res := SyncResult{Full: true}
	svcs, err := p.cfg.Services.List(labels.Everything())
	if err != nil {
		return res, err
	}
	slices, err := p.cfg.Slices.List(labels.Everything())
	if err != nil {
		return res, err
	}
	snap := BuildSnapshot(svcs, slices, p.cfg.Node)
	d := NewDesired(Options{ClusterCIDR: p.cfg.ClusterCIDR})
	facts := map[types.NamespacedName]*svcFacts{}
	for i := range snap.Ports {
		sp := &snap.Ports[i]
		pr := RenderPort(sp)
		d.SetPort(sp.Name, &pr)
		nn := types.NamespacedName{Namespace: sp.Name.Namespace, Name: sp.Name.Name}
		if facts[nn] == nil {
			facts[nn] = &svcFacts{}
		}
		facts[nn].ports = append(facts[nn].ports, *sp)
	}
	for _, f := range facts {
		f.summarize()
	}
	rs := d.Ruleset()
	res.Render = time.Since(start)

	k := p.cfg.Kernel
	if err := k.Load(); err != nil {
		return res, err
	}
	before := k.Programmed(SetEndpoints)
	if res.Apply, err = k.Apply(rs); err != nil {
		return res, err
	}
	p.desired, p.svcs = d, facts
	p.recount()
	after := rs.Set(SetEndpoints).Elements
	p.cleanup(&res, before, after, hasAffinity(snap.Ports))
	res.Ports = len(snap.Ports)
	return p.finish(res, start), nil
}

func (p *Proxier) partialSync(dirty map[types.NamespacedName]bool) (SyncResult, error) {
	start := time.Now()
	res := SyncResult{ChangedServices: len(dirty)}
	before, after := map[string]Element{}, map[string]Element{}
	affinity := false
	for nn := range dirty {
		var ports []ServicePort
		svc, err := p.cfg.Services.Services(nn.Namespace).Get(nn.Name)
		if err != nil && !apierrors.IsNotFound(err) {
			return res, err
		}
		if svc != nil && err == nil {
			ports = BuildSnapshot([]*corev1.Service{svc}, p.slicesFor(nn), p.cfg.Node).Ports
		}
		old := p.svcs[nn]
		if old != nil {
			for _, sp := range old.ports {
				affinity = affinity || sp.AffinitySeconds > 0
				collectEndpoints(before, p.desired.ports[sp.Name])
				p.desired.SetPort(sp.Name, nil)
			}
		}
		if len(ports) == 0 {
			delete(p.svcs, nn)
			continue
		}
		f := &svcFacts{ports: ports}
		for i := range ports {
			pr := RenderPort(&ports[i])
			collectEndpoints(after, pr)
			p.desired.SetPort(ports[i].Name, &pr)
			affinity = affinity || ports[i].AffinitySeconds > 0
		}
		f.summarize()
		p.svcs[nn] = f
	}
	p.recount()
	delta := p.desired.Delta()
	res.Render = time.Since(start)
	var err error
	if res.Apply, err = p.cfg.Kernel.ApplyDelta(delta); err != nil {
		return res, err
	}
	p.cleanup(&res, before, after, affinity)
	res.Ports = len(p.desired.ports)
	return p.finish(res, start), nil
}

func collectEndpoints(into map[string]Element, pr PortRender) {
	for _, e := range pr.Elements {
		if e.Set == SetEndpoints {
			into[string(e.Element.Key)] = e.Element
		}
	}
}

// cleanup deletes stale UDP conntrack entries and stale affinity choices after a change.
func (p *Proxier) cleanup(res *SyncResult, before, after map[string]Element, affinity bool) {
	if res.Apply.ElementsAdded+res.Apply.ElementsRemoved == 0 {
		return
	}
	if p.cfg.Conntrack != nil {
		flows := StaleUDPFlows(before, after)
		res.StaleFlows = len(flows)
		if len(flows) > 0 {
			n, err := p.cfg.Conntrack.DeleteUDP(flows)
			res.FlowsDeleted = n
			if err != nil {
				p.log.Warn("conntrack cleanup failed", "err", err)
			} else if n > 0 {
				p.log.Info("deleted stale UDP conntrack entries", "entries", n, "flows", len(flows))
			}
		}
	}
	if affinity && res.Apply.ElementsRemoved > 0 {
		k := p.cfg.Kernel
		if entries, err := k.AffinityEntries(); err == nil {
			stale := staleAffinity(entries, k.Programmed(SetEndpoints))
			if err := k.ForgetAffinity(stale); err != nil {
				p.log.Warn("affinity cleanup failed", "err", err)
			}
			res.Affinity = len(stale)
		}
	}
}

func (p *Proxier) finish(res SyncResult, start time.Time) SyncResult {
	res.Total = time.Since(start)
	res.HealthChecks = p.hcs
	res.NoLocalInternal, res.NoLocalExternal = p.noLocI, p.noLocE
	res.Elements = map[string]int{}
	for name, m := range p.desired.sets {
		res.Elements[name] = len(m)
	}
	if res.Apply.Changed() {
		p.log.Info("services synced", "full", res.Full, "ports", res.Ports, "changedServices", res.ChangedServices,
			"elementsAdded", res.Apply.ElementsAdded, "elementsRemoved", res.Apply.ElementsRemoved,
			"chainsAdded", res.Apply.ChainsAdded, "chainsRemoved", res.Apply.ChainsRemoved, "took", res.Total.Round(time.Microsecond))
	}
	return res
}

func (f *svcFacts) summarize() {
	f.hc, f.noLocalI, f.noLocalE = nil, 0, 0
	for i := range f.ports {
		sp := &f.ports[i]
		n := len(sp.LocalEndpoints())
		if sp.ExternalLocal && sp.HealthCheckPort != 0 {
			if f.hc == nil {
				f.hc = &HealthCheck{Port: sp.HealthCheckPort}
			}
			f.hc.LocalEndpoints = max(f.hc.LocalEndpoints, n)
		}
		if n == 0 && sp.InternalLocal {
			f.noLocalI++
		}
		if n == 0 && sp.ExternalLocal {
			f.noLocalE++
		}
	}
}

// recount rebuilds the per-node summaries (cheap: one pass over Services, no rendering).
func (p *Proxier) recount() {
	hcs := map[types.NamespacedName]HealthCheck{}
	p.noLocI, p.noLocE = 0, 0
	for nn, f := range p.svcs {
		if f.hc != nil {
			hcs[nn] = *f.hc
		}
		p.noLocI += f.noLocalI
		p.noLocE += f.noLocalE
	}
	p.hcs = hcs
}

func (p *Proxier) slicesFor(nn types.NamespacedName) []*discoveryv1.EndpointSlice {
	if p.cfg.SliceIndex != nil {
		objs, err := p.cfg.SliceIndex.ByIndex(SliceServiceIndex, nn.Namespace+"/"+nn.Name)
		if err == nil {
			out := make([]*discoveryv1.EndpointSlice, 0, len(objs))
			for _, o := range objs {
				if s, ok := o.(*discoveryv1.EndpointSlice); ok {
					out = append(out, s)
				}
			}
			return out
		}
	}
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: nn.Name})
	out, _ := p.cfg.Slices.EndpointSlices(nn.Namespace).List(sel)
	return out
}

// Snapshot returns the Service ports the table holds, sorted by name.
func (p *Proxier) Snapshot() Snapshot {
	var s Snapshot
	for _, f := range p.svcs {
		s.Ports = append(s.Ports, f.ports...)
	}
	sort.Slice(s.Ports, func(i, j int) bool { return s.Ports[i].Name.less(s.Ports[j].Name) })
	return s
}

func hasAffinity(ports []ServicePort) bool {
	for _, sp := range ports {
		if sp.AffinitySeconds > 0 {
			return true
		}
	}
	return false
}
