// Package proxy is podnet's kube-proxy replacement: it turns Services and EndpointSlices into one
// nftables table per node, programmed over netlink (no iptables, no nft binary).
//
// The table is built so that a one-Service or one-endpoint change touches only set and map
// elements: a fixed set of chains dispatches through verdict maps keyed by address . protocol .
// port to a small family of shared "pick" chains (one per endpoint count and behaviour), which
// choose an endpoint with `numgen random mod N` and look its address and port up in one map. The
// desired table is computed from the cluster snapshot by pure code (Render), shown as nft-style
// bytecode for golden tests, evaluated by a packet walker in tests, and applied to the kernel as a
// difference in one transaction (Kernel).
package proxy

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Protocol numbers as the kernel knows them.
const (
	ProtoTCP  uint8 = 6
	ProtoUDP  uint8 = 17
	ProtoSCTP uint8 = 132
)

// ServicePortName names one port of one Service: namespace/name:port.
type ServicePortName struct {
	Namespace, Name, Port string
	Protocol              uint8
}

func (n ServicePortName) String() string {
	s := n.Namespace + "/" + n.Name
	if n.Port != "" {
		s += ":" + n.Port
	}
	return s + "/" + protoName(n.Protocol)
}

// Endpoint is one backend of a Service port.
type Endpoint struct {
	Addr        netip.Addr
	Port        uint16
	Node        string
	Local       bool // on this node
	Ready       bool
	Serving     bool
	Terminating bool
}

func (e Endpoint) String() string { return netip.AddrPortFrom(e.Addr, e.Port).String() }

// ServicePort is one port of one Service, with everything the proxy needs to program it.
type ServicePort struct {
	Name            ServicePortName
	ClusterIP       netip.Addr
	Port            uint16
	NodePort        uint16
	ExternalIPs     []netip.Addr // spec.externalIPs and status.loadBalancer.ingress IPs
	AffinitySeconds int          // sessionAffinity ClientIP timeout; 0 means no affinity
	ExternalLocal   bool         // externalTrafficPolicy: Local
	InternalLocal   bool         // internalTrafficPolicy: Local
	HealthCheckPort uint16
	Endpoints       []Endpoint
}

// Snapshot is what the proxy programs on one node: every proxied Service port, sorted by name.
type Snapshot struct {
	Ports []ServicePort
}

// BuildSnapshot turns Services and EndpointSlices into the proxy's view for node. Headless and
// ExternalName Services, and Services without a usable IPv4 ClusterIP, are not proxied.
func BuildSnapshot(services []*corev1.Service, slices []*discoveryv1.EndpointSlice, node string) Snapshot {
	bySvc := map[[2]string][]*discoveryv1.EndpointSlice{}
	for _, s := range slices {
		if s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		svc := s.Labels[discoveryv1.LabelServiceName]
		if svc == "" {
			continue
		}
		k := [2]string{s.Namespace, svc}
		bySvc[k] = append(bySvc[k], s)
	}
	var snap Snapshot
	for _, svc := range services {
		if svc.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		cip, err := netip.ParseAddr(svc.Spec.ClusterIP)
		if err != nil || !cip.Is4() {
			continue // headless ("None"), not yet allocated, or not IPv4
		}
		var ext []netip.Addr
		for _, s := range svc.Spec.ExternalIPs {
			if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
				ext = append(ext, a)
			}
		}
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			if ing.IPMode != nil && *ing.IPMode == corev1.LoadBalancerIPModeProxy {
				continue // the load balancer proxies: traffic arrives for the node, not the VIP
			}
			if a, err := netip.ParseAddr(ing.IP); err == nil && a.Is4() {
				ext = append(ext, a)
			}
		}
		ext = sortUniqueAddrs(ext)
		affinity := 0
		if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
			affinity = 10800
			if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
				affinity = int(*c.ClientIP.TimeoutSeconds)
			}
		}
		externalLocal := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal &&
			(svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer || len(ext) > 0)
		internalLocal := svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal
		for _, p := range svc.Spec.Ports {
			proto, ok := protoNumber(p.Protocol)
			if !ok {
				continue
			}
			sp := ServicePort{
				Name:            ServicePortName{Namespace: svc.Namespace, Name: svc.Name, Port: p.Name, Protocol: proto},
				ClusterIP:       cip,
				Port:            uint16(p.Port),
				ExternalIPs:     ext,
				AffinitySeconds: affinity,
				ExternalLocal:   externalLocal,
				InternalLocal:   internalLocal,
				HealthCheckPort: uint16(svc.Spec.HealthCheckNodePort),
			}
			if svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
				sp.NodePort = uint16(p.NodePort)
			}
			// compare with the slices' protocol as defaulted (an empty protocol is TCP)
			sp.Endpoints = endpointsFor(bySvc[[2]string{svc.Namespace, svc.Name}], p.Name, protoK8s(proto), node)
			snap.Ports = append(snap.Ports, sp)
		}
	}
	sort.Slice(snap.Ports, func(i, j int) bool { return snap.Ports[i].Name.less(snap.Ports[j].Name) })
	return snap
}

func (n ServicePortName) less(o ServicePortName) bool {
	if n.Namespace != o.Namespace {
		return n.Namespace < o.Namespace
	}
	if n.Name != o.Name {
		return n.Name < o.Name
	}
	if n.Port != o.Port {
		return n.Port < o.Port
	}
	return n.Protocol < o.Protocol
}

// endpointsFor collects the endpoints of one Service port from its slices: the slice port with the
// same name and protocol gives the target port. An address listed twice (two slices during a
// controller update) counts once, the first seen winning, as in kube-proxy.
func endpointsFor(slices []*discoveryv1.EndpointSlice, portName string, proto corev1.Protocol, node string) []Endpoint {
	sort.Slice(slices, func(i, j int) bool { return slices[i].Name < slices[j].Name })
	seen := map[netip.AddrPort]bool{}
	var out []Endpoint
	for _, s := range slices {
		var port int32 = -1
		for _, p := range s.Ports {
			name, pp := "", corev1.ProtocolTCP
			if p.Name != nil {
				name = *p.Name
			}
			if p.Protocol != nil {
				pp = *p.Protocol
			}
			if name == portName && pp == proto && p.Port != nil {
				port = *p.Port
			}
		}
		if port <= 0 || port > 65535 {
			continue
		}
		for _, e := range s.Endpoints {
			for _, a := range e.Addresses {
				addr, err := netip.ParseAddr(a)
				if err != nil || !addr.Is4() {
					continue
				}
				ap := netip.AddrPortFrom(addr, uint16(port))
				if seen[ap] {
					continue
				}
				seen[ap] = true
				ep := Endpoint{Addr: addr, Port: uint16(port),
					Ready:   e.Conditions.Ready == nil || *e.Conditions.Ready,
					Serving: e.Conditions.Serving == nil || *e.Conditions.Serving,
				}
				if e.Conditions.Serving == nil {
					ep.Serving = ep.Ready
				}
				ep.Terminating = e.Conditions.Terminating != nil && *e.Conditions.Terminating
				if e.NodeName != nil {
					ep.Node = *e.NodeName
					ep.Local = *e.NodeName == node
				}
				out = append(out, ep)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Addr.Compare(out[j].Addr); c != 0 {
			return c < 0
		}
		return out[i].Port < out[j].Port
	})
	return out
}

// ClusterEndpoints are the endpoints any node may use: the ready ones, or, when none is ready,
// the ones that are terminating but still serving (so a rolling update never drops traffic).
func (sp *ServicePort) ClusterEndpoints() []Endpoint { return usable(sp.Endpoints, false) }

// LocalEndpoints are ClusterEndpoints restricted to this node, with the same fallback applied to
// the local ones alone.
func (sp *ServicePort) LocalEndpoints() []Endpoint { return usable(sp.Endpoints, true) }

// InternalEndpoints serve traffic to the ClusterIP (internalTrafficPolicy).
func (sp *ServicePort) InternalEndpoints() []Endpoint {
	if sp.InternalLocal {
		return sp.LocalEndpoints()
	}
	return sp.ClusterEndpoints()
}

// ExternalEndpoints serve traffic to NodePorts, externalIPs and load-balancer IPs
// (externalTrafficPolicy).
func (sp *ServicePort) ExternalEndpoints() []Endpoint {
	if sp.ExternalLocal {
		return sp.LocalEndpoints()
	}
	return sp.ClusterEndpoints()
}

// HasExternal says whether the port has any entry from outside the cluster.
func (sp *ServicePort) HasExternal() bool { return sp.NodePort != 0 || len(sp.ExternalIPs) > 0 }

func usable(eps []Endpoint, localOnly bool) []Endpoint {
	var ready, terminating []Endpoint
	for _, e := range eps {
		if localOnly && !e.Local {
			continue
		}
		switch {
		case e.Ready && !e.Terminating:
			ready = append(ready, e)
		case e.Serving && e.Terminating:
			terminating = append(terminating, e)
		}
	}
	if len(ready) > 0 {
		return ready
	}
	return terminating
}

func sortUniqueAddrs(a []netip.Addr) []netip.Addr {
	sort.Slice(a, func(i, j int) bool { return a[i].Less(a[j]) })
	out := a[:0]
	for i, x := range a {
		if i == 0 || x != a[i-1] {
			out = append(out, x)
		}
	}
	return out
}

func protoNumber(p corev1.Protocol) (uint8, bool) {
	switch p {
	case corev1.ProtocolTCP, "":
		return ProtoTCP, true
	case corev1.ProtocolUDP:
		return ProtoUDP, true
	case corev1.ProtocolSCTP:
		return ProtoSCTP, true
	}
	return 0, false
}

func protoK8s(p uint8) corev1.Protocol {
	switch p {
	case ProtoUDP:
		return corev1.ProtocolUDP
	case ProtoSCTP:
		return corev1.ProtocolSCTP
	}
	return corev1.ProtocolTCP
}

func protoName(p uint8) string {
	switch p {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoSCTP:
		return "sctp"
	}
	return strconv.Itoa(int(p))
}

// String shows a port for logs.
func (sp *ServicePort) String() string {
	return fmt.Sprintf("%s %s:%d", sp.Name, sp.ClusterIP, sp.Port)
}
