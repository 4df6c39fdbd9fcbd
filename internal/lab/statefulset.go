package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// statefulSetController does what kube-controller-manager's StatefulSet controller does for what
// matters to the network: pods with stable names <name>-<ordinal>, each with hostname = its name
// and subdomain = spec.serviceName (so the headless Service gives it a DNS name), created in order
// (OrderedReady) or all at once (Parallel), recreated under the same name when deleted, removed
// from the highest ordinal down when scaled in, and replaced one at a time, highest ordinal
// first, when the template changes (RollingUpdate). Volume claim templates are not acted on.
type statefulSetController struct {
	d     *Daemon
	pods  listersv1.PodLister
	sets  appslisters.StatefulSetLister
	queue workqueue.TypedRateLimitingInterface[string] // "ns/name"
	log   *slog.Logger
}

func newStatefulSetController(d *Daemon) *statefulSetController {
	return &statefulSetController{d: d, log: d.log.With("component", "statefulset-controller"),
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())}
}

func (c *statefulSetController) register(f informers.SharedInformerFactory) error {
	c.pods = f.Core().V1().Pods().Lister()
	c.sets = f.Apps().V1().StatefulSets().Lister()
	podHandler := func(o interface{}) {
		if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
			o = d.Obj
		}
		if p, ok := o.(*corev1.Pod); ok {
			if ref := metav1.GetControllerOf(p); ref != nil && ref.Kind == "StatefulSet" {
				c.queue.Add(p.Namespace + "/" + ref.Name)
			}
		}
	}
	if _, err := f.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: podHandler, UpdateFunc: func(_, o interface{}) { podHandler(o) }, DeleteFunc: podHandler,
	}); err != nil {
		return err
	}
	setHandler := func(o interface{}) {
		if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
			o = d.Obj
		}
		if s, ok := o.(*appsv1.StatefulSet); ok {
			c.queue.Add(s.Namespace + "/" + s.Name)
		}
	}
	_, err := f.Apps().V1().StatefulSets().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: setHandler, UpdateFunc: func(_, o interface{}) { setHandler(o) }, DeleteFunc: setHandler,
	})
	return err
}

func (c *statefulSetController) run(ctx context.Context) {
	defer c.queue.ShutDown()
	go func() {
		for {
			key, quit := c.queue.Get()
			if quit {
				return
			}
			ns, name, _ := strings.Cut(key, "/")
			if err := c.sync(ctx, ns, name); err != nil && ctx.Err() == nil {
				c.log.Warn("sync failed", "statefulset", key, "err", err)
				c.queue.AddRateLimited(key)
			} else {
				c.queue.Forget(key)
			}
			c.queue.Done(key)
		}
	}()
	<-ctx.Done()
}

// stsRevision names a StatefulSet's pod template, as the controller-revision-hash label does.
func stsRevision(s *appsv1.StatefulSet) string {
	return s.Name + "-" + templateHash(&s.Spec.Template)
}

// stsOrdinals is the range of ordinals a StatefulSet wants: [start, start+replicas).
func stsOrdinals(s *appsv1.StatefulSet) (start, end int) {
	if s.Spec.Ordinals != nil {
		start = int(s.Spec.Ordinals.Start)
	}
	replicas := 1
	if s.Spec.Replicas != nil {
		replicas = int(*s.Spec.Replicas)
	}
	return start, start + replicas
}

// stsPodOrdinal is the ordinal in the name of a pod of StatefulSet set, or -1.
func stsPodOrdinal(set, pod string) int {
	rest, ok := strings.CutPrefix(pod, set+"-")
	if !ok {
		return -1
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 0 || strconv.Itoa(n) != rest {
		return -1
	}
	return n
}

// stsPodName is the name of the pod with the given ordinal.
func stsPodName(s *appsv1.StatefulSet, ordinal int) string {
	return fmt.Sprintf("%s-%d", s.Name, ordinal)
}

// newStatefulSetPod is the pod of a StatefulSet for one ordinal, as kube-controller-manager makes it.
func newStatefulSetPod(s *appsv1.StatefulSet, ordinal int) *corev1.Pod {
	name := stsPodName(s, ordinal)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   s.Namespace,
			Name:        name,
			Labels:      map[string]string{},
			Annotations: map[string]string{},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(s,
				appsv1.SchemeGroupVersion.WithKind("StatefulSet"))},
		},
		Spec:   *s.Spec.Template.Spec.DeepCopy(),
		Status: corev1.PodStatus{Phase: corev1.PodPending},
	}
	for k, v := range s.Spec.Template.Labels {
		p.Labels[k] = v
	}
	for k, v := range s.Spec.Template.Annotations {
		p.Annotations[k] = v
	}
	p.Labels[appsv1.StatefulSetPodNameLabel] = name
	p.Labels[appsv1.PodIndexLabel] = strconv.Itoa(ordinal)
	p.Labels[appsv1.StatefulSetRevisionLabel] = stsRevision(s)
	p.Spec.Hostname = name
	p.Spec.Subdomain = s.Spec.ServiceName
	return p
}

// stsPods are the pods a StatefulSet owns, by ordinal; pods whose names carry no ordinal of
// the set are returned apart (they are never wanted).
func stsPods(s *appsv1.StatefulSet, all []*corev1.Pod) (byOrdinal map[int]*corev1.Pod, stray []*corev1.Pod) {
	byOrdinal = map[int]*corev1.Pod{}
	for _, p := range all {
		if ref := metav1.GetControllerOf(p); ref == nil || ref.UID != s.UID {
			continue
		}
		if o := stsPodOrdinal(s.Name, p.Name); o >= 0 {
			byOrdinal[o] = p
		} else {
			stray = append(stray, p)
		}
	}
	return byOrdinal, stray
}

func runningAndReady(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodRunning && podReady(p)
}

// stsAction is what one sync of a StatefulSet does to its pods.
type stsAction struct {
	create []int    // ordinals to create, in order
	delete []string // pods to delete, in order
}

// planStatefulSet decides, from the pods a StatefulSet owns, which pods to create and delete
// now, following the pod management policy and the update strategy.
func planStatefulSet(s *appsv1.StatefulSet, byOrdinal map[int]*corev1.Pod, stray []*corev1.Pod) stsAction {
	var act stsAction
	ordered := s.Spec.PodManagementPolicy != appsv1.ParallelPodManagement
	start, end := stsOrdinals(s)
	for _, p := range stray {
		if p.DeletionTimestamp == nil {
			act.delete = append(act.delete, p.Name)
		}
	}
	// Failed (or completed) pods are replaced under the same name: delete now, create once gone.
	for o := start; o < end; o++ {
		p := byOrdinal[o]
		if p != nil && p.DeletionTimestamp == nil && (p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded) {
			act.delete = append(act.delete, p.Name)
			if ordered {
				return act
			}
		}
	}
	// Create the missing pods, in ordinal order; OrderedReady creates one only when every pod
	// below it is Running and Ready.
	for o := start; o < end; o++ {
		p := byOrdinal[o]
		if p == nil {
			act.create = append(act.create, o)
			if ordered {
				return act
			}
			continue
		}
		if ordered && (p.DeletionTimestamp != nil || !runningAndReady(p)) {
			return act
		}
	}
	// Scale in: pods above the range (or below a raised start), highest ordinal first.
	var condemned []int
	for o := range byOrdinal {
		if o < start || o >= end {
			condemned = append(condemned, o)
		}
	}
	sort.Sort(sort.Reverse(sort.IntSlice(condemned)))
	for _, o := range condemned {
		p := byOrdinal[o]
		if p.DeletionTimestamp != nil {
			if ordered {
				return act // wait for it to go before the next
			}
			continue
		}
		act.delete = append(act.delete, p.Name)
		if ordered {
			return act
		}
	}
	if len(condemned) > 0 && ordered {
		return act
	}
	// RollingUpdate: replace one pod of an old template at a time, highest ordinal first, once
	// every pod is Running and Ready; pods below the partition keep their template.
	if s.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType {
		return act
	}
	for o := start; o < end; o++ {
		if p := byOrdinal[o]; p == nil || p.DeletionTimestamp != nil || !runningAndReady(p) {
			return act
		}
	}
	partition := 0
	if ru := s.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.Partition != nil {
		partition = int(*ru.Partition)
	}
	rev := stsRevision(s)
	for o := end - 1; o >= start+partition; o-- {
		if p := byOrdinal[o]; p.Labels[appsv1.StatefulSetRevisionLabel] != rev {
			act.delete = append(act.delete, p.Name)
			return act
		}
	}
	return act
}

// sync brings a StatefulSet's pods one step closer to its spec and publishes its status.
func (c *statefulSetController) sync(ctx context.Context, ns, name string) error {
	s, err := c.sets.StatefulSets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil // its pods are deleted with it by the API layer
	}
	if err != nil {
		return err
	}
	all, err := c.pods.Pods(ns).List(labels.Everything())
	if err != nil {
		return err
	}
	byOrdinal, stray := stsPods(s, all)
	act := planStatefulSet(s, byOrdinal, stray)
	client := c.d.client.CoreV1().Pods(ns)
	for _, o := range act.create {
		p := newStatefulSetPod(s, o)
		if _, err := client.Create(ctx, p, metav1.CreateOptions{}); err != nil {
			if apierrors.IsAlreadyExists(err) {
				// The lister does not show it yet, or another object holds the name: the pod's
				// events (or the retry) bring the next sync.
				cur, gerr := client.Get(ctx, p.Name, metav1.GetOptions{})
				if gerr == nil {
					if ref := metav1.GetControllerOf(cur); ref != nil && ref.UID == s.UID {
						continue
					}
				}
				return fmt.Errorf("pod %s/%s exists and is not owned by StatefulSet %s", ns, p.Name, name)
			}
			return err
		}
		c.log.Debug("created pod", "statefulset", ns+"/"+name, "pod", p.Name)
	}
	for _, pod := range act.delete {
		if err := deletePod(ctx, c.d.client, ns, pod); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return c.updateStatus(ctx, s, byOrdinal)
}

// stsStatus counts a StatefulSet's pods as kube-controller-manager does.
func stsStatus(s *appsv1.StatefulSet, byOrdinal map[int]*corev1.Pod) appsv1.StatefulSetStatus {
	st := s.Status.DeepCopy()
	rev := stsRevision(s)
	st.ObservedGeneration = s.Generation
	st.UpdateRevision = rev
	if st.CurrentRevision == "" {
		st.CurrentRevision = rev
	}
	st.Replicas, st.ReadyReplicas, st.AvailableReplicas, st.CurrentReplicas, st.UpdatedReplicas = 0, 0, 0, 0, 0
	for _, p := range byOrdinal {
		if p.DeletionTimestamp != nil {
			continue
		}
		st.Replicas++
		if runningAndReady(p) {
			st.ReadyReplicas++
			st.AvailableReplicas++
		}
		if p.Labels[appsv1.StatefulSetRevisionLabel] == rev {
			st.UpdatedReplicas++
		}
	}
	start, end := stsOrdinals(s)
	if int(st.UpdatedReplicas) == end-start && int(st.Replicas) == end-start {
		st.CurrentRevision = rev // the rollout is complete
	}
	for _, p := range byOrdinal {
		if p.DeletionTimestamp == nil && p.Labels[appsv1.StatefulSetRevisionLabel] == st.CurrentRevision {
			st.CurrentReplicas++
		}
	}
	return *st
}

func (c *statefulSetController) updateStatus(ctx context.Context, s *appsv1.StatefulSet, byOrdinal map[int]*corev1.Pod) error {
	st := stsStatus(s, byOrdinal)
	if equalStsStatus(&s.Status, &st) {
		return nil
	}
	// The store keeps no status subresource for StatefulSets: write the status onto the newest
	// object, so that a spec applied meanwhile is not undone.
	cur, err := c.d.client.AppsV1().StatefulSets(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if cur.UID != s.UID {
		return nil
	}
	if cur.Generation != s.Generation {
		c.queue.Add(s.Namespace + "/" + s.Name) // counted against an older spec: count again
	}
	cur.Status = st
	if _, err := c.d.client.AppsV1().StatefulSets(s.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

func equalStsStatus(a, b *appsv1.StatefulSetStatus) bool {
	return a.ObservedGeneration == b.ObservedGeneration && a.Replicas == b.Replicas && a.ReadyReplicas == b.ReadyReplicas &&
		a.AvailableReplicas == b.AvailableReplicas && a.CurrentReplicas == b.CurrentReplicas &&
		a.UpdatedReplicas == b.UpdatedReplicas && a.CurrentRevision == b.CurrentRevision && a.UpdateRevision == b.UpdateRevision
}

// stsPending says what a StatefulSet still waits for before it is fully rolled out: every wanted
// pod Running and Ready with the current template, and no other pod of it left.
func stsPending(s *appsv1.StatefulSet, pods []*corev1.Pod) string {
	byOrdinal, stray := stsPods(s, pods)
	for _, p := range stray {
		return fmt.Sprintf("pod %s/%s of statefulset %s to go", p.Namespace, p.Name, s.Name)
	}
	start, end := stsOrdinals(s)
	rev := stsRevision(s)
	var ords []int
	for o := range byOrdinal {
		ords = append(ords, o)
	}
	sort.Ints(ords)
	for _, o := range ords {
		if p := byOrdinal[o]; o < start || o >= end {
			return fmt.Sprintf("pod %s/%s of statefulset %s to go (scaled in)", p.Namespace, p.Name, s.Name)
		}
	}
	partition := 0
	if ru := s.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.Partition != nil && s.Spec.UpdateStrategy.Type != appsv1.OnDeleteStatefulSetStrategyType {
		partition = int(*ru.Partition)
	}
	for o := start; o < end; o++ {
		p := byOrdinal[o]
		switch {
		case p == nil:
			return fmt.Sprintf("pod %s/%s of statefulset %s to be created", s.Namespace, stsPodName(s, o), s.Name)
		case p.DeletionTimestamp != nil:
			return fmt.Sprintf("pod %s/%s of statefulset %s to be replaced", p.Namespace, p.Name, s.Name)
		case !runningAndReady(p):
			return fmt.Sprintf("pod %s/%s to be Running and Ready (phase %s)", p.Namespace, p.Name, p.Status.Phase)
		case s.Spec.UpdateStrategy.Type != appsv1.OnDeleteStatefulSetStrategyType && o >= start+partition &&
			p.Labels[appsv1.StatefulSetRevisionLabel] != rev:
			return fmt.Sprintf("pod %s/%s of statefulset %s to be updated", p.Namespace, p.Name, s.Name)
		}
	}
	return ""
}

// statefulSetUpdatable checks an update of a StatefulSet as kube-apiserver does: only some
// fields of its spec may change.
func statefulSetUpdatable(cur, want *appsv1.StatefulSet) error {
	a, b := cur.Spec.DeepCopy(), want.Spec.DeepCopy()
	for _, s := range []*appsv1.StatefulSetSpec{a, b} {
		s.Replicas, s.Ordinals, s.Template, s.UpdateStrategy = nil, nil, corev1.PodTemplateSpec{}, appsv1.StatefulSetUpdateStrategy{}
		s.RevisionHistoryLimit, s.PersistentVolumeClaimRetentionPolicy, s.MinReadySeconds = nil, nil, 0
	}
	if !equality.Semantic.DeepEqual(a, b) {
		return errors.New("spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden")
	}
	return nil
}

// applyStatefulSet creates the StatefulSet or updates it, and says which it did.
func applyStatefulSet(ctx context.Context, c kubernetes.Interface, obj *appsv1.StatefulSet) (string, error) {
	label := "statefulset.apps/" + obj.Name
	cur, err := c.AppsV1().StatefulSets(obj.Namespace).Get(ctx, obj.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		obj.Generation = 1
		obj.Status = appsv1.StatefulSetStatus{}
		_, err = c.AppsV1().StatefulSets(obj.Namespace).Create(ctx, obj, metav1.CreateOptions{})
		return label + " created", err
	}
	if err != nil {
		return "", err
	}
	if metaSame(&cur.ObjectMeta, &obj.ObjectMeta) && equality.Semantic.DeepEqual(cur.Spec, obj.Spec) {
		return label + " unchanged", nil
	}
	if err := statefulSetUpdatable(cur, obj); err != nil {
		return "", err
	}
	cur.Labels, cur.Annotations, cur.Spec = obj.Labels, obj.Annotations, obj.Spec
	cur.Generation++
	_, err = c.AppsV1().StatefulSets(obj.Namespace).Update(ctx, cur, metav1.UpdateOptions{})
	return label + " configured", err
}

// deleteStatefulSet deletes a StatefulSet and then its pods (what garbage collection would do),
// and returns the pods being deleted.
func deleteStatefulSet(ctx context.Context, c kubernetes.Interface, ns, name string) ([]Key, error) {
	set, err := c.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	if err := c.AppsV1().StatefulSets(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return nil, err
	}
	pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var gone []Key
	for i := range pods.Items {
		p := &pods.Items[i]
		if ref := metav1.GetControllerOf(p); ref != nil && ref.UID == set.UID {
			if err := deletePod(ctx, c, ns, p.Name); err != nil && !apierrors.IsNotFound(err) {
				return gone, err
			}
			gone = append(gone, Key{Namespace: ns, Name: p.Name})
		}
	}
	return gone, nil
}
