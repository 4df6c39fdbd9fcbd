package proxy

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var clusterCIDR = netip.MustParsePrefix("10.244.0.0/16")

func ptr[T any](v T) *T { return &v }

// svc builds a Service; mutate adjusts it.
func svc(ns, name, clusterIP string, ports []corev1.ServicePort, mutate ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: clusterIP, Ports: ports,
			Selector: map[string]string{"app": name}, SessionAffinity: corev1.ServiceAffinityNone},
	}
	for _, m := range mutate {
		m(s)
	}
	return s
}

func tcp(name string, port int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: port, Protocol: corev1.ProtocolTCP}
}

func udp(name string, port int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: port, Protocol: corev1.ProtocolUDP}
}

type ep struct {
	ip, node                      string
	notReady, terminating, noServ bool
}

// slice builds one EndpointSlice of a Service with one port.
func slice(ns, svcName, portName string, proto corev1.Protocol, port int32, eps ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: svcName + "-" + portName + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: svcName}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr(portName), Protocol: ptr(proto), Port: ptr(port)}},
	}
	for _, e := range eps {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{e.ip},
			NodeName:  ptr(e.node),
			Conditions: discoveryv1.EndpointConditions{
				Ready: ptr(!e.notReady && !e.terminating), Serving: ptr(!e.noServ), Terminating: ptr(e.terminating),
			},
		})
	}
	return s
}

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
