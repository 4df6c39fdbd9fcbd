package proxy

import (
	"context"
	"fmt"
	"math/rand"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// TestPartialSync: after random Service and endpoint changes applied one Service at a time, the
// kernel's table (read back by a fresh Kernel) is exactly what a full render of the cluster gives,
// and each partial sync changed elements only.
func TestPartialSync(t *testing.T) {
	needRoot(t)
	_, h := testNetns(t, "part")
	k, err := NewKernel(int(h))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	svcs := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	slices := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{SliceServiceIndex: SliceServiceIndexFunc})
	p := New(Config{Node: "n1", ClusterCIDR: clusterCIDR, Kernel: k,
		Services: corelisters.NewServiceLister(svcs), Slices: discoverylisters.NewEndpointSliceLister(slices), SliceIndex: slices})
	rng := rand.New(rand.NewSource(1))
	mk := func(i int) (*corev1.Service, *discoveryv1.EndpointSlice) {
		name := fmt.Sprintf("s%d", i)
		s := svc("ns", name, fmt.Sprintf("10.96.1.%d", i), []corev1.ServicePort{tcp("a", 80), udp("b", 53)}, func(s *corev1.Service) {
			switch rng.Intn(4) {
			case 0:
				s.Spec.Type = corev1.ServiceTypeNodePort
				s.Spec.Ports[0].NodePort = int32(30000 + i)
			case 1:
				s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			case 2:
				s.Spec.Type = corev1.ServiceTypeLoadBalancer
				s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
				s.Spec.Ports[0].NodePort = int32(31000 + i)
				s.Spec.HealthCheckNodePort = int32(32000 + i)
				s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: fmt.Sprintf("172.31.0.%d", i)}}
			}
		})
		var eps []ep
		for j := 0; j < rng.Intn(5); j++ {
			eps = append(eps, ep{ip: fmt.Sprintf("10.244.%d.%d", 1+rng.Intn(3), 2+rng.Intn(200)), node: fmt.Sprintf("n%d", 1+rng.Intn(3)), terminating: rng.Intn(6) == 0})
		}
		sl := slice("ns", name, "a", corev1.ProtocolTCP, 8080, eps...)
		sl.Ports = append(sl.Ports, discoveryv1.EndpointPort{Name: ptr("b"), Protocol: ptr(corev1.ProtocolUDP), Port: ptr(int32(5353))})
		return s, sl
	}
	for i := 1; i <= 40; i++ {
		s, sl := mk(i)
		svcs.Add(s)
		slices.Add(sl)
	}
	if _, err := p.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 60; round++ {
		i := 1 + rng.Intn(45)
		name := fmt.Sprintf("s%d", i)
		switch rng.Intn(3) {
		case 0: // delete
			if o, ok, _ := svcs.GetByKey("ns/" + name); ok {
				svcs.Delete(o)
			}
		default: // create or replace Service and endpoints
			s, sl := mk(i)
			svcs.Update(s)
			slices.Update(sl)
		}
		p.ServiceChanged("ns", name)
		res, err := p.Sync(context.Background())
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if res.Full || res.Apply.ChainsRewritten > 0 {
			t.Fatalf("round %d: not an element-only partial sync: %+v", round, res)
		}
	}
	// what the kernel has == a full render of the same cluster
	var all []*corev1.Service
	for _, o := range svcs.List() {
		all = append(all, o.(*corev1.Service))
	}
	var sls []*discoveryv1.EndpointSlice
	for _, o := range slices.List() {
		sls = append(sls, o.(*discoveryv1.EndpointSlice))
	}
	want := Render(BuildSnapshot(all, sls, "n1"), Options{ClusterCIDR: clusterCIDR})
	k2, err := NewKernel(int(h))
	if err != nil {
		t.Fatal(err)
	}
	defer k2.Close()
	st, err := k2.Apply(want)
	if err != nil {
		t.Fatal(err)
	}
	if st.Changed() {
		t.Fatalf("the partially synced table differs from a full render: %+v", st)
	}
}
