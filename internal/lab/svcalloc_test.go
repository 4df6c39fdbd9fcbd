package lab

import (
	"net"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podnet/podnet/internal/manifest"
)

// svc builds a defaulted Service the way apply receives it.
func svc(name string, mod func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}
	if mod != nil {
		mod(s)
	}
	manifest.Default(s)
	return s
}

func nodePortSvc(name string, nodePorts ...int32) *corev1.Service {
	return svc(name, func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeNodePort
		s.Spec.Ports = nil
		for i, np := range nodePorts {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "p" + string(rune('a'+i)), Port: int32(80 + i), NodePort: np})
		}
	})
}

func TestServiceAllocation(t *testing.T) {
	cidr := mustCIDR("10.96.0.0/16")
	dns := net.ParseIP("10.96.0.10")
	existing := func() []corev1.Service {
		a := svc("taken", func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.50" })
		a.Spec.ClusterIPs = []string{"10.96.0.50"}
		b := nodePortSvc("np", 30080)
		b.Spec.ClusterIP = "10.96.1.1"
		return []corev1.Service{*a, *b}
	}
	cases := []struct {
		name    string
		svc     *corev1.Service
		cur     func([]corev1.Service) *corev1.Service
		wantErr string
		check   func(t *testing.T, s *corev1.Service)
	}{
		{name: "requested ClusterIP honoured", svc: svc("a", func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.20" }),
			check: func(t *testing.T, s *corev1.Service) {
				if s.Spec.ClusterIP != "10.96.0.20" || len(s.Spec.ClusterIPs) != 1 || s.Spec.ClusterIPs[0] != "10.96.0.20" {
					t.Errorf("clusterIP %s %v", s.Spec.ClusterIP, s.Spec.ClusterIPs)
				}
			}},
		{name: "requested DNS address honoured", svc: svc("dns", func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.10" }),
			check: func(t *testing.T, s *corev1.Service) {
				if s.Spec.ClusterIP != "10.96.0.10" {
					t.Errorf("clusterIP %s", s.Spec.ClusterIP)
				}
			}},
		{name: "taken ClusterIP", svc: svc("a", func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.50" }),
			wantErr: `spec.clusterIP: Invalid value: "10.96.0.50": provided IP is already allocated`},
		{name: "ClusterIP out of range", svc: svc("a", func(s *corev1.Service) { s.Spec.ClusterIP = "10.97.0.5" }),
			wantErr: `spec.clusterIP: Invalid value: "10.97.0.5": provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/16`},
		{name: "network address", svc: svc("a", func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.0" }),
			wantErr: `spec.clusterIP: Invalid value: "10.96.0.0": provided IP is not in the valid range`},
		{name: "broadcast address", svc: svc("a", func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.255.255" }),
			wantErr: `spec.clusterIP: Invalid value: "10.96.255.255": provided IP is not in the valid range`},
		{name: "dynamic ClusterIP: upper band, not .1 nor DNS", svc: svc("a", nil),
			check: func(t *testing.T, s *corev1.Service) {
				// 10.96.1.1 is taken by "np"; the band starts 256 addresses in.
				if s.Spec.ClusterIP != "10.96.1.2" || s.Spec.ClusterIPs[0] != "10.96.1.2" {
					t.Errorf("clusterIP %s %v", s.Spec.ClusterIP, s.Spec.ClusterIPs)
				}
			}},
		{name: "headless", svc: svc("h", func(s *corev1.Service) { s.Spec.ClusterIP = "None" }),
			check: func(t *testing.T, s *corev1.Service) {
				if s.Spec.ClusterIP != "None" || s.Spec.ClusterIPs[0] != "None" {
					t.Errorf("clusterIP %s %v", s.Spec.ClusterIP, s.Spec.ClusterIPs)
				}
			}},
		{name: "ExternalName gets none", svc: svc("x", func(s *corev1.Service) {
			s.Spec.Type, s.Spec.ExternalName, s.Spec.Selector = corev1.ServiceTypeExternalName, "example.com", nil
		}), check: func(t *testing.T, s *corev1.Service) {
			if s.Spec.ClusterIP != "" || len(s.Spec.ClusterIPs) != 0 {
				t.Errorf("clusterIP %q", s.Spec.ClusterIP)
			}
		}},
		{name: "update keeps ClusterIP", svc: svc("taken", nil),
			cur: func(e []corev1.Service) *corev1.Service { return &e[0] },
			check: func(t *testing.T, s *corev1.Service) {
				if s.Spec.ClusterIP != "10.96.0.50" || s.Spec.ClusterIPs[0] != "10.96.0.50" {
					t.Errorf("clusterIP %s", s.Spec.ClusterIP)
				}
			}},
		{name: "update may not change ClusterIP", svc: svc("taken", func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.51" }),
			cur:     func(e []corev1.Service) *corev1.Service { return &e[0] },
			wantErr: `spec.clusterIP: Invalid value: "10.96.0.51": field is immutable`},
		{name: "update restating its own ClusterIP", svc: svc("taken", func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.50" }),
			cur: func(e []corev1.Service) *corev1.Service { return &e[0] }},
		{name: "requested NodePort honoured", svc: nodePortSvc("b", 30081),
			check: func(t *testing.T, s *corev1.Service) {
				if s.Spec.Ports[0].NodePort != 30081 {
					t.Errorf("nodePort %d", s.Spec.Ports[0].NodePort)
				}
			}},
		{name: "NodePort conflict", svc: nodePortSvc("b", 30082, 30080),
			wantErr: `spec.ports[1].nodePort: Invalid value: 30080: provided port is already allocated`},
		{name: "same NodePort, other protocol", svc: svc("u", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Ports = []corev1.ServicePort{{Port: 53, Protocol: corev1.ProtocolUDP, NodePort: 30080}}
		}), check: func(t *testing.T, s *corev1.Service) {
			if s.Spec.Ports[0].NodePort != 30080 {
				t.Errorf("nodePort %d", s.Spec.Ports[0].NodePort)
			}
		}},
		{name: "dynamic NodePorts: upper band, one per port number", svc: svc("d", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Ports = []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
				{Name: "dns-tcp", Port: 53}, {Name: "http", Port: 80}}
		}), check: func(t *testing.T, s *corev1.Service) {
			p := s.Spec.Ports
			if p[0].NodePort != 30086 || p[1].NodePort != 30086 || p[2].NodePort != 30087 {
				t.Errorf("nodePorts %d %d %d", p[0].NodePort, p[1].NodePort, p[2].NodePort)
			}
		}},
		{name: "update keeps NodePorts by port name", svc: nodePortSvc("np", 0),
			cur: func(e []corev1.Service) *corev1.Service { return &e[1] },
			check: func(t *testing.T, s *corev1.Service) {
				if s.Spec.Ports[0].NodePort != 30080 || s.Spec.ClusterIP != "10.96.1.1" {
					t.Errorf("nodePort %d clusterIP %s", s.Spec.Ports[0].NodePort, s.Spec.ClusterIP)
				}
			}},
		{name: "LoadBalancer without NodePort allocation", svc: svc("lb", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Spec.AllocateLoadBalancerNodePorts = ptrTo(false)
		}), check: func(t *testing.T, s *corev1.Service) {
			if s.Spec.Ports[0].NodePort != 0 || s.Spec.HealthCheckNodePort != 0 {
				t.Errorf("nodePort %d hc %d", s.Spec.Ports[0].NodePort, s.Spec.HealthCheckNodePort)
			}
		}},
		{name: "LoadBalancer Local gets a health-check NodePort", svc: svc("lb", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}), check: func(t *testing.T, s *corev1.Service) {
			if s.Spec.Ports[0].NodePort != 30086 || s.Spec.HealthCheckNodePort != 30087 {
				t.Errorf("nodePort %d hc %d", s.Spec.Ports[0].NodePort, s.Spec.HealthCheckNodePort)
			}
		}},
		{name: "requested health-check NodePort honoured", svc: svc("lb", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			s.Spec.HealthCheckNodePort = 32000
		}), check: func(t *testing.T, s *corev1.Service) {
			if s.Spec.HealthCheckNodePort != 32000 {
				t.Errorf("hc %d", s.Spec.HealthCheckNodePort)
			}
		}},
		{name: "health-check NodePort taken", svc: svc("lb", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			s.Spec.HealthCheckNodePort = 30080
		}), wantErr: `spec.healthCheckNodePort: Invalid value: 30080: provided port is already allocated`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ex := existing()
			a := newServiceAllocator(cidr, dns, ex)
			var cur *corev1.Service
			if tc.cur != nil {
				cur = tc.cur(ex)
			}
			s := tc.svc.DeepCopy()
			err := a.Admit(s, cur)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				// Nothing changed: what the stored Services hold is still theirs.
				if a.ips[ip4ToUint(net.ParseIP("10.96.0.50"))].Name != "taken" || a.nodePorts[30080][corev1.ProtocolTCP].Name != "np" {
					t.Fatalf("a refused Service changed the allocations: %v %v", a.ips, a.nodePorts)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

// TestServiceAllocationRequest: Services of one request are admitted in turn, each against the
// ones before it.
func TestServiceAllocationRequest(t *testing.T) {
	a := newServiceAllocator(mustCIDR("10.96.0.0/16"), net.ParseIP("10.96.0.10"), nil)
	first, second := nodePortSvc("a", 0), nodePortSvc("b", 0)
	if err := a.Admit(first, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.Admit(second, nil); err != nil {
		t.Fatal(err)
	}
	if first.Spec.ClusterIP == second.Spec.ClusterIP || first.Spec.Ports[0].NodePort == second.Spec.Ports[0].NodePort {
		t.Fatalf("two Services share allocations: %s/%d and %s/%d", first.Spec.ClusterIP, first.Spec.Ports[0].NodePort,
			second.Spec.ClusterIP, second.Spec.Ports[0].NodePort)
	}
	third := nodePortSvc("c", first.Spec.Ports[0].NodePort)
	if err := a.Admit(third, nil); err == nil || !strings.Contains(err.Error(), "spec.ports[0].nodePort") {
		t.Fatalf("a NodePort taken earlier in the request: %v", err)
	}
	// Changing type to ClusterIP releases the NodePorts.
	cur := first.DeepCopy()
	upd := svc("a", nil)
	if err := a.Admit(upd, cur); err != nil || upd.Spec.Ports[0].NodePort != 0 || upd.Spec.ClusterIP != cur.Spec.ClusterIP {
		t.Fatalf("type change: %v nodePort %d clusterIP %s", err, upd.Spec.Ports[0].NodePort, upd.Spec.ClusterIP)
	}
	if err := a.Admit(nodePortSvc("d", cur.Spec.Ports[0].NodePort), nil); err != nil {
		t.Fatalf("a released NodePort: %v", err)
	}
}

// TestServiceAllocationSmallRange: a /28 service CIDR has no upper band; .1 and the DNS address
// are given only when asked for, and a full range is an error.
func TestServiceAllocationSmallRange(t *testing.T) {
	a := newServiceAllocator(mustCIDR("10.96.0.0/28"), net.ParseIP("10.96.0.10"), nil)
	var got []string
	for i := 0; ; i++ {
		s := svc("s"+string(rune('a'+i)), nil)
		if err := a.Admit(s, nil); err != nil {
			if !strings.Contains(err.Error(), "range is full") {
				t.Fatal(err)
			}
			break
		}
		got = append(got, s.Spec.ClusterIP)
	}
	want := "10.96.0.2 10.96.0.3 10.96.0.4 10.96.0.5 10.96.0.6 10.96.0.7 10.96.0.8 10.96.0.9 10.96.0.11 10.96.0.12 10.96.0.13 10.96.0.14"
	if strings.Join(got, " ") != want {
		t.Fatalf("allocated %v\nwant %s", got, want)
	}
	if err := a.Admit(svc("dns", func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.10" }), nil); err != nil {
		t.Fatalf("DNS address on request: %v", err)
	}
}
