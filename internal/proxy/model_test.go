package proxy

import (
	"net/netip"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Table tests of BuildSnapshot and of endpoint selection.

// rawSlice builds an EndpointSlice with any ports and endpoints.
func rawSlice(ns, svcName, name string, at discoveryv1.AddressType, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	labels := map[string]string{}
	if svcName != "" {
		labels[discoveryv1.LabelServiceName] = svcName
	}
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		AddressType: at, Ports: ports, Endpoints: eps,
	}
}

func slicePort(name string, proto corev1.Protocol, port int32) discoveryv1.EndpointPort {
	p := discoveryv1.EndpointPort{Name: ptr(name), Port: ptr(port)}
	if proto != "" {
		p.Protocol = ptr(proto)
	}
	return p
}

func sliceEp(node string, conds discoveryv1.EndpointConditions, addrs ...string) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{Addresses: addrs, Conditions: conds}
	if node != "" {
		e.NodeName = ptr(node)
	}
	return e
}

// modelEp is an Endpoint, briefly: address:port, node, and R(eady) S(erving) T(erminating) L(ocal).
func modelEp(ap, node, flags string) Endpoint {
	a := netip.MustParseAddrPort(ap)
	e := Endpoint{Addr: a.Addr(), Port: a.Port(), Node: node}
	for _, f := range flags {
		switch f {
		case 'R':
			e.Ready = true
		case 'S':
			e.Serving = true
		case 'T':
			e.Terminating = true
		case 'L':
			e.Local = true
		}
	}
	return e
}

func onlyPort(t *testing.T, snap Snapshot) ServicePort {
	t.Helper()
	if len(snap.Ports) != 1 {
		t.Fatalf("%d ports, want 1: %+v", len(snap.Ports), snap.Ports)
	}
	return snap.Ports[0]
}

func TestModelEndpointPorts(t *testing.T) {
	s := svc("default", "web", "10.96.0.10", []corev1.ServicePort{tcp("http", 80), udp("http", 80), tcp("", 81)})
	ok := discoveryv1.EndpointConditions{Ready: ptr(true)}
	slices := []*discoveryv1.EndpointSlice{
		rawSlice("default", "web", "web-a", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{
			slicePort("http", corev1.ProtocolTCP, 8080), slicePort("http", corev1.ProtocolUDP, 9090),
			slicePort("metrics", corev1.ProtocolTCP, 9100), slicePort("", "", 8081), // nil protocol means TCP
		}, sliceEp("n1", ok, "10.244.1.2")),
		// a slice whose port is not named like the Service's gives nothing
		rawSlice("default", "web", "web-b", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{
			slicePort("https", corev1.ProtocolTCP, 8443)}, sliceEp("n1", ok, "10.244.1.3")),
		// a slice without a port number gives nothing
		rawSlice("default", "web", "web-c", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{
			{Name: ptr("http"), Protocol: ptr(corev1.ProtocolTCP)}}, sliceEp("n1", ok, "10.244.1.4")),
	}
	snap := BuildSnapshot([]*corev1.Service{s}, slices, "n1")
	got := map[string][]Endpoint{}
	for _, p := range snap.Ports {
		got[p.Name.String()] = p.Endpoints
	}
	want := map[string][]Endpoint{
		"default/web:http/tcp": {modelEp("10.244.1.2:8080", "n1", "RSL")},
		"default/web:http/udp": {modelEp("10.244.1.2:9090", "n1", "RSL")},
		"default/web/tcp":      {modelEp("10.244.1.2:8081", "n1", "RSL")},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	// sorted by name, then protocol
	var names []string
	for _, p := range snap.Ports {
		names = append(names, p.Name.String())
	}
	if want := []string{"default/web/tcp", "default/web:http/tcp", "default/web:http/udp"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("order %v, want %v", names, want)
	}
}

// TestModelEmptyServiceProtocol: a Service port without a protocol is TCP (protoNumber says so),
// and must find its TCP endpoints. BuildSnapshot compares the raw, empty protocol with the
// slice's, so the port gets no endpoints and is rendered as a reject.
func TestModelEmptyServiceProtocol(t *testing.T) {
	s := svc("default", "web", "10.96.0.10", []corev1.ServicePort{{Name: "http", Port: 80}})
	sp := onlyPort(t, BuildSnapshot([]*corev1.Service{s},
		[]*discoveryv1.EndpointSlice{slice("default", "web", "http", corev1.ProtocolTCP, 8080, ep{ip: "10.244.1.2", node: "n1"})}, "n1"))
	if sp.Name.Protocol != ProtoTCP || len(sp.Endpoints) != 1 {
		t.Fatalf("protocol %d, endpoints %+v", sp.Name.Protocol, sp.Endpoints)
	}
}

func TestModelSlices(t *testing.T) {
	ok := discoveryv1.EndpointConditions{Ready: ptr(true)}
	notReady := discoveryv1.EndpointConditions{Ready: ptr(false)}
	port := []discoveryv1.EndpointPort{slicePort("http", corev1.ProtocolTCP, 8080)}
	cases := []struct {
		name   string
		slices []*discoveryv1.EndpointSlice
		want   []Endpoint
	}{
		{"sorted by address", []*discoveryv1.EndpointSlice{
			rawSlice("default", "web", "a", discoveryv1.AddressTypeIPv4, port,
				sliceEp("n2", ok, "10.244.2.2"), sliceEp("n1", ok, "10.244.1.10"), sliceEp("n1", ok, "10.244.1.9")),
		}, []Endpoint{modelEp("10.244.1.9:8080", "n1", "RSL"), modelEp("10.244.1.10:8080", "n1", "RSL"), modelEp("10.244.2.2:8080", "n2", "RS")}},
		{"duplicates across slices count once, the first slice by name winning", []*discoveryv1.EndpointSlice{
			rawSlice("default", "web", "b", discoveryv1.AddressTypeIPv4, port, sliceEp("n1", notReady, "10.244.1.2")),
			rawSlice("default", "web", "a", discoveryv1.AddressTypeIPv4, port, sliceEp("n1", ok, "10.244.1.2"), sliceEp("n1", ok, "10.244.1.3")),
		}, []Endpoint{modelEp("10.244.1.2:8080", "n1", "RSL"), modelEp("10.244.1.3:8080", "n1", "RSL")}},
		{"an endpoint listing two addresses gives two", []*discoveryv1.EndpointSlice{
			rawSlice("default", "web", "a", discoveryv1.AddressTypeIPv4, port, sliceEp("n1", ok, "10.244.1.2", "10.244.1.3")),
		}, []Endpoint{modelEp("10.244.1.2:8080", "n1", "RSL"), modelEp("10.244.1.3:8080", "n1", "RSL")}},
		{"IPv6 and FQDN slices and non-IPv4 addresses are ignored", []*discoveryv1.EndpointSlice{
			rawSlice("default", "web", "v6", discoveryv1.AddressTypeIPv6, port, sliceEp("n1", ok, "fd00::2")),
			rawSlice("default", "web", "fqdn", discoveryv1.AddressTypeFQDN, port, sliceEp("n1", ok, "web.example.com")),
			rawSlice("default", "web", "v4", discoveryv1.AddressTypeIPv4, port, sliceEp("n1", ok, "fd00::3", "bogus", "10.244.1.2")),
		}, []Endpoint{modelEp("10.244.1.2:8080", "n1", "RSL")}},
		{"slices of other Services, namespaces, or without the label are ignored", []*discoveryv1.EndpointSlice{
			rawSlice("default", "other", "a", discoveryv1.AddressTypeIPv4, port, sliceEp("n1", ok, "10.244.1.2")),
			rawSlice("kube-system", "web", "b", discoveryv1.AddressTypeIPv4, port, sliceEp("n1", ok, "10.244.1.3")),
			rawSlice("default", "", "c", discoveryv1.AddressTypeIPv4, port, sliceEp("n1", ok, "10.244.1.4")),
		}, nil},
		{"no node name: not local", []*discoveryv1.EndpointSlice{
			rawSlice("default", "web", "a", discoveryv1.AddressTypeIPv4, port, sliceEp("", ok, "10.244.1.2")),
		}, []Endpoint{modelEp("10.244.1.2:8080", "", "RS")}},
	}
	s := svc("default", "web", "10.96.0.10", []corev1.ServicePort{tcp("http", 80)})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sp := onlyPort(t, BuildSnapshot([]*corev1.Service{s}, c.slices, "n1"))
			if !reflect.DeepEqual(sp.Endpoints, c.want) {
				t.Fatalf("got  %+v\nwant %+v", sp.Endpoints, c.want)
			}
		})
	}
}

// TestModelConditions: per the EndpointSlice API, a nil ready means ready, a nil serving means
// the same as ready, a nil terminating means not terminating.
func TestModelConditions(t *testing.T) {
	T, F := ptr(true), ptr(false)
	cases := []struct {
		name  string
		conds discoveryv1.EndpointConditions
		flags string
	}{
		{"all nil", discoveryv1.EndpointConditions{}, "RS"},
		{"ready", discoveryv1.EndpointConditions{Ready: T}, "RS"},
		{"not ready, serving nil", discoveryv1.EndpointConditions{Ready: F}, ""},
		{"not ready, serving", discoveryv1.EndpointConditions{Ready: F, Serving: T}, "S"},
		{"ready nil, not serving", discoveryv1.EndpointConditions{Serving: F}, "R"},
		{"terminating, serving", discoveryv1.EndpointConditions{Ready: F, Serving: T, Terminating: T}, "ST"},
		{"terminating, not serving", discoveryv1.EndpointConditions{Ready: F, Serving: F, Terminating: T}, "T"},
		{"terminating, serving nil", discoveryv1.EndpointConditions{Ready: F, Terminating: T}, "T"},
		{"terminating false", discoveryv1.EndpointConditions{Ready: T, Serving: T, Terminating: F}, "RS"},
	}
	s := svc("default", "web", "10.96.0.10", []corev1.ServicePort{tcp("http", 80)})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sl := rawSlice("default", "web", "a", discoveryv1.AddressTypeIPv4,
				[]discoveryv1.EndpointPort{slicePort("http", corev1.ProtocolTCP, 8080)}, sliceEp("n2", c.conds, "10.244.2.2"))
			sp := onlyPort(t, BuildSnapshot([]*corev1.Service{s}, []*discoveryv1.EndpointSlice{sl}, "n1"))
			if want := []Endpoint{modelEp("10.244.2.2:8080", "n2", c.flags)}; !reflect.DeepEqual(sp.Endpoints, want) {
				t.Fatalf("got %+v, want %+v", sp.Endpoints, want)
			}
		})
	}
}

func TestModelServices(t *testing.T) {
	http := func() []corev1.ServicePort { return []corev1.ServicePort{tcp("http", 80)} }
	cases := []struct {
		name string
		svc  *corev1.Service
		want *ServicePort // nil: not proxied; Endpoints are not compared
	}{
		{"headless", svc("default", "s", "None", http()), nil},
		{"no ClusterIP yet", svc("default", "s", "", http()), nil},
		{"IPv6 ClusterIP", svc("default", "s", "fd00::10", http()), nil},
		{"ExternalName", svc("default", "s", "10.96.0.10", http(), func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeExternalName
		}), nil},
		{"ClusterIP", svc("default", "s", "10.96.0.10", http()),
			&ServicePort{ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 80}},
		{"a ClusterIP Service has no NodePort even if one is set", svc("default", "s", "10.96.0.10", http(), func(s *corev1.Service) {
			s.Spec.Ports[0].NodePort = 30080
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}), &ServicePort{ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 80}},
		{"NodePort, Local", svc("default", "s", "10.96.0.10", http(), func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Ports[0].NodePort = 30080
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			s.Spec.HealthCheckNodePort = 31000
		}), &ServicePort{ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 80, NodePort: 30080, ExternalLocal: true, HealthCheckPort: 31000}},
		{"LoadBalancer: ingress IPs but not ipMode Proxy, with externalIPs, sorted and unique", svc("default", "s", "10.96.0.10", http(), func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Spec.Ports[0].NodePort = 30080
			s.Spec.ExternalIPs = []string{"192.0.2.9", "198.51.100.1", "fd00::1", "junk"}
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{
				{IP: "198.51.100.1"}, {IP: "198.51.100.2", IPMode: ptr(corev1.LoadBalancerIPModeVIP)},
				{IP: "198.51.100.3", IPMode: ptr(corev1.LoadBalancerIPModeProxy)}, {Hostname: "lb.example.com"},
			}
		}), &ServicePort{ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 80, NodePort: 30080,
			ExternalIPs: []netip.Addr{netip.MustParseAddr("192.0.2.9"), netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")}}},
		{"LoadBalancer without NodePorts", svc("default", "s", "10.96.0.10", http(), func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Spec.AllocateLoadBalancerNodePorts = ptr(false)
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.1"}}
		}), &ServicePort{ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 80, ExternalIPs: []netip.Addr{netip.MustParseAddr("198.51.100.1")}}},
		{"affinity: default timeout", svc("default", "s", "10.96.0.10", http(), func(s *corev1.Service) {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		}), &ServicePort{ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 80, AffinitySeconds: 10800}},
		{"affinity: config without a timeout", svc("default", "s", "10.96.0.10", http(), func(s *corev1.Service) {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{}}
		}), &ServicePort{ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 80, AffinitySeconds: 10800}},
		{"affinity: timeout", svc("default", "s", "10.96.0.10", http(), func(s *corev1.Service) {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr(int32(60))}}
		}), &ServicePort{ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 80, AffinitySeconds: 60}},
		{"affinity None ignores its config", svc("default", "s", "10.96.0.10", http(), func(s *corev1.Service) {
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr(int32(60))}}
		}), &ServicePort{ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 80}},
		{"internalTrafficPolicy Local", svc("default", "s", "10.96.0.10", http(), func(s *corev1.Service) {
			s.Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyLocal)
		}), &ServicePort{ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 80, InternalLocal: true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			snap := BuildSnapshot([]*corev1.Service{c.svc}, nil, "n1")
			if c.want == nil {
				if len(snap.Ports) != 0 {
					t.Fatalf("proxied: %+v", snap.Ports)
				}
				return
			}
			got := onlyPort(t, snap)
			want := *c.want
			want.Name = ServicePortName{Namespace: "default", Name: "s", Port: "http", Protocol: ProtoTCP}
			got.Endpoints = nil
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestModelEndpointSelection: ready endpoints, or, when none is left, terminating ones that
// still serve; never the others. Local views apply the same rule to local endpoints alone.
func TestModelEndpointSelection(t *testing.T) {
	rdyL := modelEp("10.244.1.2:80", "n1", "RSL")
	rdyR := modelEp("10.244.2.2:80", "n2", "RS")
	termL := modelEp("10.244.1.3:80", "n1", "STL")
	termR := modelEp("10.244.2.3:80", "n2", "ST")
	goneL := modelEp("10.244.1.4:80", "n1", "TL")    // terminating, not serving
	unreadyL := modelEp("10.244.1.5:80", "n1", "L")  // not ready, not terminating
	servingL := modelEp("10.244.1.6:80", "n1", "SL") // serving but neither ready nor terminating
	cases := []struct {
		name           string
		eps            []Endpoint
		cluster, local []Endpoint
	}{
		{"ready everywhere", []Endpoint{rdyL, rdyR, termL, goneL}, []Endpoint{rdyL, rdyR}, []Endpoint{rdyL}},
		{"ready only remotely", []Endpoint{rdyR, termL, termR}, []Endpoint{rdyR}, []Endpoint{termL}},
		{"none ready", []Endpoint{termL, termR, goneL, unreadyL}, []Endpoint{termL, termR}, []Endpoint{termL}},
		{"none serving", []Endpoint{goneL, unreadyL, servingL}, nil, nil},
		{"nothing local", []Endpoint{rdyR, termR}, []Endpoint{rdyR}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, pol := range []struct{ ext, int bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
				sp := ServicePort{Endpoints: c.eps, ExternalLocal: pol.ext, InternalLocal: pol.int}
				check := func(what string, got, want []Endpoint) {
					t.Helper()
					if len(got) != len(want) || (len(want) > 0 && !reflect.DeepEqual(got, want)) {
						t.Errorf("eTP local %v iTP local %v: %s = %v, want %v", pol.ext, pol.int, what, got, want)
					}
				}
				check("ClusterEndpoints", sp.ClusterEndpoints(), c.cluster)
				check("LocalEndpoints", sp.LocalEndpoints(), c.local)
				wantInt, wantExt := c.cluster, c.cluster
				if pol.int {
					wantInt = c.local
				}
				if pol.ext {
					wantExt = c.local
				}
				check("InternalEndpoints", sp.InternalEndpoints(), wantInt)
				check("ExternalEndpoints", sp.ExternalEndpoints(), wantExt)
			}
		})
	}
}
