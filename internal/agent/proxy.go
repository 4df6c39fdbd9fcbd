package agent

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/podnet/podnet/internal/healthcheck"
	"github.com/podnet/podnet/internal/metrics"
	"github.com/podnet/podnet/internal/netnsutil"
	"github.com/podnet/podnet/internal/proxy"
	"github.com/podnet/podnet/internal/runner"
)

// Default node-local ports, kube-proxy's.
const (
	DefaultMetricsBindAddress = ":10249"
	DefaultHealthzBindAddress = ":10256"
	proxyResync               = 5 * time.Minute
)

// proxyState is the agent's Service proxy: the proxier, its metrics and health servers.
type proxyState struct {
	proxier   *proxy.Proxier
	metrics   *metrics.Proxy
	health    *healthcheck.ProxyHealthServer
	svcHealth *healthcheck.ServiceHealthServer

	mu       sync.Mutex
	triggers []time.Time // EndpointSlice change times not yet programmed
}

// Metrics is the agent's proxy metrics registry (nil before Run set it up).
func (a *Agent) Metrics() *metrics.Proxy {
	if a.px == nil {
		return nil
	}
	return a.px.metrics
}

// Proxier is the agent's Service proxy (nil before Run set it up).
func (a *Agent) Proxier() *proxy.Proxier {
	if a.px == nil {
		return nil
	}
	return a.px.proxier
}

// setupProxy builds the node's Service proxy on the agent's informer factory and starts its
// metrics and health servers in the node's namespace. The returned runner syncs it.
func (a *Agent) setupProxy(ctx context.Context, factory informers.SharedInformerFactory) (*runner.Runner, func(), error) {
	kern, err := proxy.NewKernel(int(a.nsh))
	if err != nil {
		return nil, nil, fmt.Errorf("agent %s: nftables: %w", a.cfg.NodeName, err)
	}
	px := &proxyState{metrics: metrics.NewProxy(corev1.IPv4Protocol),
		health: healthcheck.NewProxyHealthServer(2*proxyResync, nil)}
	px.health.SetRequestObserver(px.metrics.ObserveHealthRequest)
	listen := func(network, addr string) (net.Listener, error) { return netnsutil.Listen(a.cfg.NetNS, network, addr) }
	px.svcHealth = healthcheck.New(listen, a.log)
	px.svcHealth.SetProxyHealth(px.health)

	pr := runner.New("proxy/"+a.cfg.NodeName, func(ctx context.Context) error { return a.syncProxy(ctx) },
		10*time.Millisecond, proxyResync, a.log)
	svcInf := factory.Core().V1().Services()
	sliceInf := factory.Discovery().V1().EndpointSlices()
	changed := func(o interface{}, isSlice bool) {
		a.proxyRV.observe(o)
		if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
			o = d.Obj
		}
		switch x := o.(type) {
		case *corev1.Service:
			px.proxier.ServiceChanged(x.Namespace, x.Name)
		case *discoveryv1.EndpointSlice:
			px.proxier.ServiceChanged(x.Namespace, x.Labels[discoveryv1.LabelServiceName])
		}
		now := time.Now()
		px.health.QueuedUpdate()
		px.metrics.RecordQueued(now)
		if isSlice {
			px.metrics.EndpointChangesTotal.Inc()
			if s, ok := o.(*discoveryv1.EndpointSlice); ok {
				if t, err := time.Parse(time.RFC3339, s.Annotations[corev1.EndpointsLastChangeTriggerTime]); err == nil {
					px.mu.Lock()
					px.triggers = append(px.triggers, t)
					px.mu.Unlock()
				}
			}
		} else {
			px.metrics.ServiceChangesTotal.Inc()
		}
		pr.Request()
	}
	for _, x := range []struct {
		inf   cache.SharedIndexInformer
		slice bool
	}{{svcInf.Informer(), false}, {sliceInf.Informer(), true}} {
		isSlice := x.slice
		if _, err := x.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(o interface{}) { changed(o, isSlice) },
			UpdateFunc: func(_, o interface{}) { changed(o, isSlice) },
			DeleteFunc: func(o interface{}) { changed(o, isSlice) },
		}); err != nil {
			kern.Close()
			return nil, nil, err
		}
	}
	if err := sliceInf.Informer().AddIndexers(cache.Indexers{proxy.SliceServiceIndex: proxy.SliceServiceIndexFunc}); err != nil {
		kern.Close()
		return nil, nil, err
	}
	var clusterCIDR netip.Prefix
	if c := a.cfg.ClusterCIDR; c != nil {
		ip, _ := netip.AddrFromSlice(c.IP.To4())
		ones, _ := c.Mask.Size()
		clusterCIDR = netip.PrefixFrom(ip, ones)
	}
	px.proxier = proxy.New(proxy.Config{
		Node: a.cfg.NodeName, ClusterCIDR: clusterCIDR, Kernel: kern,
		Conntrack: proxy.NetlinkConntrack{Handle: a.nl},
		Services:  svcInf.Lister(), Slices: sliceInf.Lister(), SliceIndex: sliceInf.Informer().GetIndexer(), Log: a.log,
	})
	a.px = px

	sctx, cancel := context.WithCancel(ctx)
	serve := func(what, addr, def string, fn func(context.Context, net.Listener) error) {
		if addr == "-" {
			return
		}
		if addr == "" {
			addr = def
		}
		l, err := listen("tcp", addr)
		if err != nil {
			a.log.Warn("cannot serve "+what, "addr", addr, "err", err)
			return
		}
		go func() {
			if err := fn(sctx, l); err != nil && sctx.Err() == nil {
				a.log.Warn(what+" server stopped", "err", err)
			}
		}()
	}
	serve("metrics", a.cfg.MetricsBindAddress, DefaultMetricsBindAddress, px.metrics.Serve)
	serve("healthz", a.cfg.HealthzBindAddress, DefaultHealthzBindAddress, px.health.Serve)
	stop := func() {
		cancel()
		px.svcHealth.Close()
		kern.Close()
	}
	return pr, stop, nil
}

// syncProxy programs Services; it is the proxy runner's function.
func (a *Agent) syncProxy(ctx context.Context) error {
	px := a.px
	rv := a.proxyRV.seen.Load()
	px.mu.Lock()
	triggers := px.triggers
	px.triggers = nil
	px.mu.Unlock()
	res, err := px.proxier.Sync(ctx)
	a.syncs.Add(1)
	if err != nil {
		px.metrics.RecordSyncFailure()
		px.mu.Lock()
		px.triggers = append(triggers, px.triggers...)
		px.mu.Unlock()
		a.mu.Lock()
		a.lastErr = err
		a.mu.Unlock()
		return err
	}
	end := time.Now()
	st := res.Apply
	px.metrics.RecordSync(res.Full, res.Total, end)
	for _, t := range triggers {
		px.metrics.ObserveNetworkProgramming(t, end)
	}
	px.metrics.ConntrackEntriesDeleted.Add(float64(res.FlowsDeleted))
	px.metrics.SetPendingChanges(0, 0)
	px.metrics.SetNFTablesElements(res.Elements)
	hcPorts := map[types.NamespacedName]uint16{}
	local := map[types.NamespacedName]int{}
	for nn, hc := range res.HealthChecks {
		hcPorts[nn] = hc.Port
		local[nn] = hc.LocalEndpoints
	}
	px.metrics.SetNoLocalEndpoints(res.NoLocalInternal, res.NoLocalExternal)
	px.svcHealth.SyncServices(hcPorts)
	px.svcHealth.SyncEndpoints(local)
	px.health.Updated()
	a.writes.Add(int64(st.ElementsAdded + st.ElementsRemoved + st.ChainsAdded + st.ChainsRemoved + st.ChainsRewritten))
	a.proxyRV.synced.Store(rv)
	a.proxyDone.Store(true)
	a.markReady()
	return nil
}
