package lab

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	listersv1 "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/podnet/podnet/internal/runner"
)

// RouterRouteProtocol marks the routes the lab's LAN router keeps in LAB.external; it touches no
// other route, and a restarted daemon adopts these.
const RouterRouteProtocol = 96

// routerResources are the resources the router's routes depend on.
var routerResources = []string{"services", "endpointslices", "nodes"}

// ExternalRoutes computes the LAN router's routes: one /32 per LoadBalancer ingress IP and per
// spec.externalIPs address, to the underlay IPs of the nodes that take its traffic, as a cloud load
// balancer does. With externalTrafficPolicy Cluster that is every Ready node; with Local only the
// Ready nodes that run a ready endpoint of the Service (those whose healthCheckNodePort answers
// healthy). An address no node takes gets no route. Several Services on one address share it.
// The result maps each address to its sorted next hops.
func ExternalRoutes(svcs []*corev1.Service, slices []*discoveryv1.EndpointSlice, nodes []*corev1.Node) map[string][]string {
	ready := map[string]string{} // node name → underlay IP
	var all []string
	for _, n := range nodes {
		if ip := nodeInternalIP(n); ip != "" && nodeReady(n) && net.ParseIP(ip).To4() != nil {
			ready[n.Name] = ip
			all = append(all, ip)
		}
	}
	local := map[Key]map[string]bool{} // Service → nodes with a ready endpoint
	for _, s := range slices {
		svc := s.Labels[discoveryv1.LabelServiceName]
		if svc == "" || s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		k := Key{Namespace: s.Namespace, Name: svc}
		for _, ep := range s.Endpoints {
			if ep.NodeName == nil || (ep.Conditions.Ready != nil && !*ep.Conditions.Ready) {
				continue
			}
			if local[k] == nil {
				local[k] = map[string]bool{}
			}
			local[k][*ep.NodeName] = true
		}
	}
	hops := map[string]map[string]bool{}
	for _, svc := range svcs {
		if svc.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		var addrs []string
		addrs = append(addrs, svc.Spec.ExternalIPs...)
		if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
			for _, in := range svc.Status.LoadBalancer.Ingress {
				addrs = append(addrs, in.IP)
			}
		}
		var via []string
		if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
			for node := range local[keyOfService(svc)] {
				if ip, ok := ready[node]; ok {
					via = append(via, ip)
				}
			}
		} else {
			via = all
		}
		for _, a := range addrs {
			ip := net.ParseIP(a).To4()
			if ip == nil {
				continue
			}
			if hops[ip.String()] == nil {
				hops[ip.String()] = map[string]bool{}
			}
			for _, v := range via {
				hops[ip.String()][v] = true
			}
		}
	}
	out := map[string][]string{}
	for dst, set := range hops {
		if len(set) == 0 {
			continue
		}
		list := make([]string, 0, len(set))
		for h := range set {
			list = append(list, h)
		}
		sort.Slice(list, func(i, j int) bool { return addrLess(list[i], list[j]) })
		out[dst] = list
	}
	return out
}

// router is the lab's LAN router: it keeps ExternalRoutes programmed in LAB.external. It
// reconciles (diffs what is there against what should be, writes the difference, never flushes)
// on a bounded-frequency runner.
type router struct {
	d        *Daemon
	services listersv1.ServiceLister
	slices   discoverylisters.EndpointSliceLister
	nodes    listersv1.NodeLister
	runner   *runner.Runner
	log      *slog.Logger

	seenRV   atomic.Int64
	syncedRV atomic.Int64
	writes   atomic.Int64
}

func newRouter(d *Daemon) *router {
	r := &router{d: d, log: d.log.With("component", "lan-router")}
	r.runner = runner.New("lan-router", r.sync, 20*time.Millisecond, 5*time.Minute, r.log)
	return r
}

func (r *router) register(f informers.SharedInformerFactory) error {
	r.services = f.Core().V1().Services().Lister()
	r.slices = f.Discovery().V1().EndpointSlices().Lister()
	r.nodes = f.Core().V1().Nodes().Lister()
	h := func(o interface{}) {
		if m, ok := unwrapTombstone(o).(metav1.Object); ok {
			rv, _ := strconv.ParseInt(m.GetResourceVersion(), 10, 64)
			for {
				cur := r.seenRV.Load()
				if rv <= cur || r.seenRV.CompareAndSwap(cur, rv) {
					break
				}
			}
		}
		r.runner.Request()
	}
	funcs := cache.ResourceEventHandlerFuncs{AddFunc: h, UpdateFunc: func(_, o interface{}) { h(o) }, DeleteFunc: h}
	for _, inf := range []cache.SharedIndexInformer{f.Core().V1().Services().Informer(),
		f.Discovery().V1().EndpointSlices().Informer(), f.Core().V1().Nodes().Informer()} {
		if _, err := inf.AddEventHandler(funcs); err != nil {
			return err
		}
	}
	return nil
}

func (r *router) run(ctx context.Context) { r.runner.Run(ctx) }

// SyncedRV is the newest resourceVersion whose routes are programmed.
func (r *router) SyncedRV() int64 { return r.syncedRV.Load() }

func (r *router) sync(ctx context.Context) error {
	rv := r.seenRV.Load()
	svcs, err := r.services.List(labels.Everything())
	if err != nil {
		return err
	}
	slices, err := r.slices.List(labels.Everything())
	if err != nil {
		return err
	}
	nodes, err := r.nodes.List(labels.Everything())
	if err != nil {
		return err
	}
	want := ExternalRoutes(svcs, slices, nodes)
	var added, changed, removed int
	err = withHandle(ExternalNetns(r.d.cfg.Name), func(h *netlink.Handle) error {
		var err error
		added, changed, removed, err = programRoutes(h, want)
		return err
	})
	r.writes.Add(int64(added + changed + removed))
	if err != nil {
		return err
	}
	if added+changed+removed > 0 {
		r.log.Info("routes synced", "added", added, "changed", changed, "removed", removed, "addresses", len(want))
	}
	r.syncedRV.Store(rv)
	return nil
}

// programRoutes makes the router's routes (protocol RouterRouteProtocol, main table) in the
// namespace of h equal want, writing only the difference.
func programRoutes(h *netlink.Handle, want map[string][]string) (added, changed, removed int, err error) {
	link, err := h.LinkByName("eth0")
	if err != nil {
		return 0, 0, 0, fmt.Errorf("external eth0: %w", err)
	}
	have, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: RouterRouteProtocol, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return 0, 0, 0, err
	}
	current := map[string][]string{}
	for _, rt := range have {
		if rt.Dst == nil {
			continue
		}
		if ones, _ := rt.Dst.Mask.Size(); ones != 32 {
			if err := h.RouteDel(&rt); err != nil {
				return added, changed, removed, err
			}
			removed++
			continue
		}
		current[rt.Dst.IP.String()] = routeHops(rt)
	}
	for dst, hops := range want {
		cur, ok := current[dst]
		if ok && strings.Join(cur, ",") == strings.Join(hops, ",") {
			continue
		}
		rt := &netlink.Route{
			Dst:      &net.IPNet{IP: net.ParseIP(dst).To4(), Mask: net.CIDRMask(32, 32)},
			Protocol: RouterRouteProtocol,
			Table:    unix.RT_TABLE_MAIN,
		}
		if len(hops) == 1 {
			rt.LinkIndex, rt.Gw = link.Attrs().Index, net.ParseIP(hops[0]).To4()
		} else {
			for _, hop := range hops {
				rt.MultiPath = append(rt.MultiPath, &netlink.NexthopInfo{LinkIndex: link.Attrs().Index, Gw: net.ParseIP(hop).To4()})
			}
		}
		if err := h.RouteReplace(rt); err != nil {
			return added, changed, removed, fmt.Errorf("route %s via %v: %w", dst, hops, err)
		}
		if ok {
			changed++
		} else {
			added++
		}
	}
	for dst := range current {
		if _, ok := want[dst]; ok {
			continue
		}
		rt := &netlink.Route{Dst: &net.IPNet{IP: net.ParseIP(dst).To4(), Mask: net.CIDRMask(32, 32)},
			Protocol: RouterRouteProtocol, Table: unix.RT_TABLE_MAIN}
		if err := h.RouteDel(rt); err != nil {
			return added, changed, removed, fmt.Errorf("delete route %s: %w", dst, err)
		}
		removed++
	}
	return added, changed, removed, nil
}

// routeHops lists a route's gateways, sorted.
func routeHops(rt netlink.Route) []string {
	var hops []string
	if rt.Gw != nil {
		hops = append(hops, rt.Gw.String())
	}
	for _, nh := range rt.MultiPath {
		if nh.Gw != nil {
			hops = append(hops, nh.Gw.String())
		}
	}
	sort.Slice(hops, func(i, j int) bool { return addrLess(hops[i], hops[j]) })
	return hops
}
