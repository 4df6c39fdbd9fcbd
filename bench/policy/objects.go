package main

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podnet/podnet/internal/policy"
)

// The synthetic cluster: numNodes nodes, node n owning the pod CIDR 10.244.4n.0/22; pods are
// placed round robin over the nodes (so every namespace and app is spread over all of them) and
// numbered upwards in their node's CIDR from .2 (.1 is the node's bridge). The benchmark's node
// is node 0: it holds 1/numNodes of the synthetic pods, and the probe / iperf3 pods.
const (
	numNodes    = 10
	podsPerApp  = 5
	localNode   = 0
	probeNS     = "bench-probe"
	probeClient = "probe-client"
	probeServer = "probe-server"
	probePort   = 8080 // the server pod's "http" port, probed in part 2 and used for conn/s in part 3
	iperfPort   = 5201
)

var tiers = []string{"frontend", "backend", "backend", "db"}

func nodeName(n int) string { return fmt.Sprintf("node-%d", n) }

// nodeCIDR is node n's pod CIDR.
func nodeCIDR(n int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(4 * n), 0}), 22)
}

func addrAdd(a netip.Addr, n int) netip.Addr {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// gateway is node 0's bridge address; the real pods of parts 2 and 3 sit behind it.
var (
	gateway  = addrAdd(nodeCIDR(localNode).Addr(), 1)
	clientIP = addrAdd(nodeCIDR(localNode).Addr(), 1000) // far above the synthetic pods of node 0 (≤ 502)
	serverIP = addrAdd(nodeCIDR(localNode).Addr(), 1001)
)

func ptr[T any](v T) *T { return &v }

// cluster is one synthetic object set, as the agent's listers would hold it.
type cluster struct {
	pods       []*corev1.Pod
	namespaces []*corev1.Namespace
	policies   []*networkingv1.NetworkPolicy
	appNS      []string // the application namespaces (policies live there)
	apps       int      // apps per application namespace
	kinds      map[string]int
}

func appName(k int) string { return fmt.Sprintf("svc-%02d", k) }

func mkPod(ns, name string, node int, ip netip.Addr, lbls map[string]string, ports []corev1.ContainerPort) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbls},
		Spec:       corev1.PodSpec{NodeName: nodeName(node), Containers: []corev1.Container{{Name: "main", Ports: ports}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip.String(), PodIPs: []corev1.PodIP{{IP: ip.String()}}},
	}
}

func appPorts(tier string) []corev1.ContainerPort {
	ps := []corev1.ContainerPort{
		{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
		{Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP},
	}
	if tier == "db" {
		ps = append(ps, corev1.ContainerPort{Name: "postgres", ContainerPort: 5432, Protocol: corev1.ProtocolTCP})
	}
	return ps
}

// genCluster makes nPods pods (plus the two probe pods) and nPolicies policies of mixed kinds.
//
// Namespaces: kube-system (2 coredns pods), monitoring (2 prometheus pods), bench-probe (the
// probe client and server, selected by no synthetic policy) and max(10, nPods/100) application
// namespaces ns-NNN labelled team=team-(i%5), env=prod|staging|dev, each with apps of 5 pods
// (labels app, tier, version; container ports http 8080, metrics 9090, and postgres 5432 for the
// db tier).
func genCluster(nPods, nPolicies int) *cluster {
	c := &cluster{kinds: map[string]int{}}
	nNS := max(10, nPods/100)
	perNS := (nPods - 4) / nNS
	c.apps = max(1, perNS/podsPerApp)
	j := 0 // global pod index: node j%numNodes, address j/numNodes+2 in that node's CIDR
	add := func(ns, name string, lbls map[string]string, ports []corev1.ContainerPort) {
		node := j % numNodes
		ip := addrAdd(nodeCIDR(node).Addr(), 2+j/numNodes)
		c.pods = append(c.pods, mkPod(ns, name, node, ip, lbls, ports))
		j++
	}
	c.namespaces = append(c.namespaces,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "monitoring", Labels: map[string]string{"purpose": "monitoring"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: probeNS}})
	for i := 0; i < 2; i++ {
		add("kube-system", fmt.Sprintf("coredns-%d", i), map[string]string{"k8s-app": "kube-dns"},
			[]corev1.ContainerPort{{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}, {Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP}})
		add("monitoring", fmt.Sprintf("prometheus-%d", i), map[string]string{"app": "prometheus"}, appPorts("frontend"))
	}
	envs := []string{"prod", "staging", "dev"}
	for i := 0; i < nNS; i++ {
		ns := fmt.Sprintf("ns-%03d", i)
		c.appNS = append(c.appNS, ns)
		c.namespaces = append(c.namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
			Labels: map[string]string{"team": fmt.Sprintf("team-%d", i%5), "env": envs[i%3]}}})
		n := perNS
		if i == nNS-1 {
			n = nPods - j // the remainder
		}
		for k := 0; k < n; k++ {
			app := (k / podsPerApp) % c.apps
			tier := tiers[app%len(tiers)]
			add(ns, fmt.Sprintf("%s-%d", appName(app), k), map[string]string{
				"app": appName(app), "tier": tier, "version": fmt.Sprintf("v%d", 1+k%2)}, appPorts(tier))
		}
	}
	// The real pods of parts 2 and 3, on node 0.
	c.pods = append(c.pods,
		mkPod(probeNS, probeClient, localNode, clientIP, map[string]string{"app": probeClient}, nil),
		mkPod(probeNS, probeServer, localNode, serverIP, map[string]string{"app": probeServer},
			[]corev1.ContainerPort{{Name: "http", ContainerPort: probePort, Protocol: corev1.ProtocolTCP}}))
	for i := 0; i < nPolicies; i++ {
		p, kind := c.genPolicy(i)
		c.policies = append(c.policies, p)
		c.kinds[kind]++
	}
	return c
}

func sel(kv ...string) *metav1.LabelSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return &metav1.LabelSelector{MatchLabels: m}
}

func tcpPort(p int) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: ptr(corev1.ProtocolTCP), Port: ptr(intstr.FromInt32(int32(p)))}
}

func namedPort(name string) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: ptr(corev1.ProtocolTCP), Port: ptr(intstr.FromString(name))}
}

func rangePort(lo, hi int) networkingv1.NetworkPolicyPort {
	p := tcpPort(lo)
	p.EndPort = ptr(int32(hi))
	return p
}

// genPolicy is policy i: namespace ns-(i mod nNS); the first policy of every namespace is its
// default deny for ingress, the others rotate over seven allow patterns; target app varies with i.
func (c *cluster) genPolicy(i int) (*networkingv1.NetworkPolicy, string) {
	nNS := len(c.appNS)
	ns := c.appNS[i%nNS]
	round := i / nNS
	app := appName((i*7 + round) % c.apps)
	peerApp := appName((i*3 + 1 + round) % c.apps)
	team := fmt.Sprintf("team-%d", (i/3)%5)
	kind := "default-deny-ingress"
	if round > 0 {
		kind = []string{"app-from-app", "cross-ns-named-port", "from-monitoring", "ipblock-ingress",
			"egress-db-dns", "egress-internet", "ingress+egress-prod"}[(i+round)%7]
	}
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("pol-%04d-%s", i, kind)}}
	s := &np.Spec
	ingress, egress := networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress
	switch kind {
	case "default-deny-ingress":
		s.PolicyTypes = []networkingv1.PolicyType{ingress}
	case "app-from-app":
		s.PodSelector = *sel("app", app)
		s.Ingress = []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", peerApp)}},
			Ports: []networkingv1.NetworkPolicyPort{tcpPort(8080)}}}
	case "cross-ns-named-port":
		s.PodSelector = *sel("app", app)
		s.Ingress = []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("team", team), PodSelector: sel("tier", "frontend")}},
			Ports: []networkingv1.NetworkPolicyPort{namedPort("http")}}}
	case "from-monitoring":
		s.PodSelector = *sel("app", app)
		s.Ingress = []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("purpose", "monitoring"), PodSelector: sel("app", "prometheus")}},
			Ports: []networkingv1.NetworkPolicyPort{namedPort("metrics")}}}
	case "ipblock-ingress":
		s.PodSelector = *sel("app", app)
		s.Ingress = []networkingv1.NetworkPolicyIngressRule{{
			From: []networkingv1.NetworkPolicyPeer{
				{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.244.0.0/16", "10.96.0.0/12"}}},
				{IPBlock: &networkingv1.IPBlock{CIDR: fmt.Sprintf("192.168.%d.0/24", i%256)}}},
			Ports: []networkingv1.NetworkPolicyPort{tcpPort(443), tcpPort(8443), rangePort(30000, 30100)}}}
	case "egress-db-dns":
		s.PodSelector = *sel("app", app)
		s.PolicyTypes = []networkingv1.PolicyType{egress}
		s.Egress = []networkingv1.NetworkPolicyEgressRule{
			{To: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("tier", "db")}}, Ports: []networkingv1.NetworkPolicyPort{tcpPort(5432)}},
			{To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("kubernetes.io/metadata.name", "kube-system"), PodSelector: sel("k8s-app", "kube-dns")}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: ptr(corev1.ProtocolUDP), Port: ptr(intstr.FromInt32(53))}, tcpPort(53)}}}
	case "egress-internet":
		s.PodSelector = *sel("app", app)
		s.PolicyTypes = []networkingv1.PolicyType{egress}
		s.Egress = []networkingv1.NetworkPolicyEgressRule{
			{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}}}},
				Ports: []networkingv1.NetworkPolicyPort{tcpPort(443)}},
			{To: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", peerApp)}}, Ports: []networkingv1.NetworkPolicyPort{namedPort("http")}}}
	case "ingress+egress-prod":
		s.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"tier": "backend"},
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{app, peerApp}}}}
		s.PolicyTypes = []networkingv1.PolicyType{ingress, egress}
		s.Ingress = []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("env", "prod"), PodSelector: sel("tier", "frontend")}},
			Ports: []networkingv1.NetworkPolicyPort{tcpPort(8080)}}}
		s.Egress = []networkingv1.NetworkPolicyEgressRule{{
			To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "env", Operator: metav1.LabelSelectorOpIn, Values: []string{"prod", "staging"}}}}, PodSelector: sel("tier", "backend")}},
			Ports: []networkingv1.NetworkPolicyPort{rangePort(8080, 8090)}}}
	}
	return np, kind
}

// lockdown is the change of part 2: a policy selecting the probe server whose ingress allows
// only app=probe-other (deny for the probe client) or, with allowClient, also the client.
func lockdown(allowClient bool) *networkingv1.NetworkPolicy {
	peers := []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", "probe-other")}}
	if allowClient {
		peers = append(peers, networkingv1.NetworkPolicyPeer{PodSelector: sel("app", probeClient)})
	}
	return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: probeNS, Name: "probe-lockdown"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: *sel("app", probeServer),
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: peers, Ports: []networkingv1.NetworkPolicyPort{tcpPort(probePort)}}}}}
}

// throughputPolicies are part 3's n policies in the probe namespace, every one selecting both
// the client and the server pod (podSelector {}), for ingress and egress, each with its own
// peers and ports, so both allow sets are big. Policy 0 is the one that allows client → server
// on the iperf3 and probe ports; the others allow traffic from and to the synthetic pods and
// address blocks.
func (c *cluster) throughputPolicies(n int) []*networkingv1.NetworkPolicy {
	var out []*networkingv1.NetworkPolicy
	both := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	udp := networkingv1.NetworkPolicyPort{Protocol: ptr(corev1.ProtocolUDP), Port: ptr(intstr.FromInt32(iperfPort))}
	out = append(out, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: probeNS, Name: "tp-0000-allow-bench"},
		Spec: networkingv1.NetworkPolicySpec{PolicyTypes: both,
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", probeClient)}},
				Ports: []networkingv1.NetworkPolicyPort{tcpPort(iperfPort), udp, tcpPort(probePort)}}},
			Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", probeServer)}},
				Ports: []networkingv1.NetworkPolicyPort{tcpPort(iperfPort), udp, tcpPort(probePort)}}}}})
	for i := 1; i < n; i++ {
		ns := c.appNS[i%len(c.appNS)]
		app := appName(i % c.apps)
		out = append(out, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: probeNS, Name: fmt.Sprintf("tp-%04d", i)},
			Spec: networkingv1.NetworkPolicySpec{PolicyTypes: both,
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From: []networkingv1.NetworkPolicyPeer{
						{NamespaceSelector: sel("kubernetes.io/metadata.name", ns), PodSelector: sel("app", app)},
						{IPBlock: &networkingv1.IPBlock{CIDR: fmt.Sprintf("172.16.%d.%d/30", i/64, (i%64)*4)}}},
					Ports: []networkingv1.NetworkPolicyPort{tcpPort(10000 + i), namedPort("http")}}},
				Egress: []networkingv1.NetworkPolicyEgressRule{{
					To: []networkingv1.NetworkPolicyPeer{
						{NamespaceSelector: sel("kubernetes.io/metadata.name", ns), PodSelector: sel("app", app)},
						{IPBlock: &networkingv1.IPBlock{CIDR: fmt.Sprintf("192.168.%d.%d/30", i/64, (i%64)*4)}}},
					Ports: []networkingv1.NetworkPolicyPort{tcpPort(20000 + i), rangePort(8080, 8090)}}}}})
	}
	return out
}

// localIPs are the addresses of the pods on node n, found the way the agent finds them.
func localIPs(pods []*corev1.Pod, n int) []netip.Addr {
	var out []netip.Addr
	for _, p := range pods {
		if p.Spec.NodeName != nodeName(n) || p.Spec.HostNetwork ||
			p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, s := range p.Status.PodIPs {
			if ip, err := netip.ParseAddr(s.IP); err == nil {
				out = append(out, ip)
			}
		}
		if ip, err := netip.ParseAddr(p.Status.PodIP); err == nil && len(p.Status.PodIPs) == 0 {
			out = append(out, ip)
		}
	}
	return out
}

// nodeInfo is what Render gets for node n: its pods' addresses, and (fail closed) its pod CIDR.
func nodeInfo(pods []*corev1.Pod, n int) policy.NodeInfo {
	return policy.NodeInfo{LocalPodIPs: localIPs(pods, n), PodCIDRs: []netip.Prefix{nodeCIDR(n)}}
}

// elements counts the rendered set elements per set.
func elements(rs *policy.Ruleset) (total int, per map[string]int) {
	per = map[string]int{}
	for _, s := range rs.Sets {
		per[s.Name] = len(s.Elements)
		total += len(s.Elements)
	}
	return total, per
}
