package proxy

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
)

// Config wires a Proxier to one node.
type Config struct {
	Node        string
	ClusterCIDR netip.Prefix
	Kernel      *Kernel
	Conntrack   Conntrack // nil: no conntrack cleanup
	Services    corelisters.ServiceLister
	Slices      discoverylisters.EndpointSliceLister
	Log         *slog.Logger
}

// SyncResult reports one sync, for metrics and health.
type SyncResult struct {
	Snapshot     Snapshot
	Apply        ApplyStats
	Render       time.Duration // snapshot and render
	Total        time.Duration // everything, kernel included
	StaleFlows   int
	FlowsDeleted uint
	Affinity     int // stale affinity choices removed
}

// Proxier keeps one node's proxy table in step with the cluster. Sync is meant to be a
// bounded-frequency runner's function: informer handlers only ask for a sync.
type Proxier struct {
	cfg Config
	log *slog.Logger

	mu   sync.Mutex
	last SyncResult
	rs   *Ruleset
}

// New makes a proxier.
func New(cfg Config) *Proxier {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Proxier{cfg: cfg, log: cfg.Log}
}

// Sync renders the table for the current snapshot and applies the difference in one
// transaction, then deletes stale UDP conntrack entries and affinity choices.
func (p *Proxier) Sync(ctx context.Context) (SyncResult, error) {
	start := time.Now()
	var res SyncResult
	svcs, err := p.cfg.Services.List(labels.Everything())
	if err != nil {
		return res, err
	}
	slices, err := p.cfg.Slices.List(labels.Everything())
	if err != nil {
		return res, err
	}
	res.Snapshot = BuildSnapshot(svcs, slices, p.cfg.Node)
	rs := Render(res.Snapshot, Options{ClusterCIDR: p.cfg.ClusterCIDR})
	res.Render = time.Since(start)

	k := p.cfg.Kernel
	if err := k.Load(); err != nil {
		return res, err
	}
	before := k.Programmed(SetEndpoints)
	res.Apply, err = k.Apply(rs)
	if err != nil {
		return res, err
	}
	after := rs.Set(SetEndpoints).Elements
	if p.cfg.Conntrack != nil && res.Apply.ElementsAdded+res.Apply.ElementsRemoved > 0 {
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
	if res.Apply.ElementsRemoved > 0 && hasAffinity(res.Snapshot) {
		if entries, err := k.AffinityEntries(); err == nil {
			stale := staleAffinity(entries, after)
			if err := k.ForgetAffinity(stale); err != nil {
				p.log.Warn("affinity cleanup failed", "err", err)
			}
			res.Affinity = len(stale)
		}
	}
	res.Total = time.Since(start)
	if res.Apply.Changed() {
		p.log.Info("services synced", "ports", len(res.Snapshot.Ports), "elementsAdded", res.Apply.ElementsAdded,
			"elementsRemoved", res.Apply.ElementsRemoved, "chainsAdded", res.Apply.ChainsAdded,
			"chainsRemoved", res.Apply.ChainsRemoved, "took", res.Total.Round(time.Microsecond))
	}
	p.mu.Lock()
	p.last, p.rs = res, rs
	p.mu.Unlock()
	return res, nil
}

// Ruleset is the table as last applied (nil before the first sync).
func (p *Proxier) Ruleset() *Ruleset {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rs
}

func hasAffinity(s Snapshot) bool {
	for _, sp := range s.Ports {
		if sp.AffinitySeconds > 0 {
			return true
		}
	}
	return false
}
