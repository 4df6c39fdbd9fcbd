package proxy

import (
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Packet-walk tests of Render(BuildSnapshot(...)): what each Service feature does to traffic,
// evaluated through the very expressions the kernel is given.
//
// The cluster: nodes n1, n2, n3 with underlay addresses 192.168.0.1-3 and pod ranges
// 10.244.1-3.0/24 (the node's bridge holds .1); the cluster CIDR is 10.244.0.0/16; an outside
// client is 203.0.113.7.

var renderNodes = map[string]NodeInfo{
	"n1": {LocalAddrs: []netip.Addr{netip.MustParseAddr("192.168.0.1"), netip.MustParseAddr("10.244.1.1")}},
	"n2": {LocalAddrs: []netip.Addr{netip.MustParseAddr("192.168.0.2"), netip.MustParseAddr("10.244.2.1")}},
	"n3": {LocalAddrs: []netip.Addr{netip.MustParseAddr("192.168.0.3"), netip.MustParseAddr("10.244.3.1")}},
}

const outsideClient = "203.0.113.7"

// renderFix is a rendered ruleset for one node, and a walker over it.
type renderFix struct {
	t    *testing.T
	node string
	rs   *Ruleset
	w    *Walker
}

func newRenderFix(t *testing.T, node string, svcs []*corev1.Service, slices ...*discoveryv1.EndpointSlice) *renderFix {
	t.Helper()
	rs := Render(BuildSnapshot(svcs, slices, node), Options{ClusterCIDR: clusterCIDR})
	f := &renderFix{t: t, node: node, rs: rs}
	f.reset()
	return f
}

// reset forgets what the walker remembered (affinity).
func (f *renderFix) reset() {
	f.t.Helper()
	w, err := NewWalker(f.rs, renderNodes[f.node])
	if err != nil {
		f.t.Fatalf("NewWalker: %v\n%s", err, f.rs.Text(false))
	}
	f.w = w
}

func (f *renderFix) walk(p Packet) []Outcome {
	f.t.Helper()
	outs, err := f.w.Walk(p)
	if err != nil {
		f.t.Fatalf("walk: %v", err)
	}
	sum := 0.0
	for _, o := range outs {
		sum += o.Probability
	}
	if math.Abs(sum-1) > 1e-9 {
		f.t.Fatalf("%s: probabilities add up to %v", p, sum)
	}
	return outs
}

// expect checks the distribution of a packet's outcomes (Outcome.Result → probability).
func (f *renderFix) expect(p Packet, want map[string]float64) {
	f.t.Helper()
	outs := f.walk(p)
	got := Distribution(outs)
	ok := len(got) == len(want)
	for k, v := range want {
		if math.Abs(got[k]-v) > 1e-9 {
			ok = false
		}
	}
	if !ok {
		var b strings.Builder
		for _, o := range outs {
			b.WriteString(o.Explain())
		}
		f.t.Errorf("on %s, %s:\n got  %s\n want %s\n%s", f.node, p, fmtDist(got), fmtDist(want), b.String())
	}
}

func fmtDist(d map[string]float64) string {
	var keys []string
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%q: %.4g", k, d[k]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// only is a certain outcome.
func only(result string) map[string]float64 { return map[string]float64{result: 1} }

// spread is an even choice among endpoints, each DNATed, with suffix (" masquerade(mark)").
func spread(suffix string, eps ...string) map[string]float64 {
	m := map[string]float64{}
	for _, e := range eps {
		m["accept dnat "+e+suffix] += 1 / float64(len(eps))
	}
	return m
}

const (
	byMark    = " masquerade(mark)"
	byHairpin = " masquerade(hairpin)"
)

// Packets.

func tcpPkt(src, dst string, port uint16) Packet {
	return Packet{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: ProtoTCP, SrcPort: 40001, DstPort: port}
}

func udpPkt(src, dst string, port uint16) Packet {
	p := tcpPkt(src, dst, port)
	p.Proto = ProtoUDP
	return p
}

// fromNode makes p a packet the node itself sends (a host process, a hostNetwork pod).
func fromNode(p Packet) Packet { p.Local = true; return p }

func establishedPkt(p Packet) Packet { p.Established = true; return p }

// Services.

func nodePortSvc(ns, name, clusterIP string, ports []corev1.ServicePort, nodePorts ...int32) *corev1.Service {
	return svc(ns, name, clusterIP, ports, func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeNodePort
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
		for i := range nodePorts {
			s.Spec.Ports[i].NodePort = nodePorts[i]
		}
	})
}

func lbSvc(ns, name, clusterIP string, port, nodePort int32, ingressIP string, mutate ...func(*corev1.Service)) *corev1.Service {
	s := nodePortSvc(ns, name, clusterIP, []corev1.ServicePort{tcp("http", port)}, nodePort)
	s.Spec.Type = corev1.ServiceTypeLoadBalancer
	s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ingressIP, IPMode: ptr(corev1.LoadBalancerIPModeVIP)}}
	for _, m := range mutate {
		m(s)
	}
	return s
}

func localPolicy(s *corev1.Service) {
	s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
}

func tcpSlice(name string, port int32, eps ...ep) *discoveryv1.EndpointSlice {
	return slice("default", name, "http", corev1.ProtocolTCP, port, eps...)
}

func TestRenderClusterIPEndpointCounts(t *testing.T) {
	all := []ep{{ip: "10.244.1.2", node: "n1"}, {ip: "10.244.2.2", node: "n2"}, {ip: "10.244.3.2", node: "n3"}}
	for n := 1; n <= 3; n++ {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			f := newRenderFix(t, "n1", []*corev1.Service{svc("default", "web", "10.96.0.10", []corev1.ServicePort{tcp("http", 80)})},
				tcpSlice("web", 8080, all[:n]...))
			var eps []string
			for _, e := range all[:n] {
				eps = append(eps, e.ip+":8080")
			}
			f.expect(tcpPkt("10.244.1.9", "10.96.0.10", 80), spread("", eps...))      // a pod on this node
			f.expect(tcpPkt("10.244.2.9", "10.96.0.10", 80), spread("", eps...))      // a pod elsewhere
			f.expect(tcpPkt(outsideClient, "10.96.0.10", 80), spread(byMark, eps...)) // outside the cluster CIDR
			f.expect(fromNode(tcpPkt("192.168.0.1", "10.96.0.10", 80)), spread(byMark, eps...))
			if c := f.rs.Chain(fmt.Sprintf("pick-v0-n%d-masqoff", n)); c == nil {
				t.Errorf("no pick chain for %d endpoints:\n%s", n, f.rs.Text(false))
			}
		})
	}
}

// TestRenderSharedPickChains: Services with as many endpoints share their pick chain and keep
// their own endpoints.
func TestRenderSharedPickChains(t *testing.T) {
	f := newRenderFix(t, "n1", []*corev1.Service{
		svc("default", "a", "10.96.0.10", []corev1.ServicePort{tcp("http", 80)}),
		svc("default", "b", "10.96.0.11", []corev1.ServicePort{tcp("http", 80)}),
	}, tcpSlice("a", 8080, ep{ip: "10.244.1.2", node: "n1"}, ep{ip: "10.244.2.2", node: "n2"}),
		tcpSlice("b", 9090, ep{ip: "10.244.1.3", node: "n1"}, ep{ip: "10.244.2.3", node: "n2"}))
	f.expect(tcpPkt("10.244.1.9", "10.96.0.10", 80), spread("", "10.244.1.2:8080", "10.244.2.2:8080"))
	f.expect(tcpPkt("10.244.1.9", "10.96.0.11", 80), spread("", "10.244.1.3:9090", "10.244.2.3:9090"))
	var picks []string
	for _, c := range f.rs.Chains {
		if c.Hook == nil && strings.HasPrefix(c.Name, "pick-") {
			picks = append(picks, c.Name)
		}
	}
	if len(picks) != 1 || picks[0] != "pick-v0-n2-masqoff" {
		t.Fatalf("pick chains %v", picks)
	}
}

func TestRenderMultiPortAndUDP(t *testing.T) {
	f := newRenderFix(t, "n1", []*corev1.Service{
		svc("default", "dns", "10.96.0.10", []corev1.ServicePort{tcp("http", 80), udp("dns", 53), tcp("dns-tcp", 53)}),
	},
		slice("default", "dns", "http", corev1.ProtocolTCP, 8080, ep{ip: "10.244.1.2", node: "n1"}, ep{ip: "10.244.2.2", node: "n2"}),
		slice("default", "dns", "dns", corev1.ProtocolUDP, 5353, ep{ip: "10.244.1.2", node: "n1"}, ep{ip: "10.244.2.2", node: "n2"}),
		slice("default", "dns", "dns-tcp", corev1.ProtocolTCP, 5354, ep{ip: "10.244.2.2", node: "n2"}))
	pod := "10.244.1.9"
	f.expect(tcpPkt(pod, "10.96.0.10", 80), spread("", "10.244.1.2:8080", "10.244.2.2:8080"))
	f.expect(udpPkt(pod, "10.96.0.10", 53), spread("", "10.244.1.2:5353", "10.244.2.2:5353"))
	f.expect(tcpPkt(pod, "10.96.0.10", 53), only("accept dnat 10.244.2.2:5354"))
	// a port the Service does not have
	f.expect(tcpPkt(pod, "10.96.0.10", 81), only("reject tcp reset"))
	f.expect(udpPkt(pod, "10.96.0.10", 80), only("reject icmp port-unreachable"))
	f.expect(tcpPkt(outsideClient, "10.96.0.10", 81), only("reject tcp reset"))
	f.expect(fromNode(udpPkt("192.168.0.1", "10.96.0.10", 81)), only("reject icmp port-unreachable"))
	ping := tcpPkt(pod, "10.96.0.10", 0)
	ping.Proto = 1
	f.expect(ping, only("reject icmp port-unreachable"))
	// not a ClusterIP: left alone
	f.expect(tcpPkt(pod, "10.96.0.99", 81), only("accept"))
}

func TestRenderNoEndpoints(t *testing.T) {
	f := newRenderFix(t, "n1", []*corev1.Service{
		svc("default", "web", "10.96.0.10", []corev1.ServicePort{tcp("http", 80)}),
		svc("default", "dns", "10.96.0.11", []corev1.ServicePort{udp("dns", 53)}),
		nodePortSvc("default", "np", "10.96.0.12", []corev1.ServicePort{tcp("http", 80), udp("dns", 53)}, 30080, 30053),
		lbSvc("default", "lb", "10.96.0.13", 80, 30081, "198.51.100.10"),
		lbSvc("default", "lb-local", "10.96.0.14", 80, 30082, "198.51.100.11", localPolicy),
	},
		// only not-ready endpoints: as good as none
		tcpSlice("web", 8080, ep{ip: "10.244.1.2", node: "n1", notReady: true}))
	pod := "10.244.1.9"
	f.expect(tcpPkt(pod, "10.96.0.10", 80), only("reject tcp reset"))
	f.expect(udpPkt(pod, "10.96.0.11", 53), only("reject icmp port-unreachable"))
	f.expect(fromNode(tcpPkt("192.168.0.1", "10.96.0.10", 80)), only("reject tcp reset"))
	f.expect(tcpPkt(outsideClient, "192.168.0.1", 30080), only("reject tcp reset"))
	f.expect(udpPkt(outsideClient, "192.168.0.1", 30053), only("reject icmp port-unreachable"))
	f.expect(tcpPkt(pod, "10.244.1.1", 30080), only("reject tcp reset"))
	f.expect(fromNode(tcpPkt("192.168.0.1", "192.168.0.1", 30080)), only("reject tcp reset"))
	f.expect(tcpPkt(outsideClient, "198.51.100.10", 80), only("reject tcp reset"))
	f.expect(tcpPkt(pod, "10.96.0.13", 80), only("reject tcp reset"))
	// Local policy, no endpoint anywhere: rejected too (a drop is for "endpoints, but not here")
	f.expect(tcpPkt(outsideClient, "198.51.100.11", 80), only("reject tcp reset"))
	f.expect(tcpPkt(outsideClient, "192.168.0.1", 30082), only("reject tcp reset"))
	f.expect(tcpPkt(pod, "198.51.100.11", 80), only("reject tcp reset"))
}

// TestRenderEstablished: only new connections are rejected or dropped; a packet of an existing
// connection is never turned away by the proxy (NAT chains do not even see it).
func TestRenderEstablished(t *testing.T) {
	f := newRenderFix(t, "n3", []*corev1.Service{
		svc("default", "web", "10.96.0.10", []corev1.ServicePort{tcp("http", 80)}),
		nodePortSvc("default", "np", "10.96.0.12", []corev1.ServicePort{tcp("http", 80)}, 30080),
		lbSvc("default", "lb-local", "10.96.0.14", 80, 30082, "198.51.100.11", localPolicy),
		svc("default", "ok", "10.96.0.15", []corev1.ServicePort{tcp("http", 80)}),
	}, tcpSlice("lb-local", 8080, ep{ip: "10.244.1.5", node: "n1"}), tcpSlice("ok", 8080, ep{ip: "10.244.1.6", node: "n1"}))
	for _, p := range []Packet{
		tcpPkt("10.244.3.9", "10.96.0.10", 80),      // no endpoints
		tcpPkt("10.244.3.9", "10.96.0.15", 81),      // unknown port
		udpPkt("10.244.3.9", "10.96.0.15", 80),      // unknown protocol
		tcpPkt(outsideClient, "192.168.0.3", 30080), // NodePort, no endpoints
		tcpPkt(outsideClient, "192.168.0.3", 30082), // Local policy, no local endpoint: dropped when new
		tcpPkt(outsideClient, "198.51.100.11", 80),  // the same through the LB IP
		fromNode(tcpPkt("192.168.0.3", "10.96.0.10", 80)),
		fromNode(tcpPkt("192.168.0.3", "192.168.0.3", 30080)),
	} {
		f.expect(establishedPkt(p), only("accept"))
		dnated := establishedPkt(p)
		dnated.DNATed = true
		f.expect(dnated, only("accept"))
	}
}

func TestRenderNodePort(t *testing.T) {
	f := newRenderFix(t, "n1", []*corev1.Service{
		nodePortSvc("default", "np", "10.96.0.12", []corev1.ServicePort{tcp("http", 80), udp("dns", 53)}, 30080, 30053),
	},
		slice("default", "np", "http", corev1.ProtocolTCP, 8080, ep{ip: "10.244.1.2", node: "n1"}, ep{ip: "10.244.2.2", node: "n2"}),
		slice("default", "np", "dns", corev1.ProtocolUDP, 5353, ep{ip: "10.244.2.2", node: "n2"}))
	both := spread(byMark, "10.244.1.2:8080", "10.244.2.2:8080")
	// on every local address, from anywhere; policy Cluster always masquerades
	f.expect(tcpPkt(outsideClient, "192.168.0.1", 30080), both)
	f.expect(tcpPkt(outsideClient, "10.244.1.1", 30080), both)
	f.expect(tcpPkt("192.168.0.2", "192.168.0.1", 30080), both) // another node
	f.expect(tcpPkt("10.244.1.9", "10.244.1.1", 30080), both)   // a pod on this node, via its gateway
	f.expect(tcpPkt("10.244.1.9", "192.168.0.1", 30080), both)
	f.expect(tcpPkt("10.244.2.9", "192.168.0.1", 30080), both) // a pod on another node
	f.expect(fromNode(tcpPkt("192.168.0.1", "192.168.0.1", 30080)), both)
	f.expect(udpPkt(outsideClient, "192.168.0.1", 30053), only("accept dnat 10.244.2.2:5353"+byMark))
	// the ClusterIP still works, without masquerade for pods
	f.expect(tcpPkt("10.244.1.9", "10.96.0.12", 80), spread("", "10.244.1.2:8080", "10.244.2.2:8080"))
	// not on an address of another node (that node handles it), not on the ClusterIP
	f.expect(tcpPkt(outsideClient, "192.168.0.2", 30080), only("accept"))
	f.expect(tcpPkt("10.244.1.9", "192.168.0.2", 30080), only("accept"))
	f.expect(tcpPkt("10.244.1.9", "10.96.0.12", 30080), only("reject tcp reset"))
	// a NodePort's protocol is part of it
	f.expect(udpPkt(outsideClient, "192.168.0.1", 30080), only("accept"))
	f.expect(tcpPkt(outsideClient, "192.168.0.1", 30053), only("accept"))
}

func TestRenderExternalIPsAndLoadBalancer(t *testing.T) {
	s := lbSvc("default", "lb", "10.96.0.13", 80, 30081, "198.51.100.10", func(s *corev1.Service) {
		s.Spec.ExternalIPs = []string{"192.0.2.50", "192.168.0.1"} // one not local, one the node's own
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress,
			corev1.LoadBalancerIngress{IP: "198.51.100.20", IPMode: ptr(corev1.LoadBalancerIPModeProxy)},
			corev1.LoadBalancerIngress{IP: "198.51.100.30"}) // no ipMode: VIP
	})
	ext := svc("default", "ext", "10.96.0.16", []corev1.ServicePort{tcp("http", 80)}, func(s *corev1.Service) {
		s.Spec.ExternalIPs = []string{"192.0.2.60"}
	})
	f := newRenderFix(t, "n1", []*corev1.Service{s, ext},
		tcpSlice("lb", 8080, ep{ip: "10.244.1.2", node: "n1"}, ep{ip: "10.244.2.2", node: "n2"}),
		tcpSlice("ext", 8080, ep{ip: "10.244.2.3", node: "n2"}))
	both := spread(byMark, "10.244.1.2:8080", "10.244.2.2:8080")
	for _, dst := range []string{"198.51.100.10", "198.51.100.30", "192.0.2.50", "192.168.0.1"} {
		f.expect(tcpPkt(outsideClient, dst, 80), both)
		f.expect(tcpPkt("10.244.1.9", dst, 80), both)
		f.expect(fromNode(tcpPkt("192.168.0.1", dst, 80)), both)
	}
	f.expect(tcpPkt(outsideClient, "192.0.2.60", 80), only("accept dnat 10.244.2.3:8080"+byMark))
	// ipMode Proxy: the load balancer proxies; its address is not programmed
	f.expect(tcpPkt(outsideClient, "198.51.100.20", 80), only("accept"))
	// other ports of an external address are not the Service's: left alone, not rejected
	f.expect(tcpPkt(outsideClient, "198.51.100.10", 81), only("accept"))
	f.expect(tcpPkt(outsideClient, "192.0.2.60", 443), only("accept"))
}

func TestRenderExternalTrafficPolicyLocal(t *testing.T) {
	svcs := []*corev1.Service{lbSvc("default", "web", "10.96.1.10", 80, 30100, "198.51.100.10", localPolicy, func(s *corev1.Service) {
		s.Spec.ExternalIPs = []string{"192.0.2.50"}
	})}
	sl := tcpSlice("web", 8080, ep{ip: "10.244.1.5", node: "n1"}, ep{ip: "10.244.2.5", node: "n2"}, ep{ip: "10.244.2.6", node: "n2"})
	all := []string{"10.244.1.5:8080", "10.244.2.5:8080", "10.244.2.6:8080"}
	local := map[string][]string{"n1": all[:1], "n2": all[1:], "n3": nil}
	for _, node := range []string{"n1", "n2", "n3"} {
		t.Run(node, func(t *testing.T) {
			f := newRenderFix(t, node, svcs, sl)
			nodeIP := renderNodes[node].LocalAddrs[0].String()
			pod := strings.Replace(renderNodes[node].LocalAddrs[1].String(), ".1", ".9", 1)
			// An external client reaches only this node's endpoints and keeps its address; on a
			// node without any it is dropped (not rejected: the load balancer tries another node).
			outside := only("drop")
			if len(local[node]) > 0 {
				outside = spread("", local[node]...)
			}
			for _, dst := range []string{nodeIP + ":30100", "198.51.100.10:80", "192.0.2.50:80"} {
				ap := netip.MustParseAddrPort(dst)
				f.expect(tcpPkt(outsideClient, ap.Addr().String(), ap.Port()), outside)
				f.expect(tcpPkt("192.168.0.9", ap.Addr().String(), ap.Port()), outside) // a host outside the cluster CIDR
				// A pod is not an external client: every endpoint, masqueraded.
				f.expect(tcpPkt(pod, ap.Addr().String(), ap.Port()), spread(byMark, all...))
				f.expect(tcpPkt("10.244.3.77", ap.Addr().String(), ap.Port()), spread(byMark, all...))
			}
			// the ClusterIP ignores the external policy
			f.expect(tcpPkt(pod, "10.96.1.10", 80), spread("", all...))
			f.expect(tcpPkt(outsideClient, "10.96.1.10", 80), spread(byMark, all...))
		})
	}
}

// TestRenderLocalPolicyFromNode: traffic the node itself sends to a Local-policy NodePort,
// externalIP or LB IP is not external traffic: like kube-proxy ("masquerade LOCAL traffic",
// "route LOCAL traffic for ... external destinations" to the cluster-policy chain), it may use
// every endpoint, masqueraded. Render treats it as an external client: on a node without a
// local endpoint it is dropped, so a host process or hostNetwork pod cannot reach the Service.
func TestRenderLocalPolicyFromNode(t *testing.T) {
	svcs := []*corev1.Service{lbSvc("default", "web", "10.96.1.10", 80, 30100, "198.51.100.10", localPolicy)}
	sl := tcpSlice("web", 8080, ep{ip: "10.244.1.5", node: "n1"}, ep{ip: "10.244.2.5", node: "n2"})
	all := []string{"10.244.1.5:8080", "10.244.2.5:8080"}
	f := newRenderFix(t, "n3", svcs, sl)
	f.expect(fromNode(tcpPkt("192.168.0.3", "192.168.0.3", 30100)), spread(byMark, all...))
	f.expect(fromNode(tcpPkt("192.168.0.3", "198.51.100.10", 80)), spread(byMark, all...))
}

func TestRenderInternalTrafficPolicyLocal(t *testing.T) {
	svcs := []*corev1.Service{nodePortSvc("default", "web", "10.96.1.20", []corev1.ServicePort{tcp("http", 80)}, 30200)}
	svcs[0].Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyLocal)
	sl := tcpSlice("web", 8080, ep{ip: "10.244.1.5", node: "n1"}, ep{ip: "10.244.2.5", node: "n2"}, ep{ip: "10.244.2.6", node: "n2"})
	all := []string{"10.244.1.5:8080", "10.244.2.5:8080", "10.244.2.6:8080"}
	f1 := newRenderFix(t, "n1", svcs, sl)
	f1.expect(tcpPkt("10.244.1.9", "10.96.1.20", 80), only("accept dnat 10.244.1.5:8080"))
	f1.expect(fromNode(tcpPkt("192.168.0.1", "10.96.1.20", 80)), only("accept dnat 10.244.1.5:8080"+byMark))
	f2 := newRenderFix(t, "n2", svcs, sl)
	f2.expect(tcpPkt("10.244.2.9", "10.96.1.20", 80), spread("", all[1:]...))
	// no local endpoint: dropped, not rejected
	f3 := newRenderFix(t, "n3", svcs, sl)
	f3.expect(tcpPkt("10.244.3.9", "10.96.1.20", 80), only("drop"))
	f3.expect(fromNode(tcpPkt("192.168.0.3", "10.96.1.20", 80)), only("drop"))
	// the NodePort follows the external policy (Cluster)
	f3.expect(tcpPkt(outsideClient, "192.168.0.3", 30200), spread(byMark, all...))
	f3.expect(tcpPkt("10.244.3.9", "192.168.0.3", 30200), spread(byMark, all...))
}

func TestRenderMasquerade(t *testing.T) {
	f := newRenderFix(t, "n1", []*corev1.Service{
		svc("default", "web", "10.96.0.10", []corev1.ServicePort{tcp("http", 80)}),
		nodePortSvc("default", "np", "10.96.0.12", []corev1.ServicePort{tcp("http", 80)}, 30080),
	}, tcpSlice("web", 8080, ep{ip: "10.244.2.2", node: "n2"}), tcpSlice("np", 8080, ep{ip: "10.244.2.3", node: "n2"}))
	cases := []struct {
		p    Packet
		want string
	}{
		// ClusterIP: pods keep their address, anyone else is masqueraded
		{tcpPkt("10.244.1.9", "10.96.0.10", 80), "accept dnat 10.244.2.2:8080"},
		{tcpPkt("10.244.2.9", "10.96.0.10", 80), "accept dnat 10.244.2.2:8080"},
		{tcpPkt(outsideClient, "10.96.0.10", 80), "accept dnat 10.244.2.2:8080" + byMark},
		{tcpPkt("192.168.0.2", "10.96.0.10", 80), "accept dnat 10.244.2.2:8080" + byMark},
		{fromNode(tcpPkt("192.168.0.1", "10.96.0.10", 80)), "accept dnat 10.244.2.2:8080" + byMark},
		// NodePort with policy Cluster: always
		{tcpPkt("10.244.1.9", "192.168.0.1", 30080), "accept dnat 10.244.2.3:8080" + byMark},
		{tcpPkt(outsideClient, "192.168.0.1", 30080), "accept dnat 10.244.2.3:8080" + byMark},
		{fromNode(tcpPkt("192.168.0.1", "192.168.0.1", 30080)), "accept dnat 10.244.2.3:8080" + byMark},
	}
	for _, c := range cases {
		f.expect(c.p, only(c.want))
	}
	// The mark bit is the postrouting rule's to clear: other bits stay, and a packet leaves
	// with the bit off.
	p := tcpPkt(outsideClient, "10.96.0.10", 80)
	p.Mark = 0x1
	if o := f.walk(p); len(o) != 1 || o[0].Mark != 0x1 {
		t.Fatalf("mark %#x, want 0x1", o[0].Mark)
	}
}

func TestRenderHairpin(t *testing.T) {
	f := newRenderFix(t, "n1", []*corev1.Service{svc("default", "web", "10.96.2.10", []corev1.ServicePort{tcp("http", 80)})},
		tcpSlice("web", 8080, ep{ip: "10.244.1.5", node: "n1"}, ep{ip: "10.244.1.6", node: "n1"}, ep{ip: "10.244.2.5", node: "n2"}))
	// a pod reaching itself through its Service is masqueraded (else it would answer itself
	// from its own address); reaching another pod is not
	f.expect(tcpPkt("10.244.1.5", "10.96.2.10", 80), map[string]float64{
		"accept dnat 10.244.1.5:8080" + byHairpin: 1.0 / 3, "accept dnat 10.244.1.6:8080": 1.0 / 3, "accept dnat 10.244.2.5:8080": 1.0 / 3})
	f.expect(tcpPkt("10.244.1.7", "10.96.2.10", 80), spread("", "10.244.1.5:8080", "10.244.1.6:8080", "10.244.2.5:8080"))
	// the remote endpoint hairpins on its own node, not here
	f.expect(tcpPkt("10.244.2.5", "10.96.2.10", 80), spread("", "10.244.1.5:8080", "10.244.1.6:8080", "10.244.2.5:8080"))
	f2 := newRenderFix(t, "n2", []*corev1.Service{svc("default", "web", "10.96.2.10", []corev1.ServicePort{tcp("http", 80)})},
		tcpSlice("web", 8080, ep{ip: "10.244.1.5", node: "n1"}, ep{ip: "10.244.2.5", node: "n2"}))
	f2.expect(tcpPkt("10.244.2.5", "10.96.2.10", 80), map[string]float64{
		"accept dnat 10.244.1.5:8080": 0.5, "accept dnat 10.244.2.5:8080" + byHairpin: 0.5})
}

func TestRenderTerminatingEndpoints(t *testing.T) {
	ready := ep{ip: "10.244.1.2", node: "n1"}
	termA := ep{ip: "10.244.1.3", node: "n1", terminating: true}
	termB := ep{ip: "10.244.2.3", node: "n2", terminating: true}
	gone := ep{ip: "10.244.2.4", node: "n2", terminating: true, noServ: true}
	unready := ep{ip: "10.244.2.5", node: "n2", notReady: true}
	cases := []struct {
		name string
		eps  []ep
		want map[string]float64
	}{
		{"ready wins", []ep{ready, termA, termB, gone, unready}, only("accept dnat 10.244.1.2:8080")},
		{"terminating serving when no ready", []ep{termA, termB, gone, unready}, spread("", "10.244.1.3:8080", "10.244.2.3:8080")},
		{"never not serving", []ep{gone, unready}, only("reject tcp reset")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newRenderFix(t, "n1", []*corev1.Service{svc("default", "web", "10.96.0.10", []corev1.ServicePort{tcp("http", 80)})},
				tcpSlice("web", 8080, c.eps...))
			f.expect(tcpPkt("10.244.1.9", "10.96.0.10", 80), c.want)
		})
	}
	// The fallback is per view: with policy Local, a node whose only local endpoint is
	// terminating uses it though ready endpoints exist elsewhere.
	lb := lbSvc("default", "web", "10.96.0.10", 80, 30100, "198.51.100.10", localPolicy)
	f := newRenderFix(t, "n1", []*corev1.Service{lb}, tcpSlice("web", 8080, termA, ep{ip: "10.244.2.2", node: "n2"}))
	f.expect(tcpPkt(outsideClient, "198.51.100.10", 80), only("accept dnat 10.244.1.3:8080"))
	f.expect(tcpPkt("10.244.1.9", "198.51.100.10", 80), only("accept dnat 10.244.2.2:8080"+byMark))
	f.expect(tcpPkt("10.244.1.9", "10.96.0.10", 80), only("accept dnat 10.244.2.2:8080"))
}

func TestRenderSessionAffinity(t *testing.T) {
	s := nodePortSvc("default", "web", "10.96.0.22", []corev1.ServicePort{tcp("http", 80), tcp("alt", 81)}, 30080, 30081)
	s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr(int32(600))}}
	eps := []ep{{ip: "10.244.1.3", node: "n1"}, {ip: "10.244.1.4", node: "n1"}, {ip: "10.244.2.4", node: "n2"}}
	f := newRenderFix(t, "n1", []*corev1.Service{s},
		slice("default", "web", "http", corev1.ProtocolTCP, 8080, eps...),
		slice("default", "web", "alt", corev1.ProtocolTCP, 8081, eps...))
	all := []string{"10.244.1.3:8080", "10.244.1.4:8080", "10.244.2.4:8080"}
	for _, first := range []Packet{tcpPkt("10.244.1.9", "10.96.0.22", 80), tcpPkt(outsideClient, "192.168.0.1", 30080)} {
		suffix := ""
		if first.Src.String() == outsideClient {
			suffix = byMark
		}
		outs := f.walk(first)
		if len(outs) != 3 {
			t.Fatalf("%s: %d outcomes", first, len(outs))
		}
		for k, o := range outs {
			f.reset()
			if len(o.Updates) != 1 || o.Updates[0].Set != SetAffinity || !o.Updates[0].Added || o.Updates[0].Timeout.Seconds() != 600 {
				t.Fatalf("updates %+v", o.Updates)
			}
			f.w.Remember(o)
			// the same client's next connection (from another source port) goes to the same endpoint
			again := first
			again.SrcPort++
			f.expect(again, only("accept dnat "+all[k]+suffix))
			// a NodePort is one entry whatever local address it is reached on
			if first.DstPort == 30080 {
				via := again
				via.Dst = netip.MustParseAddr("10.244.1.1")
				f.expect(via, only("accept dnat "+all[k]+suffix))
			}
			// another client chooses afresh
			other := first
			other.Src = netip.MustParseAddr("10.244.2.9")
			if first.Src.String() == outsideClient {
				other.Src = netip.MustParseAddr("203.0.113.8")
			}
			f.expect(other, spread(suffix, all...))
			// another port of the Service is another choice
			alt := first
			alt.DstPort++
			f.expect(alt, spread(suffix, "10.244.1.3:8081", "10.244.1.4:8081", "10.244.2.4:8081"))
		}
		f.reset()
	}
}

// TestRenderNotProxied: headless and ExternalName Services, and Services without a ClusterIP,
// produce nothing.
func TestRenderNotProxied(t *testing.T) {
	svcs := []*corev1.Service{
		svc("default", "headless", "None", []corev1.ServicePort{tcp("http", 80)}),
		svc("default", "name", "", []corev1.ServicePort{tcp("http", 80)}, func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeExternalName
			s.Spec.ExternalName = "example.com"
		}),
		svc("default", "pending", "", []corev1.ServicePort{tcp("http", 80)}),
	}
	f := newRenderFix(t, "n1", svcs, tcpSlice("headless", 8080, ep{ip: "10.244.1.2", node: "n1"}),
		tcpSlice("name", 8080, ep{ip: "10.244.1.3", node: "n1"}))
	if got, want := f.rs.Text(true), Render(Snapshot{}, Options{ClusterCIDR: clusterCIDR}).Text(true); got != want {
		t.Fatalf("not an empty table:\n%s", got)
	}
	f.expect(tcpPkt("10.244.1.9", "10.244.1.2", 8080), only("accept"))
}
