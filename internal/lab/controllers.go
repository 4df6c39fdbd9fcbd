package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/informers"
	appslisters "k8s.io/client-go/listers/apps/v1"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// controllers does what kube-scheduler and the Deployment controller would: place pods on nodes
// and keep each Deployment's pods at its replica count.
type controllers struct {
	d           *Daemon
	pods        listersv1.PodLister
	nodes       listersv1.NodeLister
	deployments appslisters.DeploymentLister
	queue       workqueue.TypedRateLimitingInterface[string] // "pod/ns/name" or "deploy/ns/name"
	assumed     map[string]string                            // pod UID → node, bound but maybe not yet in the lister
	created     map[string]time.Time                         // pods a Deployment created, until the lister shows them
	log         *slog.Logger
	sts         *statefulSetController
}

func newControllers(d *Daemon) *controllers {
	return &controllers{d: d, assumed: map[string]string{}, created: map[string]time.Time{}, log: d.log.With("component", "controllers"),
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())}
}

func (c *controllers) register(f informers.SharedInformerFactory) error {
	c.pods = f.Core().V1().Pods().Lister()
	c.nodes = f.Core().V1().Nodes().Lister()
	c.deployments = f.Apps().V1().Deployments().Lister()
	c.sts = newStatefulSetController(c.d)
	if err := c.sts.register(f); err != nil {
		return err
	}
	podHandler := func(o interface{}) {
		if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
			o = d.Obj
		}
		p, ok := o.(*corev1.Pod)
		if !ok {
			return
		}
		if p.Spec.NodeName == "" {
			c.queue.Add("pod/" + p.Namespace + "/" + p.Name)
		}
		if ref := metav1.GetControllerOf(p); ref != nil && ref.Kind == "Deployment" {
			c.queue.Add("deploy/" + p.Namespace + "/" + ref.Name)
		}
	}
	if _, err := f.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: podHandler, UpdateFunc: func(_, o interface{}) { podHandler(o) }, DeleteFunc: podHandler,
	}); err != nil {
		return err
	}
	depHandler := func(o interface{}) {
		if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
			o = d.Obj
		}
		if dep, ok := o.(*appsv1.Deployment); ok {
			c.queue.Add("deploy/" + dep.Namespace + "/" + dep.Name)
		}
	}
	_, err := f.Apps().V1().Deployments().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: depHandler, UpdateFunc: func(_, o interface{}) { depHandler(o) }, DeleteFunc: depHandler,
	})
	return err
}

func (c *controllers) run(ctx context.Context) {
	defer c.queue.ShutDown()
	go c.sts.run(ctx)
	go func() {
		for {
			key, quit := c.queue.Get()
			if quit {
				return
			}
			var err error
			kind, rest, _ := strings.Cut(key, "/")
			ns, name, _ := strings.Cut(rest, "/")
			switch kind {
			case "pod":
				err = c.schedule(ctx, ns, name)
			case "deploy":
				err = c.syncDeployment(ctx, ns, name)
			}
			if err != nil && ctx.Err() == nil {
				c.log.Warn("sync failed", "key", key, "err", err)
				c.queue.AddRateLimited(key)
			} else {
				c.queue.Forget(key)
			}
			c.queue.Done(key)
		}
	}()
	<-ctx.Done()
}

// schedule binds an unscheduled pod to the Ready node with the fewest pods (lowest name on ties).
func (c *controllers) schedule(ctx context.Context, ns, name string) error {
	pod, err := c.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil || pod.Spec.NodeName != "" || pod.DeletionTimestamp != nil {
		return err
	}
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return err
	}
	// Spread like kube-scheduler's default: fewest pods of the same owner first, then fewest pods.
	count, siblings := map[string]int{}, map[string]int{}
	owner := metav1.GetControllerOf(pod)
	all, _ := c.pods.List(labels.Everything())
	for _, p := range all {
		node := p.Spec.NodeName
		if node == "" {
			node = c.assumed[string(p.UID)]
		} else {
			delete(c.assumed, string(p.UID))
		}
		if node != "" && p.DeletionTimestamp == nil {
			count[node]++
			if ref := metav1.GetControllerOf(p); owner != nil && ref != nil && ref.UID == owner.UID {
				siblings[node]++
			}
		}
	}
	var best string
	sort.Slice(nodes, func(i, j int) bool { return nodeIndex(nodes[i].Name) < nodeIndex(nodes[j].Name) })
	for _, n := range nodes {
		if !nodeReady(n) || !matchesNodeSelector(pod, n) {
			continue
		}
		if best == "" || siblings[n.Name] < siblings[best] || (siblings[n.Name] == siblings[best] && count[n.Name] < count[best]) {
			best = n.Name
		}
	}
	if best == "" {
		return fmt.Errorf("no ready node fits pod %s/%s", ns, name)
	}
	cur, err := c.d.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if cur.Spec.NodeName != "" {
		return nil
	}
	cur.Spec.NodeName = best
	if _, err = c.d.client.CoreV1().Pods(ns).Update(ctx, cur, metav1.UpdateOptions{}); err == nil {
		c.assumed[string(cur.UID)] = best
	}
	return err
}

func nodeIndex(name string) int {
	var i int
	fmt.Sscanf(name, "node-%d", &i)
	return i
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func matchesNodeSelector(p *corev1.Pod, n *corev1.Node) bool {
	for k, v := range p.Spec.NodeSelector {
		if n.Labels[k] != v {
			return false
		}
	}
	return true
}

// templateHash names a pod template, like the pod-template-hash label of ReplicaSets.
func templateHash(t *corev1.PodTemplateSpec) string {
	b, _ := json.Marshal(t)
	h := fnv.New32a()
	h.Write(b)
	return rand.SafeEncodeString(fmt.Sprint(h.Sum32()))
}

// syncDeployment keeps replicas pods of the current template: it creates missing ones, then
// deletes surplus pods and pods of an older template.
func (c *controllers) syncDeployment(ctx context.Context, ns, name string) error {
	dep, err := c.deployments.Deployments(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil // its pods are deleted with it by the API layer
	}
	if err != nil {
		return err
	}
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil {
		return err
	}
	hash := templateHash(&dep.Spec.Template)
	pods, err := c.pods.Pods(ns).List(sel)
	if err != nil {
		return err
	}
	var current, old []*corev1.Pod
	for _, p := range pods {
		ref := metav1.GetControllerOf(p)
		if ref == nil || ref.UID != dep.UID || p.DeletionTimestamp != nil {
			continue
		}
		if p.Labels[appsv1.DefaultDeploymentUniqueLabelKey] == hash {
			current = append(current, p)
		} else {
			old = append(old, p)
		}
	}
	want := 1
	if dep.Spec.Replicas != nil {
		want = int(*dep.Spec.Replicas)
	}
	// Pods created by an earlier sync that the lister does not show yet still count: without
	// this expectation a quick second sync would create them again.
	inFlight := 0
	seen := map[string]bool{}
	for _, p := range pods {
		seen[p.Namespace+"/"+p.Name] = true
	}
	for key, at := range c.created {
		switch {
		case seen[key] || time.Since(at) > 30*time.Second:
			delete(c.created, key)
		case strings.HasPrefix(key, ns+"/"+dep.Name+"-"+hash+"-"):
			inFlight++
		}
	}
	for i := len(current) + inFlight; i < want; i++ {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Namespace:    ns,
				GenerateName: fmt.Sprintf("%s-%s-", dep.Name, hash),
				Labels:       map[string]string{appsv1.DefaultDeploymentUniqueLabelKey: hash},
				Annotations:  map[string]string{},
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(dep,
					appsv1.SchemeGroupVersion.WithKind("Deployment"))},
			},
			Spec: *dep.Spec.Template.Spec.DeepCopy(),
		}
		for k, v := range dep.Spec.Template.Labels {
			p.Labels[k] = v
		}
		for k, v := range dep.Spec.Template.Annotations {
			p.Annotations[k] = v
		}
		created, err := c.d.client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		c.created[ns+"/"+created.Name] = time.Now()
	}
	sort.Slice(current, func(i, j int) bool { return current[i].Name < current[j].Name })
	surplus := old
	if len(current) > want {
		surplus = append(surplus, current[want:]...)
	}
	for _, p := range surplus {
		if err := deletePod(ctx, c.d.client, p.Namespace, p.Name); err != nil {
			return err
		}
	}
	ready := int32(0)
	for _, p := range current {
		if podReady(p) {
			ready++
		}
	}
	if dep.Status.Replicas != int32(len(current)) || dep.Status.ReadyReplicas != ready || dep.Status.ObservedGeneration != dep.Generation {
		cur := dep.DeepCopy()
		cur.Status.Replicas = int32(min(len(current), want))
		cur.Status.UpdatedReplicas = cur.Status.Replicas
		cur.Status.ReadyReplicas = ready
		cur.Status.AvailableReplicas = ready
		cur.Status.ObservedGeneration = dep.Generation
		if _, err := c.d.client.AppsV1().Deployments(ns).UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
