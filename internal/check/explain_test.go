package check

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
)

func pod(ns, name, ip string, labels map[string]string, ports ...corev1.ContainerPort) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: ports}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}}
}

func ptr[T any](v T) *T { return &v }

// The cluster: namespace x with a client, namespace y with web-1 (role=web) and web-2 (role=old),
// Service y/web (10.96.0.10:80 → 8080) over both, and y/empty without endpoints. In y, only
// role=web takes TCP 8080 from namespace x; everything else in y is denied ingress.
func cluster(t *testing.T) *Snapshot {
	t.Helper()
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	objs := []runtime.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x", Labels: map[string]string{"team": "x"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "y"}},
		pod("x", "client", "10.244.1.2", map[string]string{"app": "client"}),
		pod("y", "web-1", "10.244.2.2", map[string]string{"app": "web", "role": "web"},
			corev1.ContainerPort{Name: "http", ContainerPort: 8080}, corev1.ContainerPort{Name: "dns", ContainerPort: 53, Protocol: udp}),
		pod("y", "web-2", "10.244.2.3", map[string]string{"app": "web", "role": "old"}, corev1.ContainerPort{Name: "http", ContainerPort: 8080}),
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "y", Name: "deny"},
			Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}},
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "y", Name: "web-from-x"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "web"}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "x"}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: ptr(intstr.FromString("http"))}},
				}},
			}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "y", Name: "web"},
			Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10", Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: tcp, TargetPort: intstr.FromInt(8080)}}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "y", Name: "empty"},
			Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.11", Ports: []corev1.ServicePort{{Port: 80, Protocol: tcp}}}},
		&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "y", Name: "web-abc", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Protocol: &tcp, Port: ptr(int32(8080))}},
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{"10.244.2.3"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}},
				{Addresses: []string{"10.244.2.2"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}},
			}},
	}
	s, err := Load(context.Background(), fake.NewSimpleClientset(objs...))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestExplain(t *testing.T) {
	s := cluster(t)
	type flow struct {
		to      string
		allowed bool
		text    []string
	}
	for _, c := range []struct {
		name, from, to string
		proto          corev1.Protocol
		flows          []flow
		note           string
	}{
		{name: "pod to pod by named port's number", from: "x/client", to: "y/web-1:8080",
			flows: []flow{{"y/web-1 (10.244.2.2:8080)", true, []string{"ALLOW", "allowed by y/web-from-x spec.ingress[0]: from[0], ports[0]"}}}},
		{name: "the same pod on another port", from: "x/client", to: "y/web-1:9090",
			flows: []flow{{"y/web-1 (10.244.2.2:9090)", false, []string{"DENY", "isolated by y/deny, y/web-from-x",
				"y/deny: no ingress rules", "y/web-from-x spec.ingress[0]: from matches, ports do not match TCP/9090"}}}},
		{name: "every declared port without a port", from: "x/client", to: "y/web-1",
			flows: []flow{{"y/web-1 (10.244.2.2:8080)", true, nil}, {"y/web-1 (10.244.2.2:53)", false, []string{"UDP/53"}}}},
		{name: "declared ports of one protocol", from: "x/client", to: "y/web-1", proto: "UDP",
			flows: []flow{{"y/web-1 (10.244.2.2:53)", false, nil}}},
		{name: "through a Service: judged per endpoint after DNAT", from: "x/client", to: "10.96.0.10:80",
			flows: []flow{{"y/web-1 (10.244.2.2:8080)", true, nil},
				{"y/web-2 (10.244.2.3:8080)", false, []string{"y/deny: no ingress rules"}}}},
		{name: "from a pod in the same namespace", from: "y/web-2", to: "10.244.2.2:8080",
			flows: []flow{{"y/web-1 (10.244.2.2:8080)", false, []string{"spec.ingress[0]: from does not match, ports match"}}}},
		{name: "from outside the cluster", from: "192.0.2.1", to: "y/web-1:8080",
			flows: []flow{{"y/web-1 (10.244.2.2:8080)", false, []string{"Egress: allow (source is not a pod"}}}},
		{name: "to outside the cluster", from: "x/client", to: "192.0.2.1:443",
			flows: []flow{{"192.0.2.1:443", true, []string{"Ingress: allow (destination is not a pod"}}}},
		{name: "a Service without endpoints", from: "x/client", to: "10.96.0.11:80", note: "no ready endpoints"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := Explain(s, c.from, c.to, c.proto)
			if err != nil {
				t.Fatal(err)
			}
			out := r.Format()
			if len(r.Flows) != len(c.flows) {
				t.Fatalf("%d flows, want %d:\n%s", len(r.Flows), len(c.flows), out)
			}
			for i, f := range c.flows {
				got := r.Flows[i]
				if got.To.String() != f.to || got.Allowed != f.allowed {
					t.Errorf("flow %d: to %s allowed %v, want %s %v", i, got.To, got.Allowed, f.to, f.allowed)
				}
				for _, s := range f.text {
					if !strings.Contains(got.Text, s) {
						t.Errorf("flow %d lacks %q:\n%s", i, s, got.Text)
					}
				}
			}
			if !strings.Contains(r.Note, c.note) {
				t.Errorf("note %q lacks %q", r.Note, c.note)
			}
		})
	}
}

func TestExplainBadInput(t *testing.T) {
	s := cluster(t)
	for _, c := range []struct{ from, to, proto, want string }{
		{"x/nope", "y/web-1:80", "", "--from x/nope: no pod nope in namespace x"},
		{"x/client:80", "y/web-1:80", "", "--from x/client:80: a source has no port"},
		{"client", "y/web-1:80", "", "--from client: want NAMESPACE/POD or an IP address"},
		{"x/client", "y/web-1:0", "", `--to y/web-1:0: port "0": want 1-65535`},
		{"x/client", "y/web-1:99999", "", `port "99999"`},
		{"x/client", "192.0.2.1", "", "--to 192.0.2.1: not a pod: give the port"},
		{"x/client", "10.96.0.10", "", "is Service y/web: give the port"},
		{"x/client", "10.96.0.10:81", "", "Service y/web has no TCP port 81"},
		{"x/client", "10.96.0.10:80", "UDP", "Service y/web has no UDP port 80"},
		{"x/client", "y/web-2", "UDP", "declares no UDP container ports"},
		{"x/client", "y/web-1:80", "ICMP", `--protocol "ICMP": want TCP, UDP or SCTP`},
	} {
		_, err := Explain(s, c.from, c.to, corev1.Protocol(c.proto))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("explain %s -> %s %s: error %v, want %q", c.from, c.to, c.proto, err, c.want)
		}
	}
}
