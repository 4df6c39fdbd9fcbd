package routing

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/vishvananda/netlink"
)

// This file holds the diff machinery shared by the backends: pure planners that compare what the
// kernel has with what is wanted, and the executor that applies a plan through a netlink handle.

// routePlan is the difference between podnet's routes in the kernel and the wanted ones.
type routePlan struct {
	add    []netlink.Route // no podnet route for this destination yet (RouteAdd: never clobbers others' routes)
	update []netlink.Route // a podnet route for this destination exists but differs (RouteReplace)
	del    []netlink.Route // podnet routes nobody wants any more (RouteDel)
}

// wantRoute converts a RouteSpec into the netlink route podnet installs, given the index of its
// device.
func wantRoute(s RouteSpec, linkIndex int) netlink.Route {
	r := netlink.Route{
		LinkIndex: linkIndex,
		Dst:       &net.IPNet{IP: s.Dst.IP.To4(), Mask: s.Dst.Mask},
		Gw:        s.Gw.To4(),
		Protocol:  RouteProtocol,
		Table:     syscall.RT_TABLE_MAIN,
		Type:      syscall.RTN_UNICAST,
		Scope:     netlink.SCOPE_UNIVERSE,
	}
	if s.OnLink {
		r.Flags = int(netlink.FLAG_ONLINK)
	}
	return r
}

func ipNetEqual(a, b *net.IPNet) bool {
	if a == nil || b == nil {
		return a == b
	}
	ao, ab := a.Mask.Size()
	bo, bb := b.Mask.Size()
	return ao == bo && ab == bb && a.IP.Equal(b.IP)
}

// routeMatches reports whether an existing route is exactly the wanted one.
func routeMatches(have, want netlink.Route) bool {
	return ipNetEqual(have.Dst, want.Dst) &&
		have.Gw.Equal(want.Gw) &&
		have.LinkIndex == want.LinkIndex &&
		have.Flags&int(netlink.FLAG_ONLINK) == want.Flags&int(netlink.FLAG_ONLINK) &&
		have.Protocol == want.Protocol &&
		have.Priority == want.Priority &&
		have.Table == want.Table &&
		have.Type == want.Type &&
		have.Scope == want.Scope &&
		have.Tos == want.Tos &&
		have.Src == nil &&
		len(have.MultiPath) == 0 &&
		have.Encap == nil
}

// sameRouteKey reports whether RouteReplace of want would replace have (same table, destination,
// TOS and metric).
func sameRouteKey(have, want netlink.Route) bool {
	return ipNetEqual(have.Dst, want.Dst) && have.Priority == want.Priority &&
		have.Tos == want.Tos && have.Table == want.Table
}

// planRoutes diffs existing podnet routes (already filtered by RouteProtocol, main table, IPv4)
// against the wanted ones. Pure.
func planRoutes(existing, want []netlink.Route) routePlan {
	var p routePlan
	remaining := append([]netlink.Route(nil), existing...)
	take := func(i int) { remaining = append(remaining[:i], remaining[i+1:]...) }
	var pending []netlink.Route
	for _, w := range want {
		found := false
		for i, h := range remaining {
			if routeMatches(h, w) {
				take(i)
				found = true
				break
			}
		}
		if !found {
			pending = append(pending, w)
		}
	}
	for _, w := range pending {
		replaced := false
		for i, h := range remaining {
			if sameRouteKey(h, w) {
				take(i)
				replaced = true
				break
			}
		}
		if replaced {
			p.update = append(p.update, w)
		} else {
			p.add = append(p.add, w)
		}
	}
	p.del = remaining
	return p
}

// neighPlan is the difference for permanent IPv4 neighbour entries on one device.
type neighPlan struct {
	add    []netlink.Neigh // NeighSet; replaces a kernel-made (non-permanent) entry if there is one
	update []netlink.Neigh // NeighSet over a permanent entry with the wrong MAC
	del    []netlink.Neigh // NeighDel of permanent entries nobody wants
}

func wantNeigh(s NeighborSpec, linkIndex int) netlink.Neigh {
	return netlink.Neigh{
		LinkIndex:    linkIndex,
		Family:       netlink.FAMILY_V4,
		State:        netlink.NUD_PERMANENT,
		IP:           s.IP.To4(),
		HardwareAddr: s.MAC,
	}
}

// planNeighbors diffs the IPv4 neighbour entries of the device against the wanted ones. Only
// permanent entries count as podnet's; entries the kernel made (ARP states) are left alone unless
// they hold a wanted address. Pure.
func planNeighbors(existing, want []netlink.Neigh) neighPlan {
	var p neighPlan
	have := map[string]netlink.Neigh{}
	for _, n := range existing {
		if n.IP == nil {
			continue
		}
		have[n.IP.To16().String()] = n
	}
	wanted := map[string]bool{}
	for _, w := range want {
		k := w.IP.To16().String()
		wanted[k] = true
		h, ok := have[k]
		switch {
		case !ok || h.State&netlink.NUD_PERMANENT == 0:
			p.add = append(p.add, w)
		case h.HardwareAddr.String() != w.HardwareAddr.String():
			p.update = append(p.update, w)
		}
	}
	for _, n := range existing {
		if n.IP == nil || n.State&netlink.NUD_PERMANENT == 0 || wanted[n.IP.To16().String()] {
			continue
		}
		p.del = append(p.del, netlink.Neigh{LinkIndex: n.LinkIndex, Family: netlink.FAMILY_V4, IP: n.IP})
	}
	return p
}

// fdbPlan is the difference for the unicast FDB entries (MAC → remote VTEP) of a VXLAN device.
type fdbPlan struct {
	add    []netlink.Neigh // NeighSet of a MAC that has no entry
	update []netlink.Neigh // NeighSet (replace) of a MAC whose entry points elsewhere
	del    []netlink.Neigh // NeighDel of (MAC, dst) pairs nobody wants
}

func wantFDB(s FDBSpec, linkIndex int) netlink.Neigh {
	return netlink.Neigh{
		LinkIndex:    linkIndex,
		Family:       syscall.AF_BRIDGE,
		Flags:        netlink.NTF_SELF,
		State:        netlink.NUD_PERMANENT,
		IP:           s.Dst.To4(),
		HardwareAddr: s.MAC,
	}
}

func fdbDel(n netlink.Neigh) netlink.Neigh {
	ip := n.IP
	if ip4 := ip.To4(); ip4 != nil {
		ip = ip4
	}
	return netlink.Neigh{
		LinkIndex:    n.LinkIndex,
		Family:       syscall.AF_BRIDGE,
		Flags:        netlink.NTF_SELF,
		IP:           ip,
		HardwareAddr: n.HardwareAddr,
	}
}

// planFDB diffs the device's FDB entries that carry a destination IP (the only kind podnet makes)
// against the wanted ones. A MAC may have several destinations in the kernel; the wanted one is
// kept, extra ones are deleted, and a MAC pointing only elsewhere is replaced in place. Pure.
func planFDB(existing, want []netlink.Neigh) fdbPlan {
	var p fdbPlan
	byMAC := map[string][]netlink.Neigh{}
	var order []string
	for _, n := range existing {
		if n.IP == nil || len(n.HardwareAddr) == 0 {
			continue
		}
		k := n.HardwareAddr.String()
		if _, ok := byMAC[k]; !ok {
			order = append(order, k)
		}
		byMAC[k] = append(byMAC[k], n)
	}
	wanted := map[string]bool{}
	for _, w := range want {
		k := w.HardwareAddr.String()
		wanted[k] = true
		have := byMAC[k]
		keep := -1
		for i, h := range have {
			if h.IP.Equal(w.IP) && h.State&netlink.NUD_PERMANENT != 0 {
				keep = i
				break
			}
		}
		switch {
		case len(have) == 0:
			p.add = append(p.add, w)
		case keep >= 0:
			for i, h := range have {
				if i != keep {
					p.del = append(p.del, fdbDel(h))
				}
			}
		default:
			// Replace rewrites the MAC's first destination; drop the others first.
			for _, h := range have[1:] {
				p.del = append(p.del, fdbDel(h))
			}
			p.update = append(p.update, w)
		}
	}
	for _, k := range order {
		if wanted[k] {
			continue
		}
		for _, h := range byMAC[k] {
			p.del = append(p.del, fdbDel(h))
		}
	}
	return p
}

// listRetries bounds retries of dumps the kernel reports as interrupted (state changed mid-dump).
const listRetries = 5

func retryDump[T any](f func() (T, error)) (T, error) {
	var v T
	var err error
	for range listRetries {
		v, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}

// listPodnetRoutes lists the IPv4 routes of the main table that carry RouteProtocol.
func listPodnetRoutes(h *netlink.Handle) ([]netlink.Route, error) {
	filter := &netlink.Route{Protocol: RouteProtocol, Table: syscall.RT_TABLE_MAIN}
	rs, err := retryDump(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(netlink.FAMILY_V4, filter, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("list routes with protocol %d: %w", RouteProtocol, err)
	}
	return rs, nil
}

// applier executes plans and counts the writes.
type applier struct {
	h     *netlink.Handle
	stats SyncStats
	errs  []error
}

func (a *applier) fail(err error) { a.errs = append(a.errs, err) }

func (a *applier) err() error { return errors.Join(a.errs...) }

// routes applies a route plan; nodeOf names the node a destination belongs to, for errors.
func (a *applier) routes(p routePlan, nodeOf func(*net.IPNet) string) {
	for _, r := range p.del {
		if err := a.h.RouteDel(&r); err != nil && !errors.Is(err, syscall.ESRCH) {
			a.fail(fmt.Errorf("delete stale route %s via %s: %w", r.Dst, r.Gw, err))
			continue
		}
		a.stats.Removed++
	}
	for _, r := range p.update {
		if err := a.h.RouteReplace(&r); err != nil {
			a.fail(fmt.Errorf("node %q: replace route %s via %s: %w", nodeOf(r.Dst), r.Dst, r.Gw, err))
			continue
		}
		a.stats.Updated++
	}
	for _, r := range p.add {
		if err := a.h.RouteAdd(&r); err != nil {
			if errors.Is(err, syscall.EEXIST) {
				err = fmt.Errorf("a route for %s not owned by podnet (protocol other than %d) is in the way: %w", r.Dst, RouteProtocol, err)
			}
			a.fail(fmt.Errorf("node %q: add route %s via %s: %w", nodeOf(r.Dst), r.Dst, r.Gw, err))
			continue
		}
		a.stats.Added++
	}
}

// neighs applies a neighbour or FDB plan (both are neighbour-table writes).
func (a *applier) neighs(what string, add, update, del []netlink.Neigh) {
	for _, n := range del {
		if err := a.h.NeighDel(&n); err != nil && !errors.Is(err, syscall.ENOENT) {
			a.fail(fmt.Errorf("delete stale %s %s %s: %w", what, n.IP, n.HardwareAddr, err))
			continue
		}
		a.stats.Removed++
	}
	for _, n := range update {
		if err := a.h.NeighSet(&n); err != nil {
			a.fail(fmt.Errorf("replace %s %s %s: %w", what, n.IP, n.HardwareAddr, err))
			continue
		}
		a.stats.Updated++
	}
	for _, n := range add {
		if err := a.h.NeighSet(&n); err != nil {
			a.fail(fmt.Errorf("add %s %s %s: %w", what, n.IP, n.HardwareAddr, err))
			continue
		}
		a.stats.Added++
	}
}

// nodeIndex maps pod CIDRs to node names for error messages.
func nodeIndex(routes []RouteSpec) func(*net.IPNet) string {
	return func(dst *net.IPNet) string {
		for _, r := range routes {
			if ipNetEqual(r.Dst, dst) {
				return r.Node
			}
		}
		return "?"
	}
}

// unroutableError turns DesiredState.Unroutable into one error naming every node.
func unroutableError(backend string, ps []NodeProblem) error {
	var errs []error
	for _, p := range ps {
		errs = append(errs, fmt.Errorf("%s: node %q unreachable: %s", backend, p.Node, p.Reason))
	}
	return errors.Join(errs...)
}
