package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestServiceColumns(t *testing.T) {
	lb := func(ips ...string) corev1.LoadBalancerStatus {
		var st corev1.LoadBalancerStatus
		for _, ip := range ips {
			st.Ingress = append(st.Ingress, corev1.LoadBalancerIngress{IP: ip})
		}
		return st
	}
	cases := []struct {
		name       string
		svc        corev1.Service
		ext, ports string
	}{
		{"ClusterIP", corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP,
			Ports: []corev1.ServicePort{{Port: 80, Protocol: "TCP"}}}}, "<none>", "80/TCP"},
		{"ClusterIP with externalIPs", corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP,
			ExternalIPs: []string{"192.0.2.1", "192.0.2.2"}, Ports: []corev1.ServicePort{{Port: 80, Protocol: "TCP"}}}}, "192.0.2.1,192.0.2.2", "80/TCP"},
		{"NodePort", corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort,
			Ports: []corev1.ServicePort{{Port: 80, NodePort: 30080, Protocol: "TCP"}, {Port: 53, NodePort: 31053, Protocol: "UDP"}}}},
			"<none>", "80:30080/TCP,53:31053/UDP"},
		{"LoadBalancer pending", corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{{Port: 80, NodePort: 30080, Protocol: "TCP"}}}}, "<pending>", "80:30080/TCP"},
		{"LoadBalancer", corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ExternalIPs: []string{"192.0.2.9"},
			Ports: []corev1.ServicePort{{Port: 80, Protocol: "TCP"}}}, Status: corev1.ServiceStatus{LoadBalancer: lb("172.31.255.1")}},
			"172.31.255.1,192.0.2.9", "80/TCP"},
		{"LoadBalancer, long list cut", corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer},
			Status: corev1.ServiceStatus{LoadBalancer: lb("172.31.255.1", "172.31.255.2")}}, "172.31.255.1,...", "<none>"},
		{"ExternalName", corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"}},
			"db.example.com", "<none>"},
	}
	for _, tc := range cases {
		if got := serviceExternalIP(&tc.svc, false); got != tc.ext {
			t.Errorf("%s: EXTERNAL-IP %q, want %q", tc.name, got, tc.ext)
		}
		if got := servicePorts(&tc.svc); got != tc.ports {
			t.Errorf("%s: PORT(S) %q, want %q", tc.name, got, tc.ports)
		}
	}
	long := cases[5].svc
	if got := serviceExternalIP(&long, true); got != "172.31.255.1,172.31.255.2" {
		t.Errorf("-o wide: EXTERNAL-IP %q", got)
	}
}

func TestServiceAndSliceTables(t *testing.T) {
	svc := corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", CreationTimestamp: metav1.Now()},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ClusterIP: "10.96.1.1", Selector: map[string]string{"app": "web", "tier": "a"},
			Ports: []corev1.ServicePort{{Port: 80, NodePort: 30080, Protocol: "TCP"}}}}
	port := func(n int32) *int32 { return &n }
	slice := discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "web-abcde", Namespace: "default", CreationTimestamp: metav1.Now()},
		AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{{Port: port(8080)}, {Port: port(9090)}}}
	for _, ip := range []string{"10.244.1.2", "10.244.1.3", "10.244.2.2", "10.244.2.3", "10.244.2.4"} {
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}})
	}
	empty := discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "db-xyz12", Namespace: "default"}, AddressType: discoveryv1.AddressTypeIPv4}
	render := func(kind string, wide bool, objs ...any) string {
		var items []json.RawMessage
		for _, o := range objs {
			b, _ := json.Marshal(o)
			items = append(items, b)
		}
		raw, _ := json.Marshal(map[string]any{"items": items})
		var out bytes.Buffer
		if err := printTable(&out, kind, raw, wide, false); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	got := render("Service", true, svc)
	for _, want := range []string{"NAME   TYPE       CLUSTER-IP   EXTERNAL-IP   PORT(S)        AGE   SELECTOR",
		"web    NodePort   10.96.1.1    <none>        80:30080/TCP   0s    app=web,tier=a"} {
		if !strings.Contains(got, want) {
			t.Errorf("get services -o wide:\n%s\nwant a line %q", got, want)
		}
	}
	got = render("EndpointSlice", false, slice, empty)
	for _, want := range []string{"NAME        ADDRESSTYPE   PORTS       ENDPOINTS                                      AGE",
		"web-abcde   IPv4          8080,9090   10.244.1.2,10.244.1.3,10.244.2.2 + 2 more...",
		"db-xyz12    IPv4          <unset>     <unset>"} {
		if !strings.Contains(got, want) {
			t.Errorf("get endpointslices:\n%s\nwant a line containing %q", got, want)
		}
	}
}
