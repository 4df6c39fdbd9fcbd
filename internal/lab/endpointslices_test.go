package lab

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

type podOpt func(*corev1.Pod)

func testPod(name, ip, node string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: types.UID("uid-" + name), Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func notReady(p *corev1.Pod) { p.Status.Conditions[0].Status = corev1.ConditionFalse }
func terminating(p *corev1.Pod) {
	now := metav1.Now()
	p.DeletionTimestamp = &now
	notReady(p)
}
func port(name string, n int32) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: name, ContainerPort: n}}
	}
}

func webSvc(mod func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web", UID: "svc-uid", Labels: map[string]string{"tier": "front"}},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, ClusterIP: "10.96.1.1",
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http")}}},
	}
	if mod != nil {
		mod(s)
	}
	return s
}

// describeSlices renders slices compactly: "ports | addr(node,r/s/t,host) ...".
func describeSlices(slices []*discoveryv1.EndpointSlice) []string {
	var out []string
	for _, s := range slices {
		var ports, eps []string
		for _, p := range s.Ports {
			ports = append(ports, fmt.Sprintf("%s/%d/%s", *p.Name, *p.Port, *p.Protocol))
		}
		for _, ep := range s.Endpoints {
			b := func(p *bool) string {
				if p != nil && *p {
					return "1"
				}
				return "0"
			}
			e := fmt.Sprintf("%s(%s,%s%s%s", ep.Addresses[0], *ep.NodeName, b(ep.Conditions.Ready), b(ep.Conditions.Serving), b(ep.Conditions.Terminating))
			if ep.Hostname != nil {
				e += "," + *ep.Hostname
			}
			eps = append(eps, e+")")
		}
		out = append(out, strings.Join(ports, ",")+" | "+strings.Join(eps, " "))
	}
	sort.Strings(out)
	return out
}

func TestDesiredEndpointSlices(t *testing.T) {
	cases := []struct {
		name string
		svc  *corev1.Service
		pods []*corev1.Pod
		want []string
	}{
		{"ready pods", webSvc(nil), []*corev1.Pod{testPod("b", "10.244.1.3", "node-2"), testPod("a", "10.244.1.20", "node-1")},
			[]string{"http/8080/TCP | 10.244.1.3(node-2,110) 10.244.1.20(node-1,110)"}},
		{"no pods: one empty slice", webSvc(nil), nil, []string{" | "}},
		{"not ready", webSvc(nil), []*corev1.Pod{testPod("a", "10.244.1.2", "node-1", notReady)},
			[]string{"http/8080/TCP | 10.244.1.2(node-1,000)"}},
		{"publishNotReadyAddresses", webSvc(func(s *corev1.Service) { s.Spec.PublishNotReadyAddresses = true }),
			[]*corev1.Pod{testPod("a", "10.244.1.2", "node-1", notReady), testPod("b", "10.244.1.3", "node-1", terminating)},
			[]string{"http/8080/TCP | 10.244.1.2(node-1,110) 10.244.1.3(node-1,111)"}},
		{"terminating", webSvc(nil), []*corev1.Pod{testPod("a", "10.244.1.2", "node-1", terminating)},
			[]string{"http/8080/TCP | 10.244.1.2(node-1,001)"}},
		{"named port resolving to different numbers", webSvc(nil),
			[]*corev1.Pod{testPod("a", "10.244.1.2", "node-1"), testPod("b", "10.244.1.3", "node-1", port("http", 9090))},
			[]string{"http/8080/TCP | 10.244.1.2(node-1,110)", "http/9090/TCP | 10.244.1.3(node-1,110)"}},
		{"named port a pod lacks", webSvc(func(s *corev1.Service) {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "metrics", Port: 9100, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("metrics")})
		}), []*corev1.Pod{testPod("a", "10.244.1.2", "node-1"), testPod("b", "10.244.1.3", "node-1", port("metrics", 9100))},
			[]string{"http/8080/TCP | 10.244.1.2(node-1,110)", "metrics/9100/TCP | 10.244.1.3(node-1,110)"}},
		{"numeric targetPort", webSvc(func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromInt32(7000) }),
			[]*corev1.Pod{testPod("a", "10.244.1.2", "node-1")}, []string{"http/7000/TCP | 10.244.1.2(node-1,110)"}},
		{"named port needs the same protocol", webSvc(func(s *corev1.Service) { s.Spec.Ports[0].Protocol = corev1.ProtocolUDP }),
			[]*corev1.Pod{testPod("a", "10.244.1.2", "node-1")}, []string{" | 10.244.1.2(node-1,110)"}},
		{"hostname and subdomain", webSvc(nil), []*corev1.Pod{
			testPod("a", "10.244.1.2", "node-1", func(p *corev1.Pod) { p.Spec.Hostname, p.Spec.Subdomain = "web-0", "web" }),
			testPod("b", "10.244.1.3", "node-1", func(p *corev1.Pod) { p.Spec.Hostname, p.Spec.Subdomain = "web-1", "other" })},
			[]string{"http/8080/TCP | 10.244.1.2(node-1,110,web-0) 10.244.1.3(node-1,110)"}},
		{"left out: no IP, finished, other labels, other namespace", webSvc(nil), []*corev1.Pod{
			testPod("noip", "", "node-1"),
			testPod("done", "10.244.1.4", "node-1", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }),
			testPod("failed", "10.244.1.5", "node-1", func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }),
			testPod("other", "10.244.1.6", "node-1", func(p *corev1.Pod) { p.Labels = map[string]string{"app": "db"} }),
			testPod("elsewhere", "10.244.1.7", "node-1", func(p *corev1.Pod) { p.Namespace = "prod" }),
			testPod("ok", "10.244.1.8", "node-1"),
		}, []string{"http/8080/TCP | 10.244.1.8(node-1,110)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := describeSlices(DesiredEndpointSlices(tc.svc, tc.pods, nil))
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func TestEndpointSliceMeta(t *testing.T) {
	s := webSvc(nil)
	got := DesiredEndpointSlices(s, []*corev1.Pod{testPod("a", "10.244.1.2", "node-1")}, map[string]string{"node-1": "zone-a"})
	if len(got) != 1 {
		t.Fatalf("%d slices", len(got))
	}
	sl := got[0]
	if sl.GenerateName != "web-" || sl.Namespace != "default" || sl.AddressType != discoveryv1.AddressTypeIPv4 {
		t.Errorf("meta %+v", sl.ObjectMeta)
	}
	if sl.Labels[discoveryv1.LabelServiceName] != "web" || sl.Labels[discoveryv1.LabelManagedBy] != "endpointslice-controller.k8s.io" ||
		sl.Labels["tier"] != "front" {
		t.Errorf("labels %v", sl.Labels)
	}
	if _, ok := sl.Labels[corev1.IsHeadlessService]; ok {
		t.Errorf("headless label on a ClusterIP Service's slice")
	}
	ref := sl.OwnerReferences[0]
	if ref.Kind != "Service" || ref.Name != "web" || ref.UID != "svc-uid" || ref.Controller == nil || !*ref.Controller {
		t.Errorf("ownerReference %+v", ref)
	}
	ep := sl.Endpoints[0]
	if ep.TargetRef == nil || ep.TargetRef.Kind != "Pod" || ep.TargetRef.Name != "a" || ep.TargetRef.UID != "uid-a" ||
		ep.TargetRef.Namespace != "default" || ep.Zone == nil || *ep.Zone != "zone-a" {
		t.Errorf("endpoint %+v", ep)
	}
	h := DesiredEndpointSlices(webSvc(func(s *corev1.Service) { s.Spec.ClusterIP = "None" }), nil, nil)
	if _, ok := h[0].Labels[corev1.IsHeadlessService]; !ok {
		t.Errorf("no headless label on a headless Service's slice: %v", h[0].Labels)
	}
	if DesiredEndpointSlices(webSvc(func(s *corev1.Service) { s.Spec.Selector = nil }), nil, nil) != nil {
		t.Errorf("a Service without a selector gets slices")
	}
	if DesiredEndpointSlices(webSvc(func(s *corev1.Service) {
		s.Spec.Type, s.Spec.ExternalName = corev1.ServiceTypeExternalName, "example.com"
	}), []*corev1.Pod{testPod("a", "10.244.1.2", "node-1")}, nil) != nil {
		t.Errorf("an ExternalName Service gets slices")
	}
}

func manyPods(n int, from int) []*corev1.Pod {
	var out []*corev1.Pod
	for i := from; i < from+n; i++ {
		out = append(out, testPod(fmt.Sprintf("p%d", i), fmt.Sprintf("10.244.%d.%d", i/250, i%250+2), "node-1"))
	}
	return out
}

// named gives created slices names, as the store would.
func named(ch sliceChanges, existing []*discoveryv1.EndpointSlice) []*discoveryv1.EndpointSlice {
	byName := map[string]*discoveryv1.EndpointSlice{}
	for _, s := range existing {
		byName[s.Name] = s
	}
	for _, s := range ch.update {
		byName[s.Name] = s
	}
	for _, s := range ch.remove {
		delete(byName, s.Name)
	}
	for i, s := range ch.create {
		s = s.DeepCopy()
		s.Name = fmt.Sprintf("%s%d-%d", s.GenerateName, len(byName), i)
		byName[s.Name] = s
	}
	var out []*discoveryv1.EndpointSlice
	for _, s := range byName {
		out = append(out, s)
	}
	return out
}

func TestReconcileSlices(t *testing.T) {
	s := webSvc(nil)
	// 250 endpoints: three slices of at most 100.
	pods := manyPods(250, 0)
	ch := reconcileSlices(s, endpointGroups(s, pods, nil), nil)
	if len(ch.create) != 3 || len(ch.update)+len(ch.remove) != 0 {
		t.Fatalf("first sync: %d/%d/%d", len(ch.create), len(ch.update), len(ch.remove))
	}
	slices := named(ch, nil)
	// Nothing changed: nothing written.
	if ch := reconcileSlices(s, endpointGroups(s, pods, nil), slices); !ch.empty() {
		t.Fatalf("a second sync writes: %d/%d/%d", len(ch.create), len(ch.update), len(ch.remove))
	}
	// One pod more: it fills the slice with room; the full ones are not touched.
	pods = append(pods, manyPods(1, 250)...)
	ch = reconcileSlices(s, endpointGroups(s, pods, nil), slices)
	if len(ch.create) != 0 || len(ch.update) != 1 || len(ch.remove) != 0 || len(ch.update[0].Endpoints) != 51 {
		t.Fatalf("scale up by one: %d/%d/%d", len(ch.create), len(ch.update), len(ch.remove))
	}
	slices = named(ch, slices)
	// One pod becomes not ready: only its slice is written, in place.
	notReady(pods[3])
	ch = reconcileSlices(s, endpointGroups(s, pods, nil), slices)
	if len(ch.create)+len(ch.remove) != 0 || len(ch.update) != 1 {
		t.Fatalf("readiness change: %d/%d/%d", len(ch.create), len(ch.update), len(ch.remove))
	}
	slices = named(ch, slices)
	// Down to 10 pods: the slices that end empty go.
	ch = reconcileSlices(s, endpointGroups(s, pods[:10], nil), slices)
	slices = named(ch, slices)
	total := 0
	for _, sl := range slices {
		total += len(sl.Endpoints)
	}
	if len(slices) != 1 || total != 10 {
		t.Fatalf("scale down: %d slices, %d endpoints", len(slices), total)
	}
	// No pods: one empty slice stays (the same object).
	keep := slices[0].Name
	ch = reconcileSlices(s, nil, slices)
	slices = named(ch, slices)
	if len(slices) != 1 || slices[0].Name != keep || len(slices[0].Endpoints) != 0 || len(slices[0].Ports) != 0 {
		t.Fatalf("no pods: %v", describeSlices(slices))
	}
	// Pods again: the empty slice is reused.
	ch = reconcileSlices(s, endpointGroups(s, pods[:2], nil), slices)
	if len(ch.create) != 0 || len(ch.update) != 1 {
		t.Fatalf("pods again: %d/%d/%d", len(ch.create), len(ch.update), len(ch.remove))
	}
	// The Service's labels change: every slice is updated.
	slices = named(ch, slices)
	s2 := s.DeepCopy()
	s2.Labels["tier"] = "back"
	ch = reconcileSlices(s2, endpointGroups(s2, pods[:2], nil), slices)
	if len(ch.update) != 1 || ch.update[0].Labels["tier"] != "back" {
		t.Fatalf("label change: %d updates", len(ch.update))
	}
	// A port change rewrites the slice in place with the new ports.
	s3 := webSvc(func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromInt32(9000) })
	ch = reconcileSlices(s3, endpointGroups(s3, pods[:2], nil), slices)
	if len(ch.create)+len(ch.remove) != 0 || len(ch.update) != 1 || *ch.update[0].Ports[0].Port != 9000 {
		t.Fatalf("port change: %d/%d/%d", len(ch.create), len(ch.update), len(ch.remove))
	}
	// A slice of a deleted namesake Service (another UID) is not reused.
	slices = named(ch, slices)
	s4 := s3.DeepCopy()
	s4.UID = "new-uid"
	ch = reconcileSlices(s4, endpointGroups(s4, pods[:2], nil), slices)
	if len(ch.create) != 1 || len(ch.remove) != 1 || len(ch.update) != 0 {
		t.Fatalf("namesake: %d/%d/%d", len(ch.create), len(ch.update), len(ch.remove))
	}
}
