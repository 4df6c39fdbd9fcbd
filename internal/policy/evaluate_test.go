package policy

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const external = "192.168.7.7"

func TestEvaluate(t *testing.T) {
	type tc struct {
		name     string
		policies []*networkingv1.NetworkPolicy
		// extraPods are added to the base layout; namespaces override the
		// base namespaces when non-nil.
		extraPods  []*corev1.Pod
		namespaces []*corev1.Namespace
		checks     []chk
	}
	cases := []tc{
		{
			name: "no policies: everything allowed, including self and external",
			checks: []chk{
				allow("x/a", "y/b", 80), allow("x/a", "x/a", 80), allowP("z/c", "x/a", udp, 81),
				allow(external, "x/a", 80), allow("x/a", external, 443),
			},
		},
		{
			name:     "default deny ingress in x",
			policies: []*networkingv1.NetworkPolicy{np("x", "deny", all(), types(tIn))},
			checks: []chk{
				deny("x/b", "x/a", 80), deny("y/a", "x/a", 80), denyP("z/c", "x/c", udp, 81),
				deny("x/a", "x/a", 80), deny(external, "x/b", 80),
				// egress from x not isolated; other namespaces unaffected
				allow("x/a", "y/a", 80), allow("x/a", external, 80), allow("y/a", "z/b", 81),
			},
		},
		{
			name:     "default deny ingress without policyTypes (ingress is always implied)",
			policies: []*networkingv1.NetworkPolicy{np("x", "deny", all())},
			checks:   []chk{deny("y/a", "x/a", 80), allow("x/a", "y/a", 80)},
		},
		{
			name:     "empty ingress list with policyTypes Ingress denies all",
			policies: []*networkingv1.NetworkPolicy{np("x", "deny", all(), types(tIn), ingress())},
			checks:   []chk{deny("y/a", "x/a", 80), deny("x/b", "x/a", 80)},
		},
		{
			name:     "ingress [{}] allows all",
			policies: []*networkingv1.NetworkPolicy{np("x", "allow-all", all(), ingress(rule{}))},
			checks:   []chk{allow("y/a", "x/a", 80), allowP(external, "x/b", udp, 9999), allow("x/a", "x/a", 81)},
		},
		{
			name: "allow-all ingress unions with default deny",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "deny", all(), types(tIn)),
				np("x", "allow-all", all(), ingress(rule{})),
			},
			checks: []chk{allow("y/a", "x/a", 80), allow(external, "x/c", 81)},
		},
		{
			name:     "default deny egress in x",
			policies: []*networkingv1.NetworkPolicy{np("x", "deny-egress", all(), types(tEg))},
			checks: []chk{
				deny("x/a", "y/a", 80), deny("x/a", "x/b", 80), deny("x/a", "x/a", 80), deny("x/a", external, 53),
				allow("y/a", "x/a", 80), allow(external, "x/a", 80), allow("y/a", "z/a", 80),
			},
		},
		{
			name:     "egress [{}] with policyTypes Egress allows all egress",
			policies: []*networkingv1.NetworkPolicy{np("x", "allow-egress", all(), types(tEg), egress(rule{}))},
			checks:   []chk{allow("x/a", "y/a", 80), allow("x/a", external, 53)},
		},
		{
			name:     "default deny both directions",
			policies: []*networkingv1.NetworkPolicy{np("x", "deny-all", all(), types(tIn, tEg))},
			checks:   []chk{deny("x/a", "y/a", 80), deny("y/a", "x/a", 80), deny("x/a", "x/b", 80), allow("y/a", "z/a", 80)},
		},
		{
			name: "policyTypes defaulting: egress rules only => Ingress+Egress isolation",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "eg", labelsSel("pod", "a"), egress(rule{peers: peers(nsPeer(labelsSel("ns", "y")))})),
			},
			checks: []chk{
				// ingress is isolated too (defaulted Ingress, no ingress rules)
				deny("x/b", "x/a", 80), allow("x/a", "y/b", 80), deny("x/a", "z/b", 80),
				allow("x/b", "z/b", 80),
			},
		},
		{
			name: "egress-only policy (policyTypes [Egress]) does not isolate ingress",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "eg", labelsSel("pod", "a"), types(tEg), egress(rule{peers: peers(nsPeer(labelsSel("ns", "y")))})),
			},
			checks: []chk{allow("x/b", "x/a", 80), allow("z/c", "x/a", 80), allow("x/a", "y/b", 80), deny("x/a", "z/b", 80)},
		},
		{
			name: "policyTypes [Ingress] ignores egress rules",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "in", labelsSel("pod", "a"), types(tIn), egress(rule{peers: peers(nsPeer(labelsSel("ns", "y")))})),
			},
			checks: []chk{allow("x/a", "z/b", 80), deny("x/b", "x/a", 80)},
		},
		{
			name: "podSelector matchLabels peer: same namespace only",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "from-b", labelsSel("pod", "a"), ingress(rule{peers: peers(podPeer(labelsSel("pod", "b")))})),
			},
			checks: []chk{
				allow("x/b", "x/a", 80), deny("x/c", "x/a", 80), deny("y/b", "x/a", 80), deny("z/b", "x/a", 80),
				deny(external, "x/a", 80), deny("x/a", "x/a", 80), allow("x/c", "x/b", 80),
			},
		},
		{
			name: "podSelector matchExpressions In",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "in", labelsSel("pod", "a"), ingress(rule{peers: peers(podPeer(exprSel("pod", metav1.LabelSelectorOpIn, "b", "c")))})),
			},
			checks: []chk{allow("x/b", "x/a", 80), allow("x/c", "x/a", 80), deny("x/a", "x/a", 80), deny("y/b", "x/a", 80)},
		},
		{
			name: "podSelector matchExpressions NotIn (also as target selector)",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "notin", exprSel("pod", metav1.LabelSelectorOpNotIn, "a"),
					ingress(rule{peers: peers(podPeer(exprSel("pod", metav1.LabelSelectorOpNotIn, "b")))})),
			},
			checks: []chk{
				// targets are x/b, x/c; x/a unselected
				allow("y/a", "x/a", 80), allow("x/a", "x/b", 80), allow("x/c", "x/b", 80), deny("x/b", "x/b", 80),
				deny("x/b", "x/c", 80), deny("y/a", "x/c", 80),
			},
		},
		{
			name: "podSelector matchExpressions Exists / DoesNotExist",
			extraPods: []*corev1.Pod{
				mkPod("x", "d", "10.0.0.4", map[string]string{"pod": "d", "role": "db"}, servePorts()),
			},
			policies: []*networkingv1.NetworkPolicy{
				np("x", "exists", exprSel("role", metav1.LabelSelectorOpExists),
					ingress(rule{peers: peers(podPeer(exprSel("role", metav1.LabelSelectorOpDoesNotExist)))})),
			},
			checks: []chk{
				allow("x/a", "10.0.0.4", 80), allow("x/c", "10.0.0.4", 80), deny("10.0.0.4", "10.0.0.4", 80),
				deny("y/a", "10.0.0.4", 80), allow("y/a", "x/a", 80),
			},
		},
		{
			name: "invalid selector matches nothing",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "bad", labelsSel("pod", "a"), ingress(rule{peers: peers(podPeer(exprSel("pod", "Bogus", "b")))})),
			},
			checks: []chk{deny("x/b", "x/a", 80)},
		},
		{
			name: "namespaceSelector alone: all pods in matching namespaces",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "from-y", labelsSel("pod", "a"), ingress(rule{peers: peers(nsPeer(labelsSel("ns", "y")))})),
			},
			checks: []chk{
				allow("y/a", "x/a", 80), allow("y/b", "x/a", 80), allow("y/c", "x/a", 81),
				deny("x/b", "x/a", 80), deny("z/a", "x/a", 80), deny(external, "x/a", 80),
			},
		},
		{
			name: "namespaceSelector on kubernetes.io/metadata.name (set by API server)",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "from-z", labelsSel("pod", "a"), ingress(rule{peers: peers(nsPeer(labelsSel(namespaceNameLabel, "z")))})),
			},
			checks: []chk{allow("z/a", "x/a", 80), deny("y/a", "x/a", 80)},
		},
		{
			name: "namespaceSelector matchExpressions NotIn",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "not-y", labelsSel("pod", "a"), ingress(rule{peers: peers(nsPeer(exprSel("ns", metav1.LabelSelectorOpNotIn, "y")))})),
			},
			checks: []chk{allow("x/b", "x/a", 80), allow("z/c", "x/a", 80), deny("y/c", "x/a", 80)},
		},
		{
			name: "namespaceSelector uses namespace labels",
			namespaces: func() []*corev1.Namespace {
				ns := baseNamespaces()
				ns[2].Labels["team"] = "blue"
				return ns
			}(),
			policies: []*networkingv1.NetworkPolicy{
				np("x", "blue", labelsSel("pod", "a"), ingress(rule{peers: peers(nsPeer(labelsSel("team", "blue")))})),
			},
			checks: []chk{allow("z/b", "x/a", 80), deny("y/b", "x/a", 80)},
		},
		{
			name: "empty namespaceSelector alone: every pod, but not external IPs",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "all-pods", labelsSel("pod", "a"), ingress(rule{peers: peers(nsPeer(all()))})),
			},
			checks: []chk{allow("y/a", "x/a", 80), allow("x/a", "x/a", 80), deny(external, "x/a", 80)},
		},
		{
			name: "empty podSelector peer: all pods in the policy namespace",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "same-ns", all(), ingress(rule{peers: peers(podPeer(all()))})),
			},
			checks: []chk{allow("x/b", "x/a", 80), allow("x/c", "x/c", 80), deny("y/a", "x/a", 80)},
		},
		{
			name: "namespaceSelector AND podSelector in one peer",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "and", labelsSel("pod", "a"), ingress(rule{peers: peers(nsPodPeer(labelsSel("ns", "y"), labelsSel("pod", "b")))})),
			},
			checks: []chk{allow("y/b", "x/a", 80), deny("y/a", "x/a", 80), deny("x/b", "x/a", 80), deny("z/b", "x/a", 80)},
		},
		{
			name: "namespaceSelector and podSelector as two peers (OR)",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "or", labelsSel("pod", "a"), ingress(rule{peers: peers(nsPeer(labelsSel("ns", "y")), podPeer(labelsSel("pod", "b")))})),
			},
			checks: []chk{allow("y/a", "x/a", 80), allow("y/b", "x/a", 80), allow("x/b", "x/a", 80), deny("x/c", "x/a", 80), deny("z/b", "x/a", 80)},
		},
		{
			name: "empty namespaceSelector AND podSelector: matching pods in every namespace",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "b-anywhere", labelsSel("pod", "a"), ingress(rule{peers: peers(nsPodPeer(all(), labelsSel("pod", "b")))})),
			},
			checks: []chk{allow("x/b", "x/a", 80), allow("y/b", "x/a", 80), allow("z/b", "x/a", 80), deny("z/c", "x/a", 80)},
		},
		{
			name: "ipBlock with except matches pod IPs",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "cidr", labelsSel("pod", "a"), ingress(rule{peers: peers(cidrPeer("10.0.0.0/16", "10.0.1.0/24", "10.0.2.3/32"))})),
			},
			checks: []chk{
				allow("x/b", "x/a", 80), allow("z/a", "x/a", 80), allow("x/a", "x/a", 80), allow("10.0.9.9", "x/a", 80),
				deny("y/a", "x/a", 80), deny("y/c", "x/a", 80), deny("z/c", "x/a", 80), deny(external, "x/a", 80),
			},
		},
		{
			name: "ipBlock matching outside IPs, ingress and egress",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "ext", labelsSel("pod", "a"), types(tIn, tEg),
					ingress(rule{peers: peers(cidrPeer("192.168.0.0/16"))}),
					egress(rule{peers: peers(cidrPeer("192.168.7.0/24", "192.168.7.128/25"))})),
			},
			checks: []chk{
				allow(external, "x/a", 80), deny("8.8.8.8", "x/a", 80), deny("x/b", "x/a", 80),
				allow("x/a", external, 443), deny("x/a", "192.168.7.200", 443), deny("x/a", "x/b", 80),
			},
		},
		{
			name: "non-canonical CIDR is masked",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "cidr", labelsSel("pod", "a"), ingress(rule{peers: peers(cidrPeer("10.0.1.77/24"))})),
			},
			checks: []chk{allow("y/b", "x/a", 80), deny("z/b", "x/a", 80)},
		},
		{
			name: "numeric ports and protocol (default TCP)",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "port80", labelsSel("pod", "a"), ingress(rule{ports: ports(numPort("", 80))})),
			},
			checks: []chk{allow("y/a", "x/a", 80), deny("y/a", "x/a", 81), denyP("y/a", "x/a", udp, 80), denyP("y/a", "x/a", sctp, 80)},
		},
		{
			name: "UDP port; protocol mismatch denies",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "udp81", labelsSel("pod", "a"), ingress(rule{ports: ports(numPort(udp, 81))})),
			},
			checks: []chk{allowP("y/a", "x/a", udp, 81), deny("y/a", "x/a", 81), denyP("y/a", "x/a", udp, 80)},
		},
		{
			name: "SCTP port",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "sctp", labelsSel("pod", "a"), ingress(rule{ports: ports(numPort(sctp, 80))})),
			},
			checks: []chk{allowP("y/a", "x/a", sctp, 80), deny("y/a", "x/a", 80)},
		},
		{
			name: "protocol without port: all ports of that protocol",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "udp-any", labelsSel("pod", "a"), ingress(rule{ports: ports(protoOnly(udp))})),
			},
			checks: []chk{allowP("y/a", "x/a", udp, 80), allowP("y/a", "x/a", udp, 5353), deny("y/a", "x/a", 80)},
		},
		{
			name: "endPort range",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "range", labelsSel("pod", "a"), ingress(rule{ports: ports(rangePort(tcp, 80, 81))})),
			},
			checks: []chk{deny("y/a", "x/a", 79), allow("y/a", "x/a", 80), allow("y/a", "x/a", 81), deny("y/a", "x/a", 82), denyP("y/a", "x/a", udp, 80)},
		},
		{
			name: "invalid endPort < port matches nothing",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "bad-range", labelsSel("pod", "a"), ingress(rule{ports: ports(rangePort(tcp, 81, 80))})),
			},
			checks: []chk{deny("y/a", "x/a", 80), deny("y/a", "x/a", 81)},
		},
		{
			name: "ports and peers in one rule must both match",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "both", labelsSel("pod", "a"), ingress(rule{peers: peers(nsPeer(labelsSel("ns", "y"))), ports: ports(numPort(tcp, 81))})),
			},
			checks: []chk{allow("y/a", "x/a", 81), deny("y/a", "x/a", 80), deny("z/a", "x/a", 81)},
		},
		{
			name: "two rules: union",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "rules", labelsSel("pod", "a"), ingress(
					rule{peers: peers(nsPeer(labelsSel("ns", "y"))), ports: ports(numPort(tcp, 80))},
					rule{peers: peers(nsPeer(labelsSel("ns", "z"))), ports: ports(numPort(tcp, 81))},
				)),
			},
			checks: []chk{allow("y/a", "x/a", 80), deny("y/a", "x/a", 81), allow("z/a", "x/a", 81), deny("z/a", "x/a", 80)},
		},
		{
			name: "named port on ingress resolves per destination pod",
			extraPods: []*corev1.Pod{
				// x/d serves "serve-81-tcp" on 8081 and has no UDP ports.
				mkPod("x", "d", "10.0.0.4", map[string]string{"pod": "d"}, []corev1.ContainerPort{{Name: "serve-81-tcp", ContainerPort: 8081}}),
			},
			policies: []*networkingv1.NetworkPolicy{
				np("x", "named", all(), ingress(rule{ports: ports(namedPort("", "serve-81-tcp"), namedPort(udp, "serve-80-udp"))})),
			},
			checks: []chk{
				allow("y/a", "x/a", 81), deny("y/a", "x/a", 80), allowP("y/a", "x/a", udp, 80), denyP("y/a", "x/a", udp, 81),
				allow("y/a", "10.0.0.4", 8081), deny("y/a", "10.0.0.4", 81), denyP("y/a", "10.0.0.4", udp, 80),
			},
		},
		{
			name: "named port with wrong protocol does not match",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "named", labelsSel("pod", "a"), ingress(rule{ports: ports(namedPort(udp, "serve-80-tcp"))})),
			},
			checks: []chk{deny("y/a", "x/a", 80), denyP("y/a", "x/a", udp, 80)},
		},
		{
			name: "named port on egress resolves per peer pod; nothing for ipBlock or external",
			extraPods: []*corev1.Pod{
				mkPod("y", "d", "10.0.1.4", map[string]string{"pod": "d"}, []corev1.ContainerPort{{Name: "serve-80-tcp", ContainerPort: 8080}}),
			},
			policies: []*networkingv1.NetworkPolicy{
				np("x", "named-eg", labelsSel("pod", "a"), types(tEg), egress(
					rule{peers: peers(nsPeer(labelsSel("ns", "y"))), ports: ports(namedPort(tcp, "serve-80-tcp"))},
					rule{peers: peers(cidrPeer("10.0.2.0/24"), cidrPeer("192.168.0.0/16")), ports: ports(namedPort(tcp, "serve-80-tcp"))},
				)),
			},
			checks: []chk{
				allow("x/a", "y/b", 80), deny("x/a", "y/b", 81), allow("x/a", "10.0.1.4", 8080), deny("x/a", "10.0.1.4", 80),
				deny("x/a", "z/b", 80), deny("x/a", external, 80),
			},
		},
		{
			name: "named port in egress rule without peers resolves against the destination pod",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "named-eg", labelsSel("pod", "a"), types(tEg), egress(rule{ports: ports(namedPort(tcp, "serve-81-tcp"))})),
			},
			checks: []chk{allow("x/a", "z/b", 81), deny("x/a", "z/b", 80), deny("x/a", external, 81)},
		},
		{
			name: "multiple policies add up (union of allows)",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "p1", labelsSel("pod", "a"), ingress(rule{peers: peers(podPeer(labelsSel("pod", "b")))})),
				np("x", "p2", all(), ingress(rule{peers: peers(nsPeer(labelsSel("ns", "y")))})),
			},
			checks: []chk{
				allow("x/b", "x/a", 80), allow("y/c", "x/a", 80), deny("x/c", "x/a", 80), deny("z/a", "x/a", 80),
				deny("x/b", "x/c", 80), allow("y/b", "x/c", 80),
			},
		},
		{
			name: "egress and ingress must both allow",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "eg", labelsSel("pod", "a"), types(tEg), egress(rule{peers: peers(nsPeer(labelsSel("ns", "z")))})),
				np("y", "in", labelsSel("pod", "b"), ingress(rule{peers: peers(nsPeer(labelsSel("ns", "x")))})),
				np("z", "in", labelsSel("pod", "b"), ingress(rule{peers: peers(nsPeer(labelsSel("ns", "y")))})),
			},
			checks: []chk{deny("x/a", "y/b", 80), allow("x/b", "y/b", 80), deny("x/a", "z/b", 80), allow("x/a", "z/a", 80), allow("y/a", "z/b", 80)},
		},
		{
			name: "policy in another namespace only selects pods there",
			policies: []*networkingv1.NetworkPolicy{
				np("y", "deny-a", labelsSel("pod", "a"), types(tIn, tEg)),
			},
			checks: []chk{allow("x/b", "x/a", 80), allow("x/a", "z/a", 80), deny("x/b", "y/a", 80), deny("y/a", "x/a", 80), allow("x/b", "y/b", 80)},
		},
		{
			name: "self traffic follows the rules",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "self", labelsSel("pod", "a"), ingress(rule{peers: peers(podPeer(labelsSel("pod", "a")))})),
				np("x", "nob", labelsSel("pod", "b"), ingress(rule{peers: peers(podPeer(labelsSel("pod", "c")))})),
			},
			checks: []chk{allow("x/a", "x/a", 80), deny("x/b", "x/b", 80), allow("x/c", "x/b", 80)},
		},
		{
			name: "pods without IP, terminal and host-network pods are ignored",
			extraPods: []*corev1.Pod{
				mkPod("x", "noip", "", map[string]string{"pod": "a"}, nil),
				func() *corev1.Pod {
					p := mkPod("x", "done", "10.0.0.9", map[string]string{"pod": "b"}, nil)
					p.Status.Phase = corev1.PodSucceeded
					return p
				}(),
				func() *corev1.Pod {
					p := mkPod("x", "failed", "10.0.0.10", map[string]string{"pod": "b"}, nil)
					p.Status.Phase = corev1.PodFailed
					return p
				}(),
				func() *corev1.Pod {
					p := mkPod("x", "host", "172.18.0.2", map[string]string{"pod": "b"}, nil)
					p.Spec.HostNetwork = true
					return p
				}(),
			},
			policies: []*networkingv1.NetworkPolicy{
				np("x", "deny-egress", all(), types(tEg)),
				np("x", "from-b", labelsSel("pod", "a"), ingress(rule{peers: peers(podPeer(labelsSel("pod", "b")))})),
			},
			checks: []chk{
				// terminal/host pods are plain IPs: not isolated, not selected as peers
				deny("10.0.0.9", "x/a", 80), deny("10.0.0.10", "x/a", 80), deny("172.18.0.2", "x/a", 80),
				allow("10.0.0.9", "y/a", 80), allow("172.18.0.2", "y/a", 80),
			},
		},
		{
			name: "dual-stack pod: IPv6 ipBlock and pod selectors cover both families",
			extraPods: []*corev1.Pod{
				func() *corev1.Pod {
					p := mkPod("z", "v6", "10.0.2.9", map[string]string{"pod": "v6"}, servePorts())
					p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: "fd00::9"})
					return p
				}(),
				func() *corev1.Pod {
					p := mkPod("y", "v6", "10.0.1.9", map[string]string{"pod": "v6"}, servePorts())
					p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: "fd00::1:9"})
					return p
				}(),
			},
			policies: []*networkingv1.NetworkPolicy{
				np("z", "v6", labelsSel("pod", "v6"), ingress(rule{peers: peers(cidrPeer("fd00::1:0/112"), nsPeer(labelsSel("ns", "x")))})),
			},
			checks: []chk{
				allow("fd00::1:9", "fd00::9", 80), allow("10.0.0.1", "10.0.2.9", 80), deny("10.0.1.9", "10.0.2.9", 80),
				deny("fd00::2:1", "fd00::9", 80), allow("::ffff:10.0.0.1", "10.0.2.9", 80),
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ns := c.namespaces
			if ns == nil {
				ns = baseNamespaces()
			}
			m := Compile(c.policies, append(basePods(), c.extraPods...), ns)
			for _, k := range c.checks {
				v := m.Evaluate(addr(t, k.from), addr(t, k.to), k.proto, k.port)
				if v.Allowed != k.want {
					t.Errorf("%s -> %s %s/%d: allowed=%v, want %v\n%s", k.from, k.to, k.proto, k.port, v.Allowed, k.want, v.Explain())
				}
			}
		})
	}
}

func TestVerdictDetails(t *testing.T) {
	pols := []*networkingv1.NetworkPolicy{
		np("x", "deny", all(), types(tIn, tEg)),
		np("x", "a-in", labelsSel("pod", "a"), ingress(
			rule{peers: peers(podPeer(labelsSel("pod", "z")))},
			rule{peers: peers(nsPeer(labelsSel("ns", "y")), cidrPeer("10.0.1.0/24")), ports: ports(numPort(tcp, 81), rangePort(tcp, 80, 90))},
		)),
		np("x", "b-out", labelsSel("pod", "b"), types(tEg), egress(rule{})),
		np("y", "other", all(), types(tIn)),
	}
	m := Compile(pols, basePods(), baseNamespaces())

	v := m.Evaluate(addr(t, "y/b"), addr(t, "x/a"), tcp, 81)
	if !v.Allowed {
		t.Fatalf("want allowed:\n%s", v.Explain())
	}
	if v.Egress.Pod == nil || *v.Egress.Pod != (PodRef{"y", "b"}) || v.Egress.Isolated || !v.Egress.Allowed {
		t.Errorf("egress verdict: %+v", v.Egress)
	}
	wantBy := []RuleMatch{
		{PolicyRef{"x", "a-in"}, 1, 0, 0}, {PolicyRef{"x", "a-in"}, 1, 0, 1},
		{PolicyRef{"x", "a-in"}, 1, 1, 0}, {PolicyRef{"x", "a-in"}, 1, 1, 1},
	}
	if !reflect.DeepEqual(v.Ingress.AllowedBy, wantBy) {
		t.Errorf("ingress allowed by %v, want %v", v.Ingress.AllowedBy, wantBy)
	}
	wantIso := []PolicyRef{{"x", "a-in"}, {"x", "deny"}}
	if !reflect.DeepEqual(v.Ingress.IsolatedBy, wantIso) {
		t.Errorf("ingress isolated by %v, want %v", v.Ingress.IsolatedBy, wantIso)
	}
	ex := v.Explain()
	for _, s := range []string{"ALLOW", "allowed by x/a-in spec.ingress[1]: from[0], ports[1]", "Egress: allow", "not isolated"} {
		if !strings.Contains(ex, s) {
			t.Errorf("explain lacks %q:\n%s", s, ex)
		}
	}

	// Denied at egress (x/a isolated by x/deny only), ingress at y/c isolated by y/other.
	v = m.Evaluate(addr(t, "x/a"), addr(t, "y/c"), udp, 80)
	if v.Allowed || v.Egress.Allowed || v.Ingress.Allowed {
		t.Fatalf("want deny both ways:\n%s", v.Explain())
	}
	if !reflect.DeepEqual(v.Egress.IsolatedBy, []PolicyRef{{"x", "deny"}}) || !reflect.DeepEqual(v.Ingress.IsolatedBy, []PolicyRef{{"y", "other"}}) {
		t.Errorf("isolated by: egress %v ingress %v", v.Egress.IsolatedBy, v.Ingress.IsolatedBy)
	}
	ex = v.Explain()
	for _, s := range []string{"DENY", "Egress: deny", "Ingress: deny", "x/deny", "y/other: no ingress rules"} {
		if !strings.Contains(ex, s) {
			t.Errorf("explain lacks %q:\n%s", s, ex)
		}
	}

	// A denied flow says how close each rule of each isolating policy came.
	v = m.Evaluate(addr(t, "y/b"), addr(t, "x/a"), udp, 80)
	if v.Ingress.Allowed {
		t.Fatalf("want ingress denied:\n%s", v.Explain())
	}
	wantChecked := []RuleCheck{{PolicyRef{"x", "a-in"}, 0, false, true, false}, {PolicyRef{"x", "a-in"}, 1, true, false, false}}
	if !reflect.DeepEqual(v.Ingress.Checked, wantChecked) {
		t.Errorf("checked %+v, want %+v", v.Ingress.Checked, wantChecked)
	}
	ex = v.Explain()
	for _, s := range []string{"x/a-in spec.ingress[0]: from does not match, ports match", "x/a-in spec.ingress[1]: from matches, ports do not match UDP/80"} {
		if !strings.Contains(ex, s) {
			t.Errorf("explain lacks %q:\n%s", s, ex)
		}
	}

	// All-peers/all-ports rule reports -1 / "any".
	v = m.Evaluate(addr(t, "x/b"), addr(t, external), tcp, 443)
	if !v.Allowed || !reflect.DeepEqual(v.Egress.AllowedBy, []RuleMatch{{PolicyRef{"x", "b-out"}, 0, -1, -1}}) {
		t.Fatalf("egress from x/b: %+v", v.Egress)
	}
	if v.Ingress.Pod != nil || !strings.Contains(v.Explain(), "x/b-out spec.egress[0]: no to (any peer), no ports (any port)") || !strings.Contains(v.Explain(), "not a pod") {
		t.Errorf("explain:\n%s", v.Explain())
	}
}

func TestCompiledModel(t *testing.T) {
	pols := []*networkingv1.NetworkPolicy{
		np("x", "b", labelsSel("pod", "a"), types(tEg), egress(rule{
			peers: peers(nsPodPeer(labelsSel("ns", "y"), exprSel("pod", metav1.LabelSelectorOpIn, "a", "c")), cidrPeer("10.0.0.0/8", "10.0.0.0/24")),
			ports: ports(namedPort("", "serve-81-udp"), rangePort(udp, 1000, 2000)),
		})),
		np("x", "a", all()),
	}
	m := Compile(pols, basePods(), baseNamespaces())
	if len(m.Policies) != 2 || m.Policies[0].Ref.Name != "a" || m.Policies[1].Ref.Name != "b" {
		t.Fatalf("policies not sorted: %+v", m.Policies)
	}
	a := m.Pod(PodRef{"x", "a"})
	if a == nil || m.PodByIP(addr(t, "x/a")) != a || len(a.IngressPolicies) != 1 || len(a.EgressPolicies) != 1 {
		t.Fatalf("x/a: %+v", a)
	}
	p := m.Policies[1]
	if p.Ingress || !p.Egress || len(p.Selected) != 1 || len(p.EgressRules) != 1 {
		t.Fatalf("policy b: %+v", p)
	}
	r := p.EgressRules[0]
	if got := r.Peers[0].IPs(); len(got) != 2 || got[0].String() != "10.0.1.1" || got[1].String() != "10.0.1.3" {
		t.Errorf("peer 0 IPs %v", got)
	}
	if b := r.Peers[1].IPBlock; b == nil || b.CIDR.String() != "10.0.0.0/8" || len(b.Except) != 1 {
		t.Errorf("peer 1 %+v", r.Peers[1])
	}
	named := r.Ports[0]
	if named.Protocol != tcp || named.Name != "serve-81-udp" {
		t.Errorf("named %+v", named)
	}
	if _, _, ok := named.Resolve(m.Pod(PodRef{"y", "a"})); ok {
		t.Errorf("TCP named port resolved against a UDP container port")
	}
	if lo, hi, ok := r.Ports[1].Resolve(nil); !ok || lo != 1000 || hi != 2000 || r.Ports[1].Protocol != udp {
		t.Errorf("range %+v", r.Ports[1])
	}
}
