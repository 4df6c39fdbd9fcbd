package main

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/podnet/podnet/internal/proxy"
)

// benchNode is the node the Proxier runs for; generated endpoints live on node-2 … node-101.
const benchNode = "node-1"

func ptr[T any](v T) *T { return &v }

// genService is Service i of a generated cluster as the API server would hold it: the same
// Service genPort describes (one TCP port, ClusterIP svcBase+i).
func genService(ns, name string, cip netip.Addr) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:            corev1.ServiceTypeClusterIP,
			ClusterIP:       cip.String(),
			Ports:           []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
			Selector:        map[string]string{"app": name},
			SessionAffinity: corev1.ServiceAffinityNone,
		},
	}
}

// genSlice is the EndpointSlice of Service i: three ready endpoints (pod IPs podIP(3i…3i+2)) on
// other nodes, port http 8080.
func genSlice(ns, name string, i int) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-x",
			Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{{Name: ptr("http"), Protocol: ptr(corev1.ProtocolTCP),
			Port: ptr(int32(backendPort))}},
	}
	for k := 0; k < 3; k++ {
		j := 3*i + k
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{podIP(j).String()},
			NodeName:  ptr(fmt.Sprintf("node-%d", j%100+2)),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(true), Serving: ptr(true),
				Terminating: ptr(false)},
		})
	}
	return s
}

func genName(i int) string { return fmt.Sprintf("svc-%05d", i) }

// extraName is the i-th Service added by the incremental test (ClusterIP extraBase+i).
func extraName(i int) string { return fmt.Sprintf("svc-extra-%03d", i) }

// newIndexers makes the Service and EndpointSlice stores a Proxier lists from, as the agent's
// informers do (slices indexed by Service), holding n generated Services.
func newIndexers(n int) (svcs, slices cache.Indexer, err error) {
	svcs = cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	slices = cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{proxy.SliceServiceIndex: proxy.SliceServiceIndexFunc})
	for i := 0; i < n; i++ {
		if err := svcs.Add(genService("bench", genName(i), addrAdd(svcBase, i))); err != nil {
			return nil, nil, err
		}
		if err := slices.Add(genSlice("bench", genName(i), i)); err != nil {
			return nil, nil, err
		}
	}
	return svcs, slices, nil
}
