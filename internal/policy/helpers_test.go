package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The upstream netpol e2e layout: namespaces x, y, z; pods a, b, c in each,
// each serving 80 and 81 on TCP and UDP with ports named serve-<port>-<proto>.
var (
	nsNames  = []string{"x", "y", "z"}
	podNames = []string{"a", "b", "c"}
)

func allPodRefs() []PodRef {
	var out []PodRef
	for _, ns := range nsNames {
		for _, p := range podNames {
			out = append(out, PodRef{ns, p})
		}
	}
	return out
}

func podIP(ns, name string) string {
	return fmt.Sprintf("10.0.%d.%d", strings.Index("xyz", ns), strings.Index("abc", name)+1)
}

func servePorts() []corev1.ContainerPort {
	var out []corev1.ContainerPort
	for _, port := range []int32{80, 81} {
		for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP} {
			out = append(out, corev1.ContainerPort{
				Name:          fmt.Sprintf("serve-%d-%s", port, strings.ToLower(string(proto))),
				ContainerPort: port,
				Protocol:      proto,
			})
		}
	}
	return out
}

func mkPod(ns, name, ip string, lbls map[string]string, ports []corev1.ContainerPort) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbls},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: ports}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	if ip != "" {
		p.Status.PodIP = ip
		p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	}
	return p
}

func basePods() []*corev1.Pod {
	var out []*corev1.Pod
	for _, ns := range nsNames {
		for _, n := range podNames {
			out = append(out, mkPod(ns, n, podIP(ns, n), map[string]string{"pod": n}, servePorts()))
		}
	}
	return out
}

func baseNamespaces() []*corev1.Namespace {
	var out []*corev1.Namespace
	for _, ns := range nsNames {
		out = append(out, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name:   ns,
			Labels: map[string]string{"ns": ns},
		}})
	}
	return out
}

// --- policy builders ---

func np(ns, name string, sel metav1.LabelSelector, opts ...func(*networkingv1.NetworkPolicySpec)) *networkingv1.NetworkPolicy {
	p := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: sel},
	}
	for _, o := range opts {
		o(&p.Spec)
	}
	return p
}

func all() metav1.LabelSelector { return metav1.LabelSelector{} }

func labelsSel(kv ...string) metav1.LabelSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return metav1.LabelSelector{MatchLabels: m}
}

func exprSel(key string, op metav1.LabelSelectorOperator, vals ...string) metav1.LabelSelector {
	return metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: vals}}}
}

func selPtr(s metav1.LabelSelector) *metav1.LabelSelector { return &s }

func types(t ...networkingv1.PolicyType) func(*networkingv1.NetworkPolicySpec) {
	return func(s *networkingv1.NetworkPolicySpec) { s.PolicyTypes = t }
}

var (
	tIn  = networkingv1.PolicyTypeIngress
	tEg  = networkingv1.PolicyTypeEgress
	tcp  = corev1.ProtocolTCP
	udp  = corev1.ProtocolUDP
	sctp = corev1.ProtocolSCTP
)

type rule struct {
	peers []networkingv1.NetworkPolicyPeer
	ports []networkingv1.NetworkPolicyPort
}

func ingress(rules ...rule) func(*networkingv1.NetworkPolicySpec) {
	return func(s *networkingv1.NetworkPolicySpec) {
		s.Ingress = []networkingv1.NetworkPolicyIngressRule{}
		for _, r := range rules {
			s.Ingress = append(s.Ingress, networkingv1.NetworkPolicyIngressRule{From: r.peers, Ports: r.ports})
		}
	}
}

func egress(rules ...rule) func(*networkingv1.NetworkPolicySpec) {
	return func(s *networkingv1.NetworkPolicySpec) {
		s.Egress = []networkingv1.NetworkPolicyEgressRule{}
		for _, r := range rules {
			s.Egress = append(s.Egress, networkingv1.NetworkPolicyEgressRule{To: r.peers, Ports: r.ports})
		}
	}
}

func peers(p ...networkingv1.NetworkPolicyPeer) []networkingv1.NetworkPolicyPeer { return p }
func ports(p ...networkingv1.NetworkPolicyPort) []networkingv1.NetworkPolicyPort { return p }

func podPeer(s metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: selPtr(s)}
}

func nsPeer(s metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: selPtr(s)}
}

func nsPodPeer(ns, pod metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: selPtr(ns), PodSelector: selPtr(pod)}
}

func cidrPeer(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

func numPort(proto corev1.Protocol, port int) networkingv1.NetworkPolicyPort {
	p := intstr.FromInt32(int32(port))
	pp := networkingv1.NetworkPolicyPort{Port: &p}
	if proto != "" {
		pp.Protocol = &proto
	}
	return pp
}

func rangePort(proto corev1.Protocol, port, end int) networkingv1.NetworkPolicyPort {
	pp := numPort(proto, port)
	e := int32(end)
	pp.EndPort = &e
	return pp
}

func namedPort(proto corev1.Protocol, name string) networkingv1.NetworkPolicyPort {
	p := intstr.FromString(name)
	pp := networkingv1.NetworkPolicyPort{Port: &p}
	if proto != "" {
		pp.Protocol = &proto
	}
	return pp
}

func protoOnly(proto corev1.Protocol) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: &proto}
}

// --- evaluation helpers ---

// addr resolves "ns/pod" against the base layout, or parses an IP literal.
func addr(t *testing.T, s string) netip.Addr {
	t.Helper()
	if ns, pod, ok := strings.Cut(s, "/"); ok {
		return netip.MustParseAddr(podIP(ns, pod))
	}
	return netip.MustParseAddr(s)
}

// chk is one expected connection outcome.
type chk struct {
	from, to string
	proto    corev1.Protocol
	port     uint16
	want     bool
}

func allow(from, to string, port uint16) chk { return chk{from, to, tcp, port, true} }
func deny(from, to string, port uint16) chk  { return chk{from, to, tcp, port, false} }
func allowP(from, to string, proto corev1.Protocol, port uint16) chk {
	return chk{from, to, proto, port, true}
}
func denyP(from, to string, proto corev1.Protocol, port uint16) chk {
	return chk{from, to, proto, port, false}
}
