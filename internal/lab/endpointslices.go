package lab

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	listersv1 "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// EndpointSlice bookkeeping, as kube-controller-manager's EndpointSlice controller does it.
const (
	// EndpointSliceControllerName is the managed-by label value of the slices the lab keeps.
	EndpointSliceControllerName = "endpointslice-controller.k8s.io"
	// MaxEndpointsPerSlice is kube-controller-manager's default --max-endpoints-per-slice.
	MaxEndpointsPerSlice = 100
)

// endpointGroup is the endpoints of one Service that share one resolved port list.
type endpointGroup struct {
	key       string
	ports     []discoveryv1.EndpointPort
	endpoints []discoveryv1.Endpoint // sorted by address
}

// selectsPods: the EndpointSlice controller keeps slices for this Service.
func selectsPods(svc *corev1.Service) bool {
	return svc.Spec.Type != corev1.ServiceTypeExternalName && len(svc.Spec.Selector) > 0
}

// podInEndpoints mirrors kube's ShouldPodBeInEndpoints with terminating pods included: a pod
// that has an IP and has not finished.
func podInEndpoints(p *corev1.Pod) bool {
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return false
	}
	return p.Status.PodIP != ""
}

// findPort resolves a Service port's targetPort for one pod (kube's podutil.FindPort): a number
// is itself, a name is looked up among the pod's container ports of the same protocol.
func findPort(pod *corev1.Pod, sp *corev1.ServicePort) (int32, bool) {
	if sp.TargetPort.Type == intstr.Int {
		if sp.TargetPort.IntVal == 0 {
			return sp.Port, true
		}
		return sp.TargetPort.IntVal, true
	}
	proto := sp.Protocol
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	for _, c := range pod.Spec.Containers {
		for _, cp := range c.Ports {
			cproto := cp.Protocol
			if cproto == "" {
				cproto = corev1.ProtocolTCP
			}
			if cp.Name == sp.TargetPort.StrVal && cproto == proto {
				return cp.ContainerPort, true
			}
		}
	}
	return 0, false
}

// endpointPorts is the port list of one pod's endpoint; a port whose targetPort the pod does not
// have is left out.
func endpointPorts(svc *corev1.Service, pod *corev1.Pod) []discoveryv1.EndpointPort {
	out := []discoveryv1.EndpointPort{}
	for i := range svc.Spec.Ports {
		sp := &svc.Spec.Ports[i]
		n, ok := findPort(pod, sp)
		if !ok {
			continue
		}
		name, proto := sp.Name, sp.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		out = append(out, discoveryv1.EndpointPort{Name: &name, Protocol: &proto, Port: &n, AppProtocol: sp.AppProtocol})
	}
	return out
}

func portsKey(ports []discoveryv1.EndpointPort) string {
	var b strings.Builder
	for _, p := range ports {
		var name, proto, app string
		var n int32
		if p.Name != nil {
			name = *p.Name
		}
		if p.Protocol != nil {
			proto = string(*p.Protocol)
		}
		if p.Port != nil {
			n = *p.Port
		}
		if p.AppProtocol != nil {
			app = *p.AppProtocol
		}
		fmt.Fprintf(&b, "%s/%s/%d/%s;", name, proto, n, app)
	}
	return b.String()
}

// podEndpoint is one pod as an endpoint of svc (kube's podToEndpoint).
func podEndpoint(svc *corev1.Service, pod *corev1.Pod, zone string) discoveryv1.Endpoint {
	serving := svc.Spec.PublishNotReadyAddresses || podReady(pod)
	terminating := pod.DeletionTimestamp != nil
	ready := svc.Spec.PublishNotReadyAddresses || (serving && !terminating)
	ep := discoveryv1.Endpoint{
		Addresses:  []string{pod.Status.PodIP},
		Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &terminating},
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
	}
	if pod.Spec.NodeName != "" {
		node := pod.Spec.NodeName
		ep.NodeName = &node
	}
	if zone != "" {
		ep.Zone = &zone
	}
	if pod.Spec.Hostname != "" && pod.Spec.Subdomain == svc.Name && pod.Namespace == svc.Namespace {
		h := pod.Spec.Hostname
		ep.Hostname = &h
	}
	return ep
}

// endpointGroups computes a Service's endpoints from the pods of its namespace, grouped by
// resolved port list. zones maps node names to their topology zone (may be nil).
func endpointGroups(svc *corev1.Service, pods []*corev1.Pod, zones map[string]string) []endpointGroup {
	if !selectsPods(svc) {
		return nil
	}
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	byKey := map[string]*endpointGroup{}
	for _, p := range pods {
		if p.Namespace != svc.Namespace || !sel.Matches(labels.Set(p.Labels)) || !podInEndpoints(p) {
			continue
		}
		ports := endpointPorts(svc, p)
		k := portsKey(ports)
		g := byKey[k]
		if g == nil {
			g = &endpointGroup{key: k, ports: ports}
			byKey[k] = g
		}
		g.endpoints = append(g.endpoints, podEndpoint(svc, p, zones[p.Spec.NodeName]))
	}
	out := make([]endpointGroup, 0, len(byKey))
	for _, g := range byKey {
		sortEndpoints(g.endpoints)
		out = append(out, *g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

func addrLess(a, b string) bool {
	pa, ea := netip.ParseAddr(a)
	pb, eb := netip.ParseAddr(b)
	if ea != nil || eb != nil {
		return a < b
	}
	return pa.Less(pb)
}

func sortEndpoints(eps []discoveryv1.Endpoint) {
	sort.Slice(eps, func(i, j int) bool { return addrLess(epAddr(eps[i]), epAddr(eps[j])) })
}

func epAddr(ep discoveryv1.Endpoint) string {
	if len(ep.Addresses) == 0 {
		return ""
	}
	return ep.Addresses[0]
}

// sliceLabels are the labels of every slice of svc: the Service's own labels, the service-name
// and managed-by labels, and the headless label for a headless Service.
func sliceLabels(svc *corev1.Service) map[string]string {
	l := map[string]string{}
	for k, v := range svc.Labels {
		if k == discoveryv1.LabelServiceName || k == discoveryv1.LabelManagedBy || k == corev1.IsHeadlessService {
			continue
		}
		l[k] = v
	}
	if svc.Spec.ClusterIP == corev1.ClusterIPNone || svc.Spec.ClusterIP == "" {
		l[corev1.IsHeadlessService] = ""
	}
	l[discoveryv1.LabelServiceName] = svc.Name
	l[discoveryv1.LabelManagedBy] = EndpointSliceControllerName
	return l
}

// newSlice is an unnamed slice of svc (generateName "<svc>-").
func newSlice(svc *corev1.Service, ports []discoveryv1.EndpointPort, eps []discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:       svc.Namespace,
			GenerateName:    svc.Name + "-",
			Labels:          sliceLabels(svc),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(svc, corev1.SchemeGroupVersion.WithKind("Service"))},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       ports,
		Endpoints:   eps,
	}
}

// DesiredEndpointSlices is what a Service's slices hold for the given pods, before they are
// matched to the slices that exist: one slice per resolved port list and per 100 endpoints, and
// one empty slice when no pod matches. A Service without a selector (or an ExternalName one) has
// none.
func DesiredEndpointSlices(svc *corev1.Service, pods []*corev1.Pod, zones map[string]string) []*discoveryv1.EndpointSlice {
	if !selectsPods(svc) {
		return nil
	}
	groups := endpointGroups(svc, pods, zones)
	if len(groups) == 0 {
		return []*discoveryv1.EndpointSlice{newSlice(svc, []discoveryv1.EndpointPort{}, []discoveryv1.Endpoint{})}
	}
	var out []*discoveryv1.EndpointSlice
	for _, g := range groups {
		for i := 0; i < len(g.endpoints); i += MaxEndpointsPerSlice {
			out = append(out, newSlice(svc, g.ports, g.endpoints[i:min(i+MaxEndpointsPerSlice, len(g.endpoints))]))
		}
	}
	return out
}

// sliceChanges is what reconciling a Service's slices writes.
type sliceChanges struct {
	create, update, remove []*discoveryv1.EndpointSlice
}

func (c sliceChanges) empty() bool { return len(c.create)+len(c.update)+len(c.remove) == 0 }

// reconcileSlices matches the desired endpoints to the slices that exist, as kube's reconciler
// does: an endpoint stays in the slice that has it, new endpoints fill slices with room before new
// slices are made, slices left empty go (one empty slice stays when the Service has no
// endpoints), and only slices whose content changes are written.
func reconcileSlices(svc *corev1.Service, groups []endpointGroup, existing []*discoveryv1.EndpointSlice) sliceChanges {
	var ch sliceChanges
	existing = append([]*discoveryv1.EndpointSlice(nil), existing...)
	sort.Slice(existing, func(i, j int) bool { return existing[i].Name < existing[j].Name })
	write := func(cur, want *discoveryv1.EndpointSlice) {
		switch {
		case cur == nil:
			ch.create = append(ch.create, want)
		case !sliceSame(cur, want):
			u := cur.DeepCopy()
			u.Labels, u.OwnerReferences, u.Ports, u.Endpoints = want.Labels, want.OwnerReferences, want.Ports, want.Endpoints
			ch.update = append(ch.update, u)
		}
	}
	if len(groups) == 0 {
		// No endpoints: one empty slice, the first that exists if there is one.
		var keep *discoveryv1.EndpointSlice
		for _, s := range existing {
			if keep == nil && s.AddressType == discoveryv1.AddressTypeIPv4 && ownedBy(s, svc) {
				keep = s
				continue
			}
			ch.remove = append(ch.remove, s)
		}
		write(keep, newSlice(svc, []discoveryv1.EndpointPort{}, []discoveryv1.Endpoint{}))
		return ch
	}
	want := map[string]map[string]discoveryv1.Endpoint{} // group key → address → endpoint
	for _, g := range groups {
		want[g.key] = map[string]discoveryv1.Endpoint{}
		for _, ep := range g.endpoints {
			want[g.key][epAddr(ep)] = ep
		}
	}
	type slot struct {
		cur   *discoveryv1.EndpointSlice
		group int // index into groups; -1: the slice's ports match no group
		eps   []discoveryv1.Endpoint
	}
	groupIndex := map[string]int{}
	for i, g := range groups {
		groupIndex[g.key] = i
	}
	var slots []*slot
	placed := map[string]bool{} // group key | address
	for _, s := range existing {
		k := portsKey(s.Ports)
		gi, ok := groupIndex[k]
		if s.AddressType != discoveryv1.AddressTypeIPv4 || !ok || !ownedBy(s, svc) {
			slots = append(slots, &slot{cur: s, group: -1})
			continue
		}
		sl := &slot{cur: s, group: gi}
		for _, ep := range s.Endpoints {
			a := epAddr(ep)
			if d, ok := want[k][a]; ok && !placed[k+"|"+a] && len(sl.eps) < MaxEndpointsPerSlice {
				sl.eps = append(sl.eps, d)
				placed[k+"|"+a] = true
			}
		}
		slots = append(slots, sl)
	}
	for gi, g := range groups {
		var rest []discoveryv1.Endpoint
		for _, ep := range g.endpoints {
			if !placed[g.key+"|"+epAddr(ep)] {
				rest = append(rest, ep)
			}
		}
		for _, sl := range slots {
			if sl.group != gi {
				continue
			}
			n := min(MaxEndpointsPerSlice-len(sl.eps), len(rest))
			if n > 0 {
				sl.eps = append(sl.eps, rest[:n]...)
				rest = rest[n:]
			}
		}
		for len(rest) > 0 {
			n := min(MaxEndpointsPerSlice, len(rest))
			slots = append(slots, &slot{group: gi, eps: rest[:n:n]})
			rest = rest[n:]
		}
	}
	for _, sl := range slots {
		if len(sl.eps) == 0 {
			if sl.cur != nil {
				ch.remove = append(ch.remove, sl.cur)
			}
			continue
		}
		eps := append([]discoveryv1.Endpoint{}, sl.eps...)
		sortEndpoints(eps)
		write(sl.cur, newSlice(svc, groups[sl.group].ports, eps))
	}
	// A slice to create and one to delete make one update, as kube's reconciler does, when the
	// one to delete is this Service's (not a namesake's that was deleted) and of the same type.
	for i := 0; i < len(ch.remove) && len(ch.create) > 0; {
		old := ch.remove[i]
		if old.AddressType != discoveryv1.AddressTypeIPv4 || !ownedBy(old, svc) {
			i++
			continue
		}
		want := ch.create[len(ch.create)-1]
		ch.create = ch.create[:len(ch.create)-1]
		u := old.DeepCopy()
		u.Labels, u.OwnerReferences, u.Ports, u.Endpoints = want.Labels, want.OwnerReferences, want.Ports, want.Endpoints
		ch.update = append(ch.update, u)
		ch.remove = append(ch.remove[:i], ch.remove[i+1:]...)
	}
	return ch
}

func ownedBy(s *discoveryv1.EndpointSlice, svc *corev1.Service) bool {
	ref := metav1.GetControllerOf(s)
	return ref != nil && ref.Kind == "Service" && ref.UID == svc.UID
}

// sliceSame compares what the controller writes.
func sliceSame(cur, want *discoveryv1.EndpointSlice) bool {
	return cur.AddressType == want.AddressType &&
		equality.Semantic.DeepEqual(cur.Labels, want.Labels) &&
		equality.Semantic.DeepEqual(cur.OwnerReferences, want.OwnerReferences) &&
		equality.Semantic.DeepEqual(cur.Ports, want.Ports) &&
		equality.Semantic.DeepEqual(cur.Endpoints, want.Endpoints)
}

// endpointSliceController keeps every selector Service's EndpointSlices, as
// kube-controller-manager's EndpointSlice controller does.
type endpointSliceController struct {
	d        *Daemon
	services listersv1.ServiceLister
	pods     listersv1.PodLister
	nodes    listersv1.NodeLister
	slices   discoverylisters.EndpointSliceLister
	queue    workqueue.TypedRateLimitingInterface[Key]
	log      *slog.Logger

	mu sync.Mutex
	// expect holds, per Service, the slices this controller wrote that its lister may not show
	// yet: name → resourceVersion written (0: deleted). A sync waits for them, so a lagging
	// lister never makes it create a slice twice.
	expect map[Key]*sliceExpectation
}

type sliceExpectation struct {
	rv    map[string]int64
	since time.Time
}

func newEndpointSliceController(d *Daemon) *endpointSliceController {
	return &endpointSliceController{d: d, log: d.log.With("component", "endpointslice-controller"),
		expect: map[Key]*sliceExpectation{},
		queue:  workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[Key]())}
}

func (c *endpointSliceController) register(f informers.SharedInformerFactory) error {
	c.services = f.Core().V1().Services().Lister()
	c.pods = f.Core().V1().Pods().Lister()
	c.nodes = f.Core().V1().Nodes().Lister()
	c.slices = f.Discovery().V1().EndpointSlices().Lister()
	svcHandler := func(o interface{}) {
		if s, ok := unwrapTombstone(o).(*corev1.Service); ok {
			c.queue.Add(keyOfService(s))
		}
	}
	if _, err := f.Core().V1().Services().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: svcHandler, UpdateFunc: func(_, o interface{}) { svcHandler(o) }, DeleteFunc: svcHandler,
	}); err != nil {
		return err
	}
	podHandler := func(objs ...interface{}) {
		for _, o := range objs {
			p, ok := unwrapTombstone(o).(*corev1.Pod)
			if !ok {
				continue
			}
			svcs, _ := c.services.Services(p.Namespace).List(labels.Everything())
			for _, s := range svcs {
				if selectsPods(s) && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(p.Labels)) {
					c.queue.Add(keyOfService(s))
				}
			}
		}
	}
	if _, err := f.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(o interface{}) { podHandler(o) }, UpdateFunc: func(old, o interface{}) { podHandler(old, o) },
		DeleteFunc: func(o interface{}) { podHandler(o) },
	}); err != nil {
		return err
	}
	sliceHandler := func(o interface{}) {
		s, ok := unwrapTombstone(o).(*discoveryv1.EndpointSlice)
		if ok && s.Labels[discoveryv1.LabelManagedBy] == EndpointSliceControllerName && s.Labels[discoveryv1.LabelServiceName] != "" {
			c.queue.Add(Key{Namespace: s.Namespace, Name: s.Labels[discoveryv1.LabelServiceName]})
		}
	}
	_, err := f.Discovery().V1().EndpointSlices().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: sliceHandler, UpdateFunc: func(_, o interface{}) { sliceHandler(o) }, DeleteFunc: sliceHandler,
	})
	return err
}

func unwrapTombstone(o interface{}) interface{} {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		return d.Obj
	}
	return o
}

func (c *endpointSliceController) run(ctx context.Context, workers int) {
	defer c.queue.ShutDown()
	for i := 0; i < workers; i++ {
		go func() {
			for {
				key, quit := c.queue.Get()
				if quit {
					return
				}
				err := c.sync(ctx, key)
				if err != nil && ctx.Err() == nil {
					c.log.Warn("sync failed", "service", key.String(), "err", err)
					c.queue.AddRateLimited(key)
				} else {
					c.queue.Forget(key)
				}
				c.queue.Done(key)
			}
		}()
	}
	<-ctx.Done()
}

// caughtUp reports whether the slice lister shows every write this controller made for key.
func (c *endpointSliceController) caughtUp(key Key) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.expect[key]
	if e == nil {
		return true
	}
	for name, rv := range e.rv {
		s, err := c.slices.EndpointSlices(key.Namespace).Get(name)
		switch {
		case rv == 0 && apierrors.IsNotFound(err), rv > 0 && err == nil && RVOf(s) >= rv:
			delete(e.rv, name)
		}
	}
	if len(e.rv) == 0 || time.Since(e.since) > 10*time.Second {
		delete(c.expect, key)
		return true
	}
	return false
}

func (c *endpointSliceController) expectWrite(key Key, name string, rv int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.expect[key]
	if e == nil {
		e = &sliceExpectation{rv: map[string]int64{}}
		c.expect[key] = e
	}
	e.rv[name] = rv
	e.since = time.Now()
}

// managedSlices lists the slices this controller keeps for the Service key.
func (c *endpointSliceController) managedSlices(key Key) ([]*discoveryv1.EndpointSlice, error) {
	return c.slices.EndpointSlices(key.Namespace).List(labels.SelectorFromSet(labels.Set{
		discoveryv1.LabelServiceName: key.Name, discoveryv1.LabelManagedBy: EndpointSliceControllerName}))
}

func (c *endpointSliceController) sync(ctx context.Context, key Key) error {
	if !c.caughtUp(key) {
		c.queue.AddAfter(key, 10*time.Millisecond)
		return nil
	}
	existing, err := c.managedSlices(key)
	if err != nil {
		return err
	}
	svc, err := c.services.Services(key.Namespace).Get(key.Name)
	if apierrors.IsNotFound(err) {
		svc, err = nil, nil
	}
	if err != nil {
		return err
	}
	var ch sliceChanges
	if svc == nil || !selectsPods(svc) {
		ch.remove = existing
	} else {
		pods, err := c.pods.Pods(key.Namespace).List(labels.SelectorFromSet(svc.Spec.Selector))
		if err != nil {
			return err
		}
		ch = reconcileSlices(svc, endpointGroups(svc, pods, c.zones()), existing)
	}
	if ch.empty() {
		return nil
	}
	api := c.d.client.DiscoveryV1().EndpointSlices(key.Namespace)
	for _, s := range ch.create {
		created, err := api.Create(ctx, s, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		c.expectWrite(key, created.Name, RVOf(created))
	}
	for _, s := range ch.update {
		updated, err := api.Update(ctx, s, metav1.UpdateOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		c.expectWrite(key, updated.Name, RVOf(updated))
	}
	for _, s := range ch.remove {
		if err := api.Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		c.expectWrite(key, s.Name, 0)
	}
	c.log.Debug("slices synced", "service", key.String(), "created", len(ch.create), "updated", len(ch.update), "deleted", len(ch.remove))
	return nil
}

// zones maps node names to their topology.kubernetes.io/zone label.
func (c *endpointSliceController) zones() map[string]string {
	nodes, _ := c.nodes.List(labels.Everything())
	z := map[string]string{}
	for _, n := range nodes {
		if v := n.Labels[corev1.LabelTopologyZone]; v != "" {
			z[n.Name] = v
		}
	}
	return z
}
