package lab

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// Store is the lab's embedded API server: client-go's object tracker behind the real
// kubernetes.Interface, plus what kube-apiserver does for every write that the tracker does not:
// a cluster-wide resourceVersion, UIDs, creation timestamps and generateName. It persists every
// object to the lab's state directory so a restarted daemon finds its cluster again.
type Store struct {
	client  *fake.Clientset
	objects k8stesting.ReactionFunc // the tracker's own reactor, which performs writes
	rv      atomic.Int64
	path    string

	mu    sync.Mutex
	dirty chan struct{}
	done  chan struct{}

	rvMu  sync.Mutex
	maxRV map[string]int64 // newest resourceVersion per resource

	watchMu  sync.Mutex
	watchers map[*queuedWatcher]bool // every open watch, to pace writers by
}

// storedKind is one kind the store persists, in the order objects are restored.
type storedKind struct {
	gvr schema.GroupVersionResource
	gvk schema.GroupVersionKind
}

var storedKinds = []storedKind{
	{corev1.SchemeGroupVersion.WithResource("namespaces"), corev1.SchemeGroupVersion.WithKind("Namespace")},
	{corev1.SchemeGroupVersion.WithResource("nodes"), corev1.SchemeGroupVersion.WithKind("Node")},
	{corev1.SchemeGroupVersion.WithResource("services"), corev1.SchemeGroupVersion.WithKind("Service")},
	{corev1.SchemeGroupVersion.WithResource("pods"), corev1.SchemeGroupVersion.WithKind("Pod")},
	{appsv1.SchemeGroupVersion.WithResource("deployments"), appsv1.SchemeGroupVersion.WithKind("Deployment")},
	{appsv1.SchemeGroupVersion.WithResource("statefulsets"), appsv1.SchemeGroupVersion.WithKind("StatefulSet")},
	{discoveryv1.SchemeGroupVersion.WithResource("endpointslices"), discoveryv1.SchemeGroupVersion.WithKind("EndpointSlice")},
	{networkingv1.SchemeGroupVersion.WithResource("networkpolicies"), networkingv1.SchemeGroupVersion.WithKind("NetworkPolicy")},
}

// NewStore opens (or creates) the store persisted at path; an empty path keeps it in memory only.
func NewStore(path string) (*Store, error) {
	s := &Store{client: fake.NewSimpleClientset(), path: path, dirty: make(chan struct{}, 1), done: make(chan struct{})}
	s.objects = k8stesting.ObjectReaction(s.client.Tracker())
	s.client.PrependReactor("*", "*", s.react)
	s.client.PrependWatchReactor("*", s.watch)
	if path != "" {
		if err := s.load(); err != nil {
			return nil, err
		}
		go s.saver()
	}
	return s, nil
}

// Client is the kubernetes.Interface every lab component uses.
func (s *Store) Client() kubernetes.Interface { return s.client }

// ResourceVersion is the newest resourceVersion handed out.
func (s *Store) ResourceVersion() int64 { return s.rv.Load() }

// react stamps every write the way kube-apiserver does, performs it on the tracker, and records
// the resourceVersion of each write that succeeded. Reads go on to the default reactors.
func (s *Store) react(action k8stesting.Action) (bool, runtime.Object, error) {
	var rv int64
	// The concrete types: CreateAction and UpdateAction are the same interface.
	switch a := action.(type) {
	case k8stesting.CreateActionImpl:
		m, err := meta.Accessor(a.GetObject())
		if err != nil {
			return false, nil, nil
		}
		if m.GetName() == "" && m.GetGenerateName() != "" {
			m.SetName(m.GetGenerateName() + rand.String(5))
		}
		if m.GetUID() == "" {
			m.SetUID(uuid.NewUUID())
		}
		if ts := m.GetCreationTimestamp(); ts.IsZero() {
			m.SetCreationTimestamp(metav1.NewTime(time.Now()))
		}
		rv = s.rv.Add(1)
		m.SetResourceVersion(strconv.FormatInt(rv, 10))
	case k8stesting.UpdateActionImpl:
		m, err := meta.Accessor(a.GetObject())
		if err != nil {
			return false, nil, nil
		}
		s.splitStatus(a)
		rv = s.rv.Add(1)
		m.SetResourceVersion(strconv.FormatInt(rv, 10))
	case k8stesting.PatchActionImpl:
		return true, nil, fmt.Errorf("the lab store does not support patch; use update")
	case k8stesting.DeleteActionImpl:
		// As in kube-apiserver, the deletion itself has a resourceVersion, carried by the
		// object in the delete event: watchers can tell they have seen it.
		rv = s.rv.Add(1)
		if obj, err := s.client.Tracker().Get(a.GetResource(), a.GetNamespace(), a.GetName()); err == nil {
			if m, err := meta.Accessor(obj); err == nil {
				m.SetResourceVersion(strconv.FormatInt(rv, 10))
				_ = s.client.Tracker().Update(a.GetResource(), obj, a.GetNamespace())
			}
		}
	default:
		return false, nil, nil
	}
	handled, ret, err := s.objects(action)
	s.paceWriters()
	if err != nil {
		return handled, ret, err
	}
	s.rvMu.Lock()
	if s.maxRV == nil {
		s.maxRV = map[string]int64{}
	}
	s.maxRV[action.GetResource().Resource] = max(s.maxRV[action.GetResource().Resource], rv)
	s.rvMu.Unlock()
	select {
	case s.dirty <- struct{}{}:
	default:
	}
	return handled, ret, err
}

// splitStatus gives Pods, Services, Deployments and StatefulSets kube-apiserver's status subresource: an update
// of the object keeps the stored status, and an update of its status (UpdateStatus) changes only
// the status. Without it a writer holding an older copy would undo another's change: a kubelet's
// status write a deletion timestamp, a controller's status write a new spec, apply a load-balancer
// address. (Nodes keep whole-object updates: node agents publish conditions with Update.)
func (s *Store) splitStatus(a k8stesting.UpdateAction) {
	m, err := meta.Accessor(a.GetObject())
	if err != nil {
		return
	}
	stored, err := s.client.Tracker().Get(a.GetResource(), a.GetNamespace(), m.GetName())
	if err != nil {
		return
	}
	status := a.GetSubresource() == "status"
	switch o := a.GetObject().(type) {
	case *corev1.Pod:
		if cur, ok := stored.(*corev1.Pod); ok {
			if status {
				o.ObjectMeta, o.Spec = *cur.ObjectMeta.DeepCopy(), *cur.Spec.DeepCopy()
			} else {
				o.Status = *cur.Status.DeepCopy()
			}
		}
	case *corev1.Service:
		if cur, ok := stored.(*corev1.Service); ok {
			if status {
				o.ObjectMeta, o.Spec = *cur.ObjectMeta.DeepCopy(), *cur.Spec.DeepCopy()
			} else {
				o.Status = *cur.Status.DeepCopy()
			}
		}
	case *appsv1.Deployment:
		if cur, ok := stored.(*appsv1.Deployment); ok {
			if status {
				o.ObjectMeta, o.Spec = *cur.ObjectMeta.DeepCopy(), *cur.Spec.DeepCopy()
			} else {
				o.Status = *cur.Status.DeepCopy()
			}
		}
	case *appsv1.StatefulSet:
		if cur, ok := stored.(*appsv1.StatefulSet); ok {
			if status {
				o.ObjectMeta, o.Spec = *cur.ObjectMeta.DeepCopy(), *cur.Spec.DeepCopy()
			} else {
				o.Status = *cur.Status.DeepCopy()
			}
		}
	}
}

// MaxRV is the newest resourceVersion written to any of the named resources (e.g. "pods").
func (s *Store) MaxRV(resources ...string) int64 {
	s.rvMu.Lock()
	defer s.rvMu.Unlock()
	var m int64
	for _, r := range resources {
		m = max(m, s.maxRV[r])
	}
	return m
}

func (s *Store) saver() {
	for {
		select {
		case <-s.done:
			return
		case <-s.dirty:
		}
		time.Sleep(50 * time.Millisecond) // coalesce bursts
		if err := s.Save(); err != nil {
			fmt.Fprintf(os.Stderr, "lab store: save: %v\n", err)
		}
		// The fake clientset records every action it serves; a daemon that runs for days must
		// not keep them.
		s.client.ClearActions()
	}
}

// Close stops persisting after one last save.
func (s *Store) Close() error {
	if s.path == "" {
		return nil
	}
	close(s.done)
	return s.Save()
}

type snapshot struct {
	ResourceVersion int64             `json:"resourceVersion"`
	Items           []json.RawMessage `json:"items"`
}

// Save writes every object atomically (write to a temporary file, fsync, rename).
func (s *Store) Save() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := snapshot{ResourceVersion: s.rv.Load()}
	for _, k := range storedKinds {
		list, err := s.client.Tracker().List(k.gvr, k.gvk, "")
		if err != nil {
			return err
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			return err
		}
		for _, it := range items {
			it = it.DeepCopyObject()
			it.GetObjectKind().SetGroupVersionKind(k.gvk)
			b, err := json.Marshal(it)
			if err != nil {
				return err
			}
			snap.Items = append(snap.Items, b)
		}
	}
	b, err := json.Marshal(snap)
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, s.path)
}

func (s *Store) load() error {
	b, err := os.ReadFile(s.path)
	if os.IsNotExist(err) {
		return os.MkdirAll(filepath.Dir(s.path), 0o755)
	}
	if err != nil {
		return err
	}
	var snap snapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		return fmt.Errorf("%s: %v", s.path, err)
	}
	s.rv.Store(snap.ResourceVersion)
	for _, raw := range snap.Items {
		var tm metav1.TypeMeta
		if err := json.Unmarshal(raw, &tm); err != nil {
			return err
		}
		obj, err := newObject(tm.GroupVersionKind())
		if err != nil {
			return fmt.Errorf("%s: %v", s.path, err)
		}
		if err := json.Unmarshal(raw, obj); err != nil {
			return err
		}
		if err := s.client.Tracker().Add(obj); err != nil {
			return fmt.Errorf("%s: restore %s: %v", s.path, tm.Kind, err)
		}
	}
	return nil
}

func newObject(gvk schema.GroupVersionKind) (runtime.Object, error) {
	switch gvk.Kind {
	case "Namespace":
		return &corev1.Namespace{}, nil
	case "Node":
		return &corev1.Node{}, nil
	case "Service":
		return &corev1.Service{}, nil
	case "Pod":
		return &corev1.Pod{}, nil
	case "Deployment":
		return &appsv1.Deployment{}, nil
	case "StatefulSet":
		return &appsv1.StatefulSet{}, nil
	case "EndpointSlice":
		return &discoveryv1.EndpointSlice{}, nil
	case "NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, nil
	}
	return nil, fmt.Errorf("unknown kind %q", gvk.Kind)
}

// Key is a namespace/name pair.
type Key = types.NamespacedName

// RVOf parses an object's resourceVersion (0 when unset).
func RVOf(obj metav1.Object) int64 {
	n, _ := strconv.ParseInt(obj.GetResourceVersion(), 10, 64)
	return n
}
