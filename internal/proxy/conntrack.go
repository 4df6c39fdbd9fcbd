package proxy

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/vishvananda/netlink"
)

// StaleFlow says which UDP conntrack entries must go after a sync. UDP has no connection end, so
// an entry keeps sending a client's packets to the endpoint it was DNATed to — even after that
// endpoint is gone (the most reported kube-proxy bug) — and an entry created while a Service had
// no endpoints keeps the packets from reaching new ones.
type StaleFlow struct {
	Entry    netip.Addr // the address the client used; 0.0.0.0 for a NodePort (any node address)
	Port     uint16     // the port the client used
	Endpoint netip.Addr // delete only entries DNATed to this endpoint; invalid: every entry to Entry:Port
}

func (s StaleFlow) String() string {
	ep := "*"
	if s.Endpoint.IsValid() {
		ep = s.Endpoint.String()
	}
	return fmt.Sprintf("udp %s:%d -> %s", s.Entry, s.Port, ep)
}

// StaleUDPFlows compares the endpoints map before and after a sync. For every UDP entry:
// endpoints that left give a StaleFlow for that endpoint; an entry that had no endpoint before
// and has one now gives a StaleFlow for every entry to it.
func StaleUDPFlows(before, after map[string]Element) []StaleFlow {
	type entry struct {
		addr netip.Addr
		port uint16
	}
	collect := func(m map[string]Element) map[entry]map[netip.Addr]bool {
		out := map[entry]map[netip.Addr]bool{}
		for _, e := range m {
			if len(e.Key) != 16 || e.Key[4] != ProtoUDP || len(e.Data) < 4 {
				continue
			}
			k := entry{netip.AddrFrom4([4]byte(e.Key[0:4])), binary.BigEndian.Uint16(e.Key[8:10])}
			if out[k] == nil {
				out[k] = map[netip.Addr]bool{}
			}
			out[k][netip.AddrFrom4([4]byte(e.Data[0:4]))] = true
		}
		return out
	}
	old, cur := collect(before), collect(after)
	var flows []StaleFlow
	for k, eps := range old {
		for ep := range eps {
			if !cur[k][ep] {
				flows = append(flows, StaleFlow{Entry: k.addr, Port: k.port, Endpoint: ep})
			}
		}
	}
	for k := range cur {
		if len(old[k]) == 0 {
			flows = append(flows, StaleFlow{Entry: k.addr, Port: k.port})
		}
	}
	sort.Slice(flows, func(i, j int) bool { return flows[i].String() < flows[j].String() })
	return flows
}

// Conntrack deletes conntrack entries in one namespace.
type Conntrack interface {
	DeleteUDP(flows []StaleFlow) (uint, error)
}

// NetlinkConntrack deletes through a netlink handle bound to the node's namespace.
type NetlinkConntrack struct{ Handle *netlink.Handle }

// DeleteUDP deletes the entries matching any of flows, in one pass over the table.
func (c NetlinkConntrack) DeleteUDP(flows []StaleFlow) (uint, error) {
	if len(flows) == 0 {
		return 0, nil
	}
	var filters []netlink.CustomConntrackFilter
	for _, f := range flows {
		ff := &netlink.ConntrackFilter{}
		if err := ff.AddProtocol(ProtoUDP); err != nil {
			return 0, err
		}
		if f.Entry != netip.AddrFrom4([4]byte{}) {
			if err := ff.AddIP(netlink.ConntrackOrigDstIP, net.IP(f.Entry.AsSlice())); err != nil {
				return 0, err
			}
		}
		if err := ff.AddPort(netlink.ConntrackOrigDstPort, f.Port); err != nil {
			return 0, err
		}
		if f.Endpoint.IsValid() {
			if err := ff.AddIP(netlink.ConntrackReplySrcIP, net.IP(f.Endpoint.AsSlice())); err != nil {
				return 0, err
			}
		}
		filters = append(filters, ff)
	}
	return c.Handle.ConntrackDeleteFilters(netlink.ConntrackTable, netlink.FAMILY_V4, filters...)
}

// staleAffinity picks the remembered ClientIP-affinity choices whose endpoint no longer serves
// their entry, so the next connection draws a live endpoint instead of failing.
func staleAffinity(entries []AffinityEntry, endpoints map[string]Element) []AffinityEntry {
	valid := map[string]bool{}
	for _, e := range endpoints {
		if len(e.Key) == 16 && len(e.Data) == 8 {
			valid[string(e.Key[0:12])+string(e.Data)] = true
		}
	}
	var out []AffinityEntry
	for _, a := range entries {
		if len(a.Key) != 16 || len(a.Data) != 8 || !valid[string(a.Key[4:16])+string(a.Data)] {
			out = append(out, a)
		}
	}
	return out
}
