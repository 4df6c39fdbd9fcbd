package dns

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// dump renders every name of a snapshot with its records, for comparing indexes.
func dump(ix *Index) string {
	s := ix.snap.Load()
	var lines []string
	for _, sh := range s.shards {
		for name, n := range sh {
			if len(n.sets) == 0 {
				lines = append(lines, name+" (exists)")
			}
			for _, set := range n.sets {
				for _, rr := range set.rrs {
					lines = append(lines, rr.String())
				}
				for _, rr := range set.extra {
					lines = append(lines, "  extra of "+name+": "+rr.String())
				}
			}
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

type clusterState struct {
	services   map[string]*corev1.Service
	slices     map[string]*discoveryv1.EndpointSlice
	namespaces map[string]*corev1.Namespace
}

func stateOf(f fixture) *clusterState {
	st := &clusterState{services: map[string]*corev1.Service{}, slices: map[string]*discoveryv1.EndpointSlice{}, namespaces: map[string]*corev1.Namespace{}}
	for _, s := range f.services {
		st.services[s.Namespace+"/"+s.Name] = s
	}
	for _, s := range f.slices {
		st.slices[s.Namespace+"/"+s.Name] = s
	}
	for _, n := range f.namespaces {
		st.namespaces[n.Name] = n
	}
	return st
}

func (st *clusterState) fullIndex(t *testing.T) *Index {
	ix, err := NewIndex(Config{})
	if err != nil {
		t.Fatal(err)
	}
	var svcs []*corev1.Service
	var slices []*discoveryv1.EndpointSlice
	var nss []*corev1.Namespace
	for _, s := range st.services {
		svcs = append(svcs, s)
	}
	for _, s := range st.slices {
		slices = append(slices, s)
	}
	for _, n := range st.namespaces {
		nss = append(nss, n)
	}
	ix.Replace(svcs, slices, nil, nss)
	return ix
}

func (st *clusterState) slicesOf(ns, name string) []*discoveryv1.EndpointSlice {
	var out []*discoveryv1.EndpointSlice
	for _, s := range st.slices {
		if s.Namespace == ns && s.Labels[discoveryv1.LabelServiceName] == name {
			out = append(out, s)
		}
	}
	return out
}

// TestIncrementalUpdatesMatchFullBuild applies changes one Service at a time and checks after each
// that the index equals one built from scratch from the same objects: reference counts of empty
// non-terminals, shared PTR names and removed names all come out right.
func TestIncrementalUpdatesMatchFullBuild(t *testing.T) {
	st := stateOf(testFixture())
	ix, err := NewIndex(Config{})
	if err != nil {
		t.Fatal(err)
	}
	full := st.fullIndex(t)
	ix.Replace(nil, nil, nil, nil)
	for _, n := range st.namespaces {
		ix.SetNamespace(n.Name, true)
	}
	for _, s := range st.services {
		ix.SetService(s, st.slicesOf(s.Namespace, s.Name))
	}
	if got, want := dump(ix), dump(full); got != want {
		t.Fatalf("built one Service at a time:\n%s\n\nwant:\n%s", got, want)
	}

	setSvc := func(s *corev1.Service) {
		st.services[s.Namespace+"/"+s.Name] = s
		ix.SetService(s, st.slicesOf(s.Namespace, s.Name))
	}
	delSvc := func(ns, name string) {
		delete(st.services, ns+"/"+name)
		ix.DeleteService(ns, name)
	}
	setSlice := func(s *discoveryv1.EndpointSlice) {
		st.slices[s.Namespace+"/"+s.Name] = s
		svc := s.Labels[discoveryv1.LabelServiceName]
		if o := st.services[s.Namespace+"/"+svc]; o != nil {
			ix.SetService(o, st.slicesOf(s.Namespace, svc))
		}
	}
	delSlice := func(ns, name string) {
		s := st.slices[ns+"/"+name]
		delete(st.slices, ns+"/"+name)
		svc := s.Labels[discoveryv1.LabelServiceName]
		if o := st.services[ns+"/"+svc]; o != nil {
			ix.SetService(o, st.slicesOf(ns, svc))
		}
	}
	httpPort := []discoveryv1.EndpointPort{slicePort("http", corev1.ProtocolTCP, 8080)}
	steps := []struct {
		desc string
		do   func()
	}{
		{"delete a ClusterIP Service", func() { delSvc("testns", "svc1") }},
		{"re-add it with another IP and ports", func() {
			setSvc(clusterIPService("testns", "svc1", []string{"10.96.0.99"}, port("grpc", corev1.ProtocolTCP, 9090)))
		}},
		{"drop a slice of a headless Service", func() { delSlice("testns", "hdls-b") }},
		{"an endpoint becomes not ready", func() {
			setSlice(endpointSlice("testns", "hdls", "hdls-a", discoveryv1.AddressTypeIPv4, httpPort,
				ep{ip: "10.244.1.2", ready: yes}, ep{ip: "10.244.1.3", hostname: "web-0", ready: no}))
		}},
		{"a second headless Service selects the same pod (shared PTR)", func() {
			setSvc(headlessService("testns", "hdls2"))
			setSlice(endpointSlice("testns", "hdls2", "hdls2-a", discoveryv1.AddressTypeIPv4, httpPort, ep{ip: "10.244.1.2", ready: yes}))
		}},
		{"the first one goes", func() { delSvc("testns", "hdls") }},
		{"a Service changes from headless to ExternalName", func() { setSvc(externalNameService("testns", "hdls2", "example.org")) }},
		{"a Service in a new namespace", func() { setSvc(clusterIPService("newns", "a", []string{"10.96.5.5"})) }},
		{"its namespace object arrives", func() {
			st.namespaces["newns"] = namespace("newns")
			ix.SetNamespace("newns", true)
		}},
		{"the Service goes, the namespace stays", func() { delSvc("newns", "a") }},
		{"a namespace goes", func() {
			delete(st.namespaces, "empty")
			ix.SetNamespace("empty", false)
		}},
		{"every Service and namespace goes", func() {
			for k, s := range st.services {
				delete(st.services, k)
				ix.DeleteService(s.Namespace, s.Name)
			}
			for name := range st.namespaces {
				delete(st.namespaces, name)
				ix.SetNamespace(name, false)
			}
		}},
	}
	for _, step := range steps {
		step.do()
		if got, want := dump(ix), dump(st.fullIndex(t)); got != want {
			t.Fatalf("after %q:\n%s\n\nwant:\n%s", step.desc, got, want)
		}
	}
	if len(ix.entries) != len(st.fullIndex(t).entries) {
		t.Errorf("%d entries left, want %d", len(ix.entries), len(st.fullIndex(t).entries))
	}
	empty, _ := NewIndex(Config{})
	if ix.Names() != empty.Names() {
		t.Errorf("%d names left after removing everything, want the %d static ones", ix.Names(), empty.Names())
	}
}

// TestUpdateSharesUntouchedShards: a one-Service change copies only the shards of its names.
func TestUpdateSharesUntouchedShards(t *testing.T) {
	f := testFixture()
	for i := 0; i < 2000; i++ {
		f.services = append(f.services, clusterIPService("bulk", fmt.Sprintf("s%d", i), []string{fmt.Sprintf("10.97.%d.%d", i/250, 1+i%250)}, port("http", corev1.ProtocolTCP, 80)))
	}
	ix := newTestIndex(t, PodModeInsecure, f)
	before := ix.snap.Load()
	serial := ix.Serial()
	ix.SetService(clusterIPService("bulk", "s7", []string{"10.97.0.200"}, port("http", corev1.ProtocolTCP, 80)), nil)
	after := ix.snap.Load()
	changed := 0
	for i := range before.shards {
		if reflect.ValueOf(before.shards[i]).UnsafePointer() != reflect.ValueOf(after.shards[i]).UnsafePointer() {
			changed++
		}
	}
	// s7's name, its SRV name, the old and new PTR names (and their ancestors, unchanged).
	if changed == 0 || changed > 6 {
		t.Errorf("%d shards copied for a one-Service change", changed)
	}
	if ix.Serial() <= serial {
		t.Errorf("serial %d after %d: want it to grow", ix.Serial(), serial)
	}
	m := NewResolver(ix).Resolve(query("s7.bulk.svc.cluster.local.", 1))
	if len(m.Answer) != 1 || m.Answer[0].String() != "s7.bulk.svc.cluster.local.\t30\tIN\tA\t10.97.0.200" {
		t.Errorf("after the change: %v", m.Answer)
	}
}

func TestNewIndexDomain(t *testing.T) {
	for in, want := range map[string]string{"": "cluster.local.", "Example.ORG.": "example.org.", "k8s.internal": "k8s.internal."} {
		ix, err := NewIndex(Config{Domain: in})
		if err != nil || ix.Zone() != want {
			t.Errorf("domain %q: zone %q, %v; want %q", in, ix.Zone(), err, want)
		}
	}
	if _, err := NewIndex(Config{Domain: "bad..domain"}); err == nil {
		t.Error("bad domain: no error")
	}
	ix, _ := NewIndex(Config{Domain: "k8s.internal", TTL: 5})
	ix.Replace(nil, nil, nil, nil)
	m := NewResolver(ix).Resolve(query("dns-version.k8s.internal.", 16))
	if len(m.Answer) != 1 {
		t.Fatalf("dns-version in another domain: %v", m)
	}
	m = NewResolver(ix).Resolve(query("nope.k8s.internal.", 1))
	if soa, ok := soaOf(m); !ok || soa.Hdr.Name != "k8s.internal." || soa.Minttl != 5 || soa.Hdr.Ttl != 5 {
		t.Errorf("negative answer %v", m)
	}
	if m = NewResolver(ix).Resolve(query("svc1.testns.svc.cluster.local.", 1)); m != nil {
		t.Errorf("cluster.local is not this zone: %v", m)
	}
}

// BenchmarkSetService: one Service change with 10k Services (one namespace) loaded.
func BenchmarkSetService(b *testing.B) {
	var f fixture
	for i := 0; i < 10000; i++ {
		f.services = append(f.services, clusterIPService("bulk", fmt.Sprintf("s%d", i), []string{fmt.Sprintf("10.97.%d.%d", i/250, 1+i%250)}, port("http", corev1.ProtocolTCP, 80)))
	}
	ix, _ := NewIndex(Config{})
	start := time.Now()
	ix.Replace(f.services, nil, nil, nil)
	b.Logf("full build of 10k Services: %v, %d names", time.Since(start), ix.Names())
	svcs := []*corev1.Service{
		clusterIPService("bulk", "s7", []string{"10.97.0.200"}, port("http", corev1.ProtocolTCP, 80)),
		clusterIPService("bulk", "s7", []string{"10.97.0.8"}, port("http", corev1.ProtocolTCP, 80)),
	}
	i := 0
	for b.Loop() {
		ix.SetService(svcs[i%2], nil)
		i++
	}
}
