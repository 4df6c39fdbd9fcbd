package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"

	"github.com/podnet/podnet/internal/manifest"
)

// Result reports what an apply or delete did, one kubectl-style line per object.
type Result struct {
	Lines []string `json:"lines"`
	Pods  []Key    `json:"pods,omitempty"`         // pods created or kept, to wait for
	Deps  []Key    `json:"deployments,omitempty"`  // deployments applied, to wait for
	Sets  []Key    `json:"statefulsets,omitempty"` // statefulsets applied, to wait for
	Gone  []Key    `json:"gone,omitempty"`         // pods being deleted, to wait for
	Svcs  []Key    `json:"services,omitempty"`     // services applied or deleted, to wait for
}

// namespaces lists every namespace the result touched.
func (r *Result) namespaces() []string {
	seen := map[string]bool{}
	var out []string
	for _, ks := range [][]Key{r.Pods, r.Deps, r.Sets, r.Gone, r.Svcs} {
		for _, k := range ks {
			if !seen[k.Namespace] {
				seen[k.Namespace] = true
				out = append(out, k.Namespace)
			}
		}
	}
	sort.Strings(out)
	return out
}

// decodeRequest turns a request body (YAML or JSON documents) into validated, defaulted objects.
func decodeRequest(body []byte, source string) ([]runtime.Object, error) {
	if source == "" {
		source = "request"
	}
	objs, err := manifest.Decode(body, source)
	if err != nil {
		return nil, err
	}
	for _, o := range objs {
		manifest.Default(o)
		if err := manifest.Validate(o); err != nil {
			ns, name := manifest.KeyOf(o)
			return nil, fmt.Errorf("%s %s/%s: %w", manifest.KindOf(o), ns, name, err)
		}
	}
	return objs, nil
}

// kindOrder is the order objects are created in, so that what others depend on comes first.
var kindOrder = map[string]int{"Namespace": 0, "NetworkPolicy": 1, "Service": 2, "Deployment": 3, "StatefulSet": 3, "Pod": 4}

// apply creates or updates every object, all or nothing: everything is checked before anything
// is written, including what admission allocates for Services (ClusterIPs, NodePorts).
func (d *Daemon) apply(ctx context.Context, objs []runtime.Object) (*Result, error) {
	d.applyMu.Lock()
	defer d.applyMu.Unlock()
	sort.SliceStable(objs, func(i, j int) bool { return kindOrder[manifest.KindOf(objs[i])] < kindOrder[manifest.KindOf(objs[j])] })
	newNS := map[string]bool{}
	for _, o := range objs {
		if ns, ok := o.(*corev1.Namespace); ok {
			newNS[ns.Name] = true
		}
	}
	nodes, err := d.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	nodeNames := map[string]bool{}
	for _, n := range nodes.Items {
		nodeNames[n.Name] = true
	}
	svcs, err := d.client.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	alloc := newServiceAllocator(mustCIDR(d.cfg.ServiceCIDR), d.dnsIP(), svcs.Items)
	// Checks first.
	for _, o := range objs {
		kind := manifest.KindOf(o)
		ns, name := manifest.KeyOf(o)
		if kind != "Namespace" && !newNS[ns] {
			if _, err := d.client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
				return nil, fmt.Errorf("%s %s/%s: namespace %q not found (create it first, or apply it in the same file)", kind, ns, name, ns)
			}
		}
		if p, ok := o.(*corev1.Pod); ok {
			if p.Spec.NodeName != "" && !nodeNames[p.Spec.NodeName] {
				return nil, fmt.Errorf("Pod %s/%s: spec.nodeName: node %q does not exist in lab %s (nodes are node-1 … node-%d)", ns, name, p.Spec.NodeName, d.cfg.Name, d.cfg.Nodes)
			}
			if cur, err := d.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
				if cur.DeletionTimestamp != nil {
					return nil, fmt.Errorf("Pod %s/%s is being deleted; apply again when it is gone", ns, name)
				}
				if !podSpecSame(&cur.Spec, &p.Spec) {
					return nil, fmt.Errorf("Pod %s/%s: spec: Forbidden: pod updates may not change fields other than labels and annotations; delete the pod first", ns, name)
				}
			}
		}
		if set, ok := o.(*appsv1.StatefulSet); ok {
			if cur, err := d.client.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
				if err := statefulSetUpdatable(cur, set); err != nil {
					return nil, fmt.Errorf("StatefulSet %s/%s: %w", ns, name, err)
				}
			}
		}
		if svc, ok := o.(*corev1.Service); ok {
			var cur *corev1.Service
			for i := range svcs.Items {
				if svcs.Items[i].Namespace == ns && svcs.Items[i].Name == name {
					cur = &svcs.Items[i]
				}
			}
			if err := alloc.Admit(svc, cur); err != nil {
				return nil, fmt.Errorf("Service %s/%s: %w", ns, name, err)
			}
		}
	}
	res := &Result{}
	for _, o := range objs {
		line, err := d.applyOne(ctx, o)
		if err != nil {
			ns, name := manifest.KeyOf(o)
			return res, fmt.Errorf("%s %s/%s: %w", manifest.KindOf(o), ns, name, err)
		}
		res.Lines = append(res.Lines, line)
		ns, name := manifest.KeyOf(o)
		switch o.(type) {
		case *corev1.Pod:
			res.Pods = append(res.Pods, Key{Namespace: ns, Name: name})
		case *appsv1.Deployment:
			res.Deps = append(res.Deps, Key{Namespace: ns, Name: name})
		case *appsv1.StatefulSet:
			res.Sets = append(res.Sets, Key{Namespace: ns, Name: name})
		case *corev1.Service:
			res.Svcs = append(res.Svcs, Key{Namespace: ns, Name: name})
		}
	}
	return res, nil
}

func podSpecSame(cur, want *corev1.PodSpec) bool {
	a, b := cur.DeepCopy(), want.DeepCopy()
	if b.NodeName == "" {
		b.NodeName = a.NodeName
	}
	return equality.Semantic.DeepEqual(a, b)
}

// applyOne creates the object or updates what a user may change, and says which it did.
func (d *Daemon) applyOne(ctx context.Context, o runtime.Object) (string, error) {
	c := d.client
	switch obj := o.(type) {
	case *corev1.Namespace:
		if obj.Labels == nil {
			obj.Labels = map[string]string{}
		}
		obj.Labels[corev1.LabelMetadataName] = obj.Name
		obj.Status.Phase = corev1.NamespaceActive
		cur, err := c.CoreV1().Namespaces().Get(ctx, obj.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = c.CoreV1().Namespaces().Create(ctx, obj, metav1.CreateOptions{})
			return "namespace/" + obj.Name + " created", err
		}
		if err != nil {
			return "", err
		}
		if metaSame(&cur.ObjectMeta, &obj.ObjectMeta) {
			return "namespace/" + obj.Name + " unchanged", nil
		}
		cur.Labels, cur.Annotations = obj.Labels, obj.Annotations
		_, err = c.CoreV1().Namespaces().Update(ctx, cur, metav1.UpdateOptions{})
		return "namespace/" + obj.Name + " configured", err
	case *corev1.Pod:
		cur, err := c.CoreV1().Pods(obj.Namespace).Get(ctx, obj.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			obj.Status = corev1.PodStatus{Phase: corev1.PodPending}
			_, err = c.CoreV1().Pods(obj.Namespace).Create(ctx, obj, metav1.CreateOptions{})
			return "pod/" + obj.Name + " created", err
		}
		if err != nil {
			return "", err
		}
		if metaSame(&cur.ObjectMeta, &obj.ObjectMeta) {
			return "pod/" + obj.Name + " unchanged", nil
		}
		cur.Labels, cur.Annotations = obj.Labels, obj.Annotations
		_, err = c.CoreV1().Pods(obj.Namespace).Update(ctx, cur, metav1.UpdateOptions{})
		return "pod/" + obj.Name + " configured", err
	case *appsv1.Deployment:
		cur, err := c.AppsV1().Deployments(obj.Namespace).Get(ctx, obj.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			obj.Generation = 1
			_, err = c.AppsV1().Deployments(obj.Namespace).Create(ctx, obj, metav1.CreateOptions{})
			return "deployment.apps/" + obj.Name + " created", err
		}
		if err != nil {
			return "", err
		}
		if metaSame(&cur.ObjectMeta, &obj.ObjectMeta) && equality.Semantic.DeepEqual(cur.Spec, obj.Spec) {
			return "deployment.apps/" + obj.Name + " unchanged", nil
		}
		if !equality.Semantic.DeepEqual(cur.Spec.Selector, obj.Spec.Selector) {
			return "", errors.New("spec.selector: Invalid value: field is immutable")
		}
		cur.Labels, cur.Annotations, cur.Spec = obj.Labels, obj.Annotations, obj.Spec
		cur.Generation++
		_, err = c.AppsV1().Deployments(obj.Namespace).Update(ctx, cur, metav1.UpdateOptions{})
		return "deployment.apps/" + obj.Name + " configured", err
	case *appsv1.StatefulSet:
		return applyStatefulSet(ctx, c, obj)
	case *corev1.Service:
		// Admission (apply's checks) has allocated the ClusterIP and NodePorts already; the
		// status is the load-balancer controller's.
		cur, err := c.CoreV1().Services(obj.Namespace).Get(ctx, obj.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			obj.Status = corev1.ServiceStatus{}
			_, err = c.CoreV1().Services(obj.Namespace).Create(ctx, obj, metav1.CreateOptions{})
			return "service/" + obj.Name + " created", err
		}
		if err != nil {
			return "", err
		}
		if metaSame(&cur.ObjectMeta, &obj.ObjectMeta) && equality.Semantic.DeepEqual(cur.Spec, obj.Spec) {
			return "service/" + obj.Name + " unchanged", nil
		}
		cur.Labels, cur.Annotations, cur.Spec = obj.Labels, obj.Annotations, obj.Spec
		_, err = c.CoreV1().Services(obj.Namespace).Update(ctx, cur, metav1.UpdateOptions{})
		return "service/" + obj.Name + " configured", err
	case *networkingv1.NetworkPolicy:
		cur, err := c.NetworkingV1().NetworkPolicies(obj.Namespace).Get(ctx, obj.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			obj.Generation = 1
			_, err = c.NetworkingV1().NetworkPolicies(obj.Namespace).Create(ctx, obj, metav1.CreateOptions{})
			return "networkpolicy.networking.k8s.io/" + obj.Name + " created", err
		}
		if err != nil {
			return "", err
		}
		if metaSame(&cur.ObjectMeta, &obj.ObjectMeta) && equality.Semantic.DeepEqual(cur.Spec, obj.Spec) {
			return "networkpolicy.networking.k8s.io/" + obj.Name + " unchanged", nil
		}
		cur.Labels, cur.Annotations, cur.Spec = obj.Labels, obj.Annotations, obj.Spec
		cur.Generation++
		_, err = c.NetworkingV1().NetworkPolicies(obj.Namespace).Update(ctx, cur, metav1.UpdateOptions{})
		return "networkpolicy.networking.k8s.io/" + obj.Name + " configured", err
	}
	return "", fmt.Errorf("kind %s cannot be applied", manifest.KindOf(o))
}

func metaSame(cur, want *metav1.ObjectMeta) bool {
	lc, lw := cur.Labels, want.Labels
	if lc == nil {
		lc = map[string]string{}
	}
	if lw == nil {
		lw = map[string]string{}
	}
	ac, aw := cur.Annotations, want.Annotations
	if ac == nil {
		ac = map[string]string{}
	}
	if aw == nil {
		aw = map[string]string{}
	}
	return equality.Semantic.DeepEqual(lc, lw) && equality.Semantic.DeepEqual(ac, aw)
}

// waitApplied returns when every applied pod (and every pod of every applied Deployment) is
// Running and Ready, every applied LoadBalancer Service has its address, the EndpointSlices of
// the touched namespaces list their pods as they are, and every node agent (and the LAN router)
// has programmed the cluster state that includes all of it.
func (d *Daemon) waitApplied(ctx context.Context, res *Result) error {
	for {
		target, pending, err := d.appliedState(ctx, res)
		if err != nil {
			return err
		}
		if pending == "" {
			pending, err = d.servicesState(ctx, res)
			if err != nil {
				return err
			}
		}
		if pending == "" {
			return d.waitProgrammed(ctx, max(target, d.store.MaxRV(agentResources...)))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out waiting for %s", pending)
		case <-waitTick():
		}
	}
}

// servicesState reports what applied Services still wait for: a load-balancer address, and
// EndpointSlices that reflect the Services and pods of the touched namespaces.
func (d *Daemon) servicesState(ctx context.Context, res *Result) (string, error) {
	for _, k := range res.Svcs {
		svc, err := d.client.CoreV1().Services(k.Namespace).Get(ctx, k.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return "", err
		}
		if svc.Spec.Type == corev1.ServiceTypeLoadBalancer && len(svc.Status.LoadBalancer.Ingress) == 0 {
			if d.lb != nil {
				if why := d.lb.pendingReason(k); why != "" {
					return "", fmt.Errorf("service %s/%s gets no load-balancer address: %s", k.Namespace, k.Name, why)
				}
			}
			return fmt.Sprintf("service %s/%s to get a load-balancer address", k.Namespace, k.Name), nil
		}
	}
	return d.slicesState(ctx, res.namespaces())
}

// slicesState compares, in each namespace, the EndpointSlices the controller keeps with what
// the Services and pods in the store call for, and names the first Service that differs.
func (d *Daemon) slicesState(ctx context.Context, namespaces []string) (string, error) {
	nodes, err := d.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	zones := map[string]string{}
	for _, n := range nodes.Items {
		if z := n.Labels[corev1.LabelTopologyZone]; z != "" {
			zones[n.Name] = z
		}
	}
	for _, ns := range namespaces {
		svcs, err := d.client.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return "", err
		}
		podList, err := d.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return "", err
		}
		pods := make([]*corev1.Pod, len(podList.Items))
		for i := range podList.Items {
			pods[i] = &podList.Items[i]
		}
		sliceList, err := d.client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{
			LabelSelector: discoveryv1.LabelManagedBy + "=" + EndpointSliceControllerName})
		if err != nil {
			return "", err
		}
		bySvc := map[string][]*discoveryv1.EndpointSlice{}
		for i := range sliceList.Items {
			s := &sliceList.Items[i]
			bySvc[s.Labels[discoveryv1.LabelServiceName]] = append(bySvc[s.Labels[discoveryv1.LabelServiceName]], s)
		}
		for i := range svcs.Items {
			svc := &svcs.Items[i]
			have := bySvc[svc.Name]
			delete(bySvc, svc.Name)
			if !selectsPods(svc) {
				if len(have) > 0 {
					return fmt.Sprintf("the EndpointSlices of service %s/%s to be removed", ns, svc.Name), nil
				}
				continue
			}
			if !reconcileSlices(svc, endpointGroups(svc, pods, zones), have).empty() {
				return fmt.Sprintf("the EndpointSlices of service %s/%s to list its pods", ns, svc.Name), nil
			}
		}
		for name := range bySvc {
			return fmt.Sprintf("the EndpointSlices of deleted service %s/%s to be removed", ns, name), nil
		}
	}
	return "", nil
}

// appliedState reports the newest resourceVersion among the applied pods, or what is still pending.
func (d *Daemon) appliedState(ctx context.Context, res *Result) (int64, string, error) {
	var target int64
	check := func(p *corev1.Pod) string {
		if p.Status.Phase != corev1.PodRunning || !podReady(p) {
			return fmt.Sprintf("pod %s/%s to be Running and Ready (phase %s)", p.Namespace, p.Name, p.Status.Phase)
		}
		target = max(target, RVOf(p))
		return ""
	}
	for _, k := range res.Pods {
		p, err := d.client.CoreV1().Pods(k.Namespace).Get(ctx, k.Name, metav1.GetOptions{})
		if err != nil {
			return 0, "", err
		}
		if s := check(p); s != "" {
			return 0, s, nil
		}
	}
	for _, k := range res.Deps {
		dep, err := d.client.AppsV1().Deployments(k.Namespace).Get(ctx, k.Name, metav1.GetOptions{})
		if err != nil {
			return 0, "", err
		}
		sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
		if err != nil {
			return 0, "", err
		}
		pods, err := d.client.CoreV1().Pods(k.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			return 0, "", err
		}
		hash := templateHash(&dep.Spec.Template)
		n := 0
		for i := range pods.Items {
			p := &pods.Items[i]
			if ref := metav1.GetControllerOf(p); ref == nil || ref.UID != dep.UID {
				continue
			}
			if p.DeletionTimestamp != nil || p.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != hash {
				return 0, fmt.Sprintf("old pod %s/%s of deployment %s to go", p.Namespace, p.Name, dep.Name), nil
			}
			if s := check(p); s != "" {
				return 0, s, nil
			}
			n++
		}
		if want := int(*dep.Spec.Replicas); n != want {
			return 0, fmt.Sprintf("deployment %s/%s to have %d pods (has %d)", k.Namespace, k.Name, want, n), nil
		}
	}
	for _, k := range res.Sets {
		set, err := d.client.AppsV1().StatefulSets(k.Namespace).Get(ctx, k.Name, metav1.GetOptions{})
		if err != nil {
			return 0, "", err
		}
		pods, err := d.client.CoreV1().Pods(k.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, "", err
		}
		ps := make([]*corev1.Pod, len(pods.Items))
		for i := range pods.Items {
			ps[i] = &pods.Items[i]
			if ref := metav1.GetControllerOf(ps[i]); ref != nil && ref.UID == set.UID {
				target = max(target, RVOf(ps[i]))
			}
		}
		if s := stsPending(set, ps); s != "" {
			return 0, s, nil
		}
	}
	return target, "", nil
}

// waitDeleted returns when the pods being deleted are gone, the EndpointSlices of the touched
// namespaces no longer list them (nor exist for deleted Services), and every node agent has
// programmed that.
func (d *Daemon) waitDeleted(ctx context.Context, res *Result) error {
	for _, k := range res.Gone {
		for {
			p, err := d.client.CoreV1().Pods(k.Namespace).Get(ctx, k.Name, metav1.GetOptions{})
			// A pod of the name that is not being deleted is a new one (a StatefulSet's
			// replacement): the deleted one is gone.
			if apierrors.IsNotFound(err) || (err == nil && p.DeletionTimestamp == nil) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("timed out waiting for pod %s/%s to be deleted", k.Namespace, k.Name)
			case <-waitTick():
			}
		}
	}
	for {
		pending, err := d.slicesState(ctx, res.namespaces())
		if err != nil {
			return err
		}
		if pending == "" {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out waiting for %s", pending)
		case <-waitTick():
		}
	}
	return d.waitProgrammed(ctx, d.store.MaxRV(agentResources...))
}

// kindAliases maps what users type to a kind, as kubectl does.
var kindAliases = map[string]string{
	"node": "Node", "nodes": "Node", "no": "Node",
	"pod": "Pod", "pods": "Pod", "po": "Pod",
	"service": "Service", "services": "Service", "svc": "Service",
	"endpointslice": "EndpointSlice", "endpointslices": "EndpointSlice",
	"networkpolicy": "NetworkPolicy", "networkpolicies": "NetworkPolicy", "netpol": "NetworkPolicy",
	"namespace": "Namespace", "namespaces": "Namespace", "ns": "Namespace",
	"deployment": "Deployment", "deployments": "Deployment", "deploy": "Deployment",
	"statefulset": "StatefulSet", "statefulsets": "StatefulSet", "sts": "StatefulSet",
}

// ResolveKind turns a user's word for a kind into the kind, or a clear error.
func ResolveKind(s string) (string, error) {
	if k, ok := kindAliases[strings.ToLower(s)]; ok {
		return k, nil
	}
	return "", fmt.Errorf("unknown resource type %q (known: nodes, pods, services, endpointslices, networkpolicies, namespaces, deployments, statefulsets)", s)
}

func (d *Daemon) deleteNamed(ctx context.Context, kind, ns, name string) (*Result, error) {
	k, err := ResolveKind(kind)
	if err != nil {
		return nil, err
	}
	if ns == "" {
		ns = "default"
	}
	var o runtime.Object
	meta := metav1.ObjectMeta{Namespace: ns, Name: name}
	switch k {
	case "Pod":
		o = &corev1.Pod{ObjectMeta: meta}
	case "Service":
		o = &corev1.Service{ObjectMeta: meta}
	case "Deployment":
		o = &appsv1.Deployment{ObjectMeta: meta}
	case "StatefulSet":
		o = &appsv1.StatefulSet{ObjectMeta: meta}
	case "NetworkPolicy":
		o = &networkingv1.NetworkPolicy{ObjectMeta: meta}
	case "Namespace":
		o = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	default:
		return nil, fmt.Errorf("%s objects cannot be deleted in the lab", k)
	}
	return d.deleteObjects(ctx, []runtime.Object{o})
}

// deleteObjects deletes each object (pods gracefully, Deployments and Namespaces with their
// pods); objects that do not exist are reported together at the end.
func (d *Daemon) deleteObjects(ctx context.Context, objs []runtime.Object) (*Result, error) {
	res := &Result{}
	var missing []string
	c := d.client
	for _, o := range objs {
		ns, name := manifest.KeyOf(o)
		var err error
		var label string
		switch o.(type) {
		case *corev1.Pod:
			label = "pod/" + name
			err = deletePod(ctx, c, ns, name)
			res.Gone = append(res.Gone, Key{Namespace: ns, Name: name})
		case *corev1.Service:
			label = "service/" + name
			err = c.CoreV1().Services(ns).Delete(ctx, name, metav1.DeleteOptions{})
			if err == nil {
				// What the EndpointSlice controller would do next (as garbage collection of
				// owned objects), done at once.
				deleteSlices(ctx, c, ns, discoveryv1.LabelServiceName+"="+name)
			}
			res.Svcs = append(res.Svcs, Key{Namespace: ns, Name: name})
		case *networkingv1.NetworkPolicy:
			label = "networkpolicy.networking.k8s.io/" + name
			err = c.NetworkingV1().NetworkPolicies(ns).Delete(ctx, name, metav1.DeleteOptions{})
		case *appsv1.Deployment:
			label = "deployment.apps/" + name
			var dep *appsv1.Deployment
			dep, err = c.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
			if err == nil {
				err = c.AppsV1().Deployments(ns).Delete(ctx, name, metav1.DeleteOptions{})
				pods, _ := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
				for _, p := range pods.Items {
					if ref := metav1.GetControllerOf(&p); ref != nil && ref.UID == dep.UID {
						_ = deletePod(ctx, c, ns, p.Name)
						res.Gone = append(res.Gone, Key{Namespace: ns, Name: p.Name})
					}
				}
			}
		case *appsv1.StatefulSet:
			label = "statefulset.apps/" + name
			var gone []Key
			gone, err = deleteStatefulSet(ctx, c, ns, name)
			res.Gone = append(res.Gone, gone...)
		case *corev1.Namespace:
			label = "namespace/" + name
			if name == "default" || strings.HasPrefix(name, "kube-") {
				return nil, fmt.Errorf("namespace %q is a system namespace and cannot be deleted", name)
			}
			gone, derr := d.deleteNamespaceContents(ctx, name)
			res.Gone = append(res.Gone, gone...)
			err = derr
			if err == nil {
				err = c.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
			}
		default:
			return nil, fmt.Errorf("%s objects cannot be deleted", manifest.KindOf(o))
		}
		if apierrors.IsNotFound(err) {
			missing = append(missing, fmt.Sprintf("%s not found in namespace %q", label, ns))
			continue
		}
		if err != nil {
			return res, err
		}
		res.Lines = append(res.Lines, label+" deleted")
	}
	if len(missing) > 0 {
		return res, fmt.Errorf("%s%s", prefixLines(res.Lines), strings.Join(missing, "\n"))
	}
	return res, nil
}

// deleteSlices deletes the EndpointSlices of a namespace that match a label selector.
func deleteSlices(ctx context.Context, c kubernetes.Interface, ns, selector string) {
	list, err := c.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return
	}
	for _, s := range list.Items {
		_ = c.DiscoveryV1().EndpointSlices(ns).Delete(ctx, s.Name, metav1.DeleteOptions{})
	}
}

func prefixLines(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

func (d *Daemon) deleteNamespaceContents(ctx context.Context, ns string) ([]Key, error) {
	c := d.client
	if _, err := c.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		return nil, err
	}
	var gone []Key
	deps, _ := c.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	for _, dep := range deps.Items {
		_ = c.AppsV1().Deployments(ns).Delete(ctx, dep.Name, metav1.DeleteOptions{})
	}
	sets, _ := c.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
	for _, s := range sets.Items {
		_ = c.AppsV1().StatefulSets(ns).Delete(ctx, s.Name, metav1.DeleteOptions{})
	}
	pods, _ := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	for _, p := range pods.Items {
		if err := deletePod(ctx, c, ns, p.Name); err != nil && !apierrors.IsNotFound(err) {
			return gone, err
		}
		gone = append(gone, Key{Namespace: ns, Name: p.Name})
	}
	svcs, _ := c.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	for _, s := range svcs.Items {
		_ = c.CoreV1().Services(ns).Delete(ctx, s.Name, metav1.DeleteOptions{})
	}
	deleteSlices(ctx, c, ns, "")
	pols, _ := c.NetworkingV1().NetworkPolicies(ns).List(ctx, metav1.ListOptions{})
	for _, p := range pols.Items {
		_ = c.NetworkingV1().NetworkPolicies(ns).Delete(ctx, p.Name, metav1.DeleteOptions{})
	}
	return gone, nil
}

// get returns a typed List of the objects of one kind (namespace "" = all namespaces).
func (d *Daemon) get(ctx context.Context, kind, ns, name string) (runtime.Object, error) {
	k, err := ResolveKind(kind)
	if err != nil {
		return nil, err
	}
	c := d.client
	opts := metav1.ListOptions{}
	var list runtime.Object
	switch k {
	case "Node":
		list, err = c.CoreV1().Nodes().List(ctx, opts)
	case "Namespace":
		list, err = c.CoreV1().Namespaces().List(ctx, opts)
	case "Pod":
		list, err = c.CoreV1().Pods(ns).List(ctx, opts)
	case "Service":
		list, err = c.CoreV1().Services(ns).List(ctx, opts)
	case "EndpointSlice":
		list, err = c.DiscoveryV1().EndpointSlices(ns).List(ctx, opts)
	case "NetworkPolicy":
		list, err = c.NetworkingV1().NetworkPolicies(ns).List(ctx, opts)
	case "Deployment":
		list, err = c.AppsV1().Deployments(ns).List(ctx, opts)
	case "StatefulSet":
		list, err = c.AppsV1().StatefulSets(ns).List(ctx, opts)
	}
	if err != nil {
		return nil, err
	}
	items, err := extractSorted(list)
	if err != nil {
		return nil, err
	}
	out := &metav1.List{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "List"}}
	gv := map[string]string{"Deployment": "apps/v1", "StatefulSet": "apps/v1", "EndpointSlice": "discovery.k8s.io/v1", "NetworkPolicy": "networking.k8s.io/v1"}[k]
	if gv == "" {
		gv = "v1"
	}
	for _, it := range items {
		m := it.(metav1.Object)
		if name != "" && m.GetName() != name {
			continue
		}
		it.GetObjectKind().SetGroupVersionKind(schema.FromAPIVersionAndKind(gv, k))
		b, err := json.Marshal(it)
		if err != nil {
			return nil, err
		}
		out.Items = append(out.Items, runtime.RawExtension{Raw: b})
	}
	if name != "" && len(out.Items) == 0 {
		where := ""
		if k != "Node" && k != "Namespace" {
			where = fmt.Sprintf(" in namespace %q", ns)
		}
		return nil, apierrors.NewNotFound(corev1.Resource(strings.ToLower(k)+"s"), name+where)
	}
	return out, nil
}

func extractSorted(list runtime.Object) ([]runtime.Object, error) {
	items, err := meta.ExtractList(list)
	if err != nil {
		return nil, err
	}
	sort.Slice(items, func(i, j int) bool {
		a, b := items[i].(metav1.Object), items[j].(metav1.Object)
		if a.GetNamespace() != b.GetNamespace() {
			return a.GetNamespace() < b.GetNamespace()
		}
		return lessName(a.GetName(), b.GetName())
	})
	return items, nil
}

// lessName sorts node-2 before node-10.
func lessName(a, b string) bool {
	pa, na := splitNum(a)
	pb, nb := splitNum(b)
	if pa == pb && na >= 0 && nb >= 0 {
		return na < nb
	}
	return a < b
}

func splitNum(s string) (string, int) {
	i := strings.LastIndexByte(s, '-')
	if i < 0 {
		return s, -1
	}
	n, err := strconv.Atoi(s[i+1:])
	if err != nil {
		return s, -1
	}
	return s[:i], n
}

// waitTick paces the polling loops of --wait.
func waitTick() <-chan time.Time { return time.After(50 * time.Millisecond) }
