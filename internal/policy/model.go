// Package policy compiles Kubernetes NetworkPolicies into a concrete, pure
// model (pod IPs, resolved peers and ports) and evaluates traffic against it.
//
// The same Model is what the nftables enforcement compiles from and what
// `podnet explain` evaluates, so both always agree.
package policy

import (
	"net/netip"
	"sort"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// namespaceNameLabel is set on every namespace by the API server.
const namespaceNameLabel = "kubernetes.io/metadata.name"

// PodRef names a pod.
type PodRef struct {
	Namespace string
	Name      string
}

func (r PodRef) String() string { return r.Namespace + "/" + r.Name }

// PolicyRef names a NetworkPolicy.
type PolicyRef struct {
	Namespace string
	Name      string
}

func (r PolicyRef) String() string { return r.Namespace + "/" + r.Name }

// Pod is a pod that takes part in policy: it has at least one IP, is not
// terminal and is not host-network.
type Pod struct {
	Ref    PodRef
	IPs    []netip.Addr
	Labels map[string]string
	// Ports are the pod's container ports (used to resolve named ports).
	Ports []corev1.ContainerPort
	// IngressPolicies / EgressPolicies are the policies selecting this pod
	// with that policy type, in Model.Policies order. A pod is isolated in a
	// direction iff the corresponding slice is non-empty.
	IngressPolicies []*Policy
	EgressPolicies  []*Policy
}

// Policy is one compiled NetworkPolicy.
type Policy struct {
	Ref PolicyRef
	// Ingress / Egress are the effective policy types (after API-server
	// defaulting: Ingress always, Egress iff egress rules are present, unless
	// policyTypes is given explicitly).
	Ingress bool
	Egress  bool
	// Selected are the pods the policy applies to (podSelector in its namespace).
	Selected     []*Pod
	IngressRules []*Rule
	EgressRules  []*Rule
}

// Rule is one ingress or egress rule of a policy.
type Rule struct {
	Index int
	// AllPeers: the rule had no from/to, so every source/destination matches.
	AllPeers bool
	Peers    []*Peer
	// AllPorts: the rule had no ports, so every port and protocol matches.
	AllPorts bool
	Ports    []*Port
}

// Peer is one from/to entry with its selectors resolved.
type Peer struct {
	Index int
	// Pods is the resolved pod set for podSelector/namespaceSelector peers
	// (sorted by namespace/name). Nil for ipBlock peers.
	Pods []*Pod
	// IPBlock is set for ipBlock peers.
	IPBlock *IPBlock
	// Invalid is set when the peer could not be compiled (bad selector or
	// CIDR, or no selector at all); it then matches nothing.
	Invalid bool

	podSet map[*Pod]bool
}

// IPs returns the concrete addresses of a pod peer.
func (p *Peer) IPs() []netip.Addr {
	var out []netip.Addr
	for _, pod := range p.Pods {
		out = append(out, pod.IPs...)
	}
	return out
}

// IPBlock is a CIDR minus exceptions. It matches any address, pod or not.
type IPBlock struct {
	CIDR   netip.Prefix
	Except []netip.Prefix
}

// Contains reports whether a is in CIDR and in none of Except.
func (b *IPBlock) Contains(a netip.Addr) bool {
	a = a.Unmap()
	if !b.CIDR.Contains(a) {
		return false
	}
	for _, e := range b.Except {
		if e.Contains(a) {
			return false
		}
	}
	return true
}

// Port is one ports entry of a rule.
type Port struct {
	Index    int
	Protocol corev1.Protocol // defaulted to TCP
	// AllPorts: no port given, every port of Protocol matches.
	AllPorts bool
	// Port..EndPort is a numeric range (EndPort == Port for a single port).
	Port, EndPort uint16
	// Name is set for a named port, resolved per destination pod.
	Name string
	// Invalid entries (e.g. endPort < port) match nothing.
	Invalid bool
}

// Resolve returns the port range this entry allows towards destination pod
// dst (nil for a non-pod destination). Named ports resolve against dst's
// container ports (name and protocol) and never match non-pod destinations.
// For ingress rules dst is the selected pod; for egress rules it is the peer
// pod, and a named port in an egress rule matches nothing for ipBlock peers.
func (p *Port) Resolve(dst *Pod) (lo, hi uint16, ok bool) {
	switch {
	case p.Invalid:
		return 0, 0, false
	case p.AllPorts:
		return 0, 65535, true
	case p.Name != "":
		if dst == nil {
			return 0, 0, false
		}
		for _, cp := range dst.Ports {
			proto := cp.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			if cp.Name == p.Name && proto == p.Protocol && cp.ContainerPort > 0 && cp.ContainerPort <= 65535 {
				return uint16(cp.ContainerPort), uint16(cp.ContainerPort), true
			}
		}
		return 0, 0, false
	default:
		return p.Port, p.EndPort, true
	}
}

// Matches reports whether proto/port towards dst is allowed by this entry.
func (p *Port) Matches(proto corev1.Protocol, port uint16, dst *Pod) bool {
	if proto != p.Protocol {
		return false
	}
	lo, hi, ok := p.Resolve(dst)
	return ok && port >= lo && port <= hi
}

// Model is the compiled form of all policies against all pods.
type Model struct {
	// Pods sorted by namespace/name.
	Pods []*Pod
	// Policies sorted by namespace/name.
	Policies []*Policy

	byIP  map[netip.Addr]*Pod
	byRef map[PodRef]*Pod
}

// PodByIP returns the pod owning addr, or nil.
func (m *Model) PodByIP(a netip.Addr) *Pod { return m.byIP[a.Unmap()] }

// Pod returns the pod with the given reference, or nil.
func (m *Model) Pod(r PodRef) *Pod { return m.byRef[r] }

// podActive reports whether a pod takes part in policy, and its IPs.
// PodIPs are the addresses policy judges a pod by: none for a host-network or finished pod
// (its address is the node's, or may already belong to a new pod).
func PodIPs(p *corev1.Pod) []netip.Addr {
	if p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return nil
	}
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	add := func(s string) {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return
		}
		a = a.Unmap()
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	for _, ip := range p.Status.PodIPs {
		add(ip.IP)
	}
	add(p.Status.PodIP)
	return out
}

// Compile builds the model. It is pure and deterministic. Pods without an IP,
// terminal pods (Succeeded/Failed) and host-network pods are ignored.
// Namespaces not listed are assumed to exist with only the
// kubernetes.io/metadata.name label.
func Compile(policies []*networkingv1.NetworkPolicy, pods []*corev1.Pod, namespaces []*corev1.Namespace) *Model {
	m := &Model{byIP: map[netip.Addr]*Pod{}, byRef: map[PodRef]*Pod{}}

	for _, p := range pods {
		if p == nil {
			continue
		}
		ips := PodIPs(p)
		if len(ips) == 0 {
			continue
		}
		ref := PodRef{p.Namespace, p.Name}
		if m.byRef[ref] != nil {
			continue
		}
		pod := &Pod{Ref: ref, IPs: ips, Labels: p.Labels}
		for _, c := range p.Spec.InitContainers { // sidecars may declare ports
			pod.Ports = append(pod.Ports, c.Ports...)
		}
		for _, c := range p.Spec.Containers {
			pod.Ports = append(pod.Ports, c.Ports...)
		}
		m.Pods = append(m.Pods, pod)
		m.byRef[ref] = pod
	}
	sort.Slice(m.Pods, func(i, j int) bool { return refLess(m.Pods[i].Ref, m.Pods[j].Ref) })
	podsByNS := map[string][]*Pod{}
	for _, pod := range m.Pods {
		podsByNS[pod.Ref.Namespace] = append(podsByNS[pod.Ref.Namespace], pod)
		for _, ip := range pod.IPs {
			if _, dup := m.byIP[ip]; !dup {
				m.byIP[ip] = pod
			}
		}
	}

	nsLabels := map[string]labels.Set{}
	for _, ns := range namespaces {
		if ns == nil {
			continue
		}
		l := labels.Set{}
		for k, v := range ns.Labels {
			l[k] = v
		}
		l[namespaceNameLabel] = ns.Name
		nsLabels[ns.Name] = l
	}
	for ns := range podsByNS {
		if _, ok := nsLabels[ns]; !ok {
			nsLabels[ns] = labels.Set{namespaceNameLabel: ns}
		}
	}
	nsNames := make([]string, 0, len(nsLabels))
	for ns := range nsLabels {
		nsNames = append(nsNames, ns)
	}
	sort.Strings(nsNames)

	c := &compiler{podsByNS: podsByNS, nsLabels: nsLabels, nsNames: nsNames}

	sorted := make([]*networkingv1.NetworkPolicy, 0, len(policies))
	for _, np := range policies {
		if np != nil {
			sorted = append(sorted, np)
		}
	}
	sort.Slice(sorted, func(i, j int) bool {
		return refLess(PodRef{sorted[i].Namespace, sorted[i].Name}, PodRef{sorted[j].Namespace, sorted[j].Name})
	})
	for _, np := range sorted {
		pol := c.policy(np)
		m.Policies = append(m.Policies, pol)
		for _, pod := range pol.Selected {
			if pol.Ingress {
				pod.IngressPolicies = append(pod.IngressPolicies, pol)
			}
			if pol.Egress {
				pod.EgressPolicies = append(pod.EgressPolicies, pol)
			}
		}
	}
	return m
}

func refLess(a, b PodRef) bool {
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

type compiler struct {
	podsByNS map[string][]*Pod
	nsLabels map[string]labels.Set
	nsNames  []string
}

// EffectivePolicyTypes returns the policy types as the API server defaults
// them: if none are given, Ingress always and Egress iff egress rules exist.
func EffectivePolicyTypes(spec *networkingv1.NetworkPolicySpec) (ingress, egress bool) {
	if len(spec.PolicyTypes) == 0 {
		return true, len(spec.Egress) > 0
	}
	for _, t := range spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			ingress = true
		case networkingv1.PolicyTypeEgress:
			egress = true
		}
	}
	return ingress, egress
}

func (c *compiler) policy(np *networkingv1.NetworkPolicy) *Policy {
	pol := &Policy{Ref: PolicyRef{np.Namespace, np.Name}}
	pol.Ingress, pol.Egress = EffectivePolicyTypes(&np.Spec)
	if sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector); err == nil {
		for _, pod := range c.podsByNS[np.Namespace] {
			if sel.Matches(labels.Set(pod.Labels)) {
				pol.Selected = append(pol.Selected, pod)
			}
		}
	}
	if pol.Ingress {
		for i, r := range np.Spec.Ingress {
			pol.IngressRules = append(pol.IngressRules, c.rule(np.Namespace, i, r.From, r.Ports))
		}
	}
	if pol.Egress {
		for i, r := range np.Spec.Egress {
			pol.EgressRules = append(pol.EgressRules, c.rule(np.Namespace, i, r.To, r.Ports))
		}
	}
	return pol
}

func (c *compiler) rule(ns string, idx int, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort) *Rule {
	r := &Rule{Index: idx, AllPeers: len(peers) == 0, AllPorts: len(ports) == 0}
	for i := range peers {
		r.Peers = append(r.Peers, c.peer(ns, i, &peers[i]))
	}
	for i := range ports {
		r.Ports = append(r.Ports, compilePort(i, &ports[i]))
	}
	return r
}

func (c *compiler) peer(ns string, idx int, p *networkingv1.NetworkPolicyPeer) *Peer {
	out := &Peer{Index: idx}
	if p.IPBlock != nil {
		if p.PodSelector != nil || p.NamespaceSelector != nil {
			out.Invalid = true // rejected by API validation
			return out
		}
		cidr, err := netip.ParsePrefix(p.IPBlock.CIDR)
		if err != nil {
			out.Invalid = true
			return out
		}
		b := &IPBlock{CIDR: unmapPrefix(cidr)}
		for _, e := range p.IPBlock.Except {
			ep, err := netip.ParsePrefix(e)
			if err != nil {
				out.Invalid = true
				return out
			}
			b.Except = append(b.Except, unmapPrefix(ep))
		}
		out.IPBlock = b
		return out
	}
	if p.PodSelector == nil && p.NamespaceSelector == nil {
		out.Invalid = true
		return out
	}
	podSel := labels.Everything()
	if p.PodSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(p.PodSelector)
		if err != nil {
			out.Invalid = true
			return out
		}
		podSel = s
	}
	namespaces := []string{ns}
	if p.NamespaceSelector != nil {
		nsSel, err := metav1.LabelSelectorAsSelector(p.NamespaceSelector)
		if err != nil {
			out.Invalid = true
			return out
		}
		namespaces = nil
		for _, n := range c.nsNames {
			if nsSel.Matches(c.nsLabels[n]) {
				namespaces = append(namespaces, n)
			}
		}
	}
	out.Pods = []*Pod{}
	out.podSet = map[*Pod]bool{}
	for _, n := range namespaces {
		for _, pod := range c.podsByNS[n] {
			if podSel.Matches(labels.Set(pod.Labels)) {
				out.Pods = append(out.Pods, pod)
				out.podSet[pod] = true
			}
		}
	}
	return out
}

func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() {
		bits := p.Bits() - 96
		if bits < 0 {
			bits = 0
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), bits)
	}
	return p.Masked()
}

func compilePort(idx int, p *networkingv1.NetworkPolicyPort) *Port {
	out := &Port{Index: idx, Protocol: corev1.ProtocolTCP}
	if p.Protocol != nil && *p.Protocol != "" {
		out.Protocol = *p.Protocol
	}
	if p.Port == nil {
		out.AllPorts = true
		return out
	}
	if p.Port.Type == intstr.String {
		out.Name = p.Port.StrVal
		if out.Name == "" || p.EndPort != nil {
			out.Invalid = true
		}
		return out
	}
	v := p.Port.IntVal
	if v < 1 || v > 65535 {
		out.Invalid = true
		return out
	}
	out.Port, out.EndPort = uint16(v), uint16(v)
	if p.EndPort != nil {
		e := *p.EndPort
		if e < v || e > 65535 {
			out.Invalid = true
			return out
		}
		out.EndPort = uint16(e)
	}
	return out
}
