package main

import (
	"fmt"
	"net/netip"
	"sort"

	"github.com/podnet/podnet/internal/proxy"
)

var (
	clusterCIDR = netip.MustParsePrefix("10.244.0.0/16")
	// Generated Services take ClusterIPs 10.96.0.16 upwards; extra ones (added in the incremental
	// test) come from 10.104.0.0 upwards, the connection test's target is 10.100.0.10.
	svcBase   = netip.MustParseAddr("10.96.0.16")
	extraBase = netip.MustParseAddr("10.104.0.16")
	targetIP  = netip.MustParseAddr("10.100.0.10")
	// Generated endpoints take pod IPs 10.244.2.0 upwards (wrapping within the /16, pods back
	// several Services); the connection test's pods live in 10.244.1.0/24.
	podBase = netip.MustParseAddr("10.244.2.0")
)

const (
	targetPort  = 80
	backendPort = 8080
)

func addrAdd(a netip.Addr, n int) netip.Addr {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// podIP is generated endpoint j's address: within 10.244.2.0–10.244.255.255.
func podIP(j int) netip.Addr { return addrAdd(podBase, j%(254*256)) }

// genPort is Service i of a generated cluster: one TCP port, three ready endpoints on other nodes.
func genPort(ns, name string, cip netip.Addr, i int) proxy.ServicePort {
	sp := proxy.ServicePort{
		Name:      proxy.ServicePortName{Namespace: ns, Name: name, Port: "http", Protocol: proxy.ProtoTCP},
		ClusterIP: cip,
		Port:      80,
	}
	for k := 0; k < 3; k++ {
		j := 3*i + k
		sp.Endpoints = append(sp.Endpoints, proxy.Endpoint{Addr: podIP(j), Port: backendPort,
			Node: fmt.Sprintf("node-%d", j%100+2), Ready: true, Serving: true})
	}
	sortEndpoints(sp.Endpoints)
	return sp
}

func sortEndpoints(eps []proxy.Endpoint) {
	sort.Slice(eps, func(i, j int) bool { return eps[i].Addr.Less(eps[j].Addr) })
}

// genSnapshot is n generated Services.
func genSnapshot(n int) proxy.Snapshot {
	var s proxy.Snapshot
	s.Ports = make([]proxy.ServicePort, 0, n+1)
	for i := 0; i < n; i++ {
		s.Ports = append(s.Ports, genPort("bench", fmt.Sprintf("svc-%05d", i), addrAdd(svcBase, i), i))
	}
	sortSnapshot(&s)
	return s
}

// targetPortSpec is the connection test's Service: three endpoints, all the server pod (on this
// node) on three ports, so it takes the same three-endpoint pick chain as every other Service.
func targetPortSpec(server netip.Addr) proxy.ServicePort {
	sp := proxy.ServicePort{
		Name:      proxy.ServicePortName{Namespace: "default", Name: "target", Port: "http", Protocol: proxy.ProtoTCP},
		ClusterIP: targetIP,
		Port:      targetPort,
	}
	for k := 0; k < 3; k++ {
		sp.Endpoints = append(sp.Endpoints, proxy.Endpoint{Addr: server, Port: uint16(backendPort + k), Node: "node-1",
			Local: true, Ready: true, Serving: true})
	}
	return sp
}

func sortSnapshot(s *proxy.Snapshot) {
	sort.Slice(s.Ports, func(i, j int) bool {
		a, b := s.Ports[i].Name, s.Ports[j].Name
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
}

// withPorts copies a snapshot's port list (endpoint slices are shared: callers replace, never
// modify, a port's endpoints).
func withPorts(s proxy.Snapshot, extra ...proxy.ServicePort) proxy.Snapshot {
	out := proxy.Snapshot{Ports: make([]proxy.ServicePort, 0, len(s.Ports)+len(extra))}
	out.Ports = append(out.Ports, s.Ports...)
	out.Ports = append(out.Ports, extra...)
	sortSnapshot(&out)
	return out
}

func countElements(rs *proxy.Ruleset) int {
	n := 0
	for _, s := range rs.Sets {
		n += len(s.Elements)
	}
	return n
}
