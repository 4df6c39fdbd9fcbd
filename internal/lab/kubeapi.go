package lab

// The lab's Kubernetes API: a read-only subset of the kube-apiserver REST API, served from the
// lab's store on a unix socket in the lab's state directory (Paths.APISocket). A unix socket is
// reached through the filesystem, so a process in any network namespace of the host (a lab pod,
// a node-level component) can run plain client-go — clientsets, informers — against the lab
// exactly as against a real cluster: see RestConfig.
//
// Served: GET of one object, list and watch (namespaced and across namespaces) of core/v1
// namespaces, nodes, pods, services, endpoints and configmaps, discovery.k8s.io/v1
// endpointslices, networking.k8s.io/v1 networkpolicies and apps/v1 deployments; discovery
// (/api, /apis, /api/v1, /apis/GROUP[/VERSION]), /version, /healthz, /readyz and /livez. Every
// write answers 405 with a Status.
//
// List/watch consistency. The store's watches give no history, and its resourceVersions are not
// handed out in the order its writes land (a writer takes the next resourceVersion before it
// takes the tracker's lock), so the server keeps its own watch cache per resource, the way
// kube-apiserver's cacher does:
//
//   - One feed per resource, started on first use: a store watch that replays nothing (a watch
//     "from the far future"), then a List of the tracker taken after the watch was registered.
//     The list is the cache's first state; every write that lands after it is in the feed. A
//     write that landed between the two is in both and is recognised (same object, same
//     resourceVersion, or an earlier incarnation by UID) and dropped. No write is lost, not even
//     a deletion, which the store's own list-then-watch can miss.
//   - Every change the cache applies is appended to a bounded history. Each entry carries the
//     object's resourceVersion and pos, the highest resourceVersion applied so far; an entry
//     whose resourceVersion raised pos is that value's "setter".
//   - A list (or a bookmark) taken after entry k is labelled pos(k). A watch from X starts just
//     after the setter of X (or at the first entry with pos > X when X set nothing here), which
//     is never later than where the list was taken: entries that arrived out of resourceVersion
//     order may be delivered twice, never lost. (Events are whole objects, so a replayed suffix
//     converges to the same state.) Without reordering, delivery is exact.
//   - X older than the history answers 410 Gone "too old resource version" (client-go relists);
//     a watcher that falls so far behind that its next entry has been dropped gets a 410 ERROR
//     event. X newer than every resourceVersion the store has handed out (a lost store) is 410
//     too.
//   - Lists and "most recent" watches first wait until the cache holds every write to the
//     resource that completed before the request (Store.MaxRV), so they are as fresh as a
//     kube-apiserver consistent read.
//   - The store stamps a deletion's resourceVersion onto the object with an update just before
//     deleting it; the cache folds that pair into one DELETED event, as kube-apiserver sends.
//
// Watches stream newline-delimited JSON watch events with chunked flushing, honour
// timeoutSeconds, labelSelector and fieldSelector (objects that start or stop matching become
// ADDED/DELETED), allowWatchBookmarks (periodic BOOKMARKs) and sendInitialEvents (client-go's
// watch-list: synthetic ADDED events, then a BOOKMARK annotated k8s.io/initial-events-end).
// limit and continue are ignored: a list is always complete.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
)

// RestConfig returns a client-go configuration for the named lab's Kubernetes API: its transport
// dials the lab's api.sock, so kubernetes.NewForConfig works from any process on the host, in
// any network namespace. The API is read-only.
func RestConfig(lab string) (*rest.Config, error) {
	if _, err := LoadConfig(lab); err != nil {
		return nil, err
	}
	return RestConfigForSocket(PathsFor(lab).APISocket()), nil
}

// RestConfigForSocket returns a client-go configuration that talks to a lab Kubernetes API
// served on the unix socket at path.
func RestConfigForSocket(path string) *rest.Config {
	return &rest.Config{
		Host: "http://lab",
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		// Never send the lab's traffic to an HTTP proxy from the environment.
		Proxy: func(*http.Request) (*url.URL, error) { return nil, nil },
		ContentConfig: rest.ContentConfig{
			ContentType:        "application/json",
			AcceptContentTypes: "application/json",
		},
		QPS:   500,
		Burst: 1000,
	}
}

// kapiResource is one resource the API serves.
type kapiResource struct {
	gvr        schema.GroupVersionResource
	kind       string
	singular   string
	shortNames []string
	namespaced bool
	newObj     func() kruntime.Object
	fieldNames map[string]bool // the fields a fieldSelector may name
}

func (r *kapiResource) gvk() schema.GroupVersionKind { return r.gvr.GroupVersion().WithKind(r.kind) }

func (r *kapiResource) apiVersion() string { return r.gvr.GroupVersion().String() }

var kapiResources = func() []*kapiResource {
	core, disc, netw, apps := corev1.SchemeGroupVersion, discoveryv1.SchemeGroupVersion, networkingv1.SchemeGroupVersion, appsv1.SchemeGroupVersion
	rs := []*kapiResource{
		{gvr: core.WithResource("namespaces"), kind: "Namespace", singular: "namespace", shortNames: []string{"ns"},
			newObj: func() kruntime.Object { return &corev1.Namespace{} }},
		{gvr: core.WithResource("nodes"), kind: "Node", singular: "node", shortNames: []string{"no"},
			newObj: func() kruntime.Object { return &corev1.Node{} }},
		{gvr: core.WithResource("pods"), kind: "Pod", singular: "pod", shortNames: []string{"po"}, namespaced: true,
			newObj: func() kruntime.Object { return &corev1.Pod{} }},
		{gvr: core.WithResource("services"), kind: "Service", singular: "service", shortNames: []string{"svc"}, namespaced: true,
			newObj: func() kruntime.Object { return &corev1.Service{} }},
		{gvr: core.WithResource("endpoints"), kind: "Endpoints", singular: "endpoints", shortNames: []string{"ep"}, namespaced: true,
			newObj: func() kruntime.Object { return &corev1.Endpoints{} }}, //nolint:staticcheck // served for old clients
		{gvr: core.WithResource("configmaps"), kind: "ConfigMap", singular: "configmap", shortNames: []string{"cm"}, namespaced: true,
			newObj: func() kruntime.Object { return &corev1.ConfigMap{} }},
		{gvr: disc.WithResource("endpointslices"), kind: "EndpointSlice", singular: "endpointslice", namespaced: true,
			newObj: func() kruntime.Object { return &discoveryv1.EndpointSlice{} }},
		{gvr: netw.WithResource("networkpolicies"), kind: "NetworkPolicy", singular: "networkpolicy", shortNames: []string{"netpol"}, namespaced: true,
			newObj: func() kruntime.Object { return &networkingv1.NetworkPolicy{} }},
		{gvr: apps.WithResource("deployments"), kind: "Deployment", singular: "deployment", shortNames: []string{"deploy"}, namespaced: true,
			newObj: func() kruntime.Object { return &appsv1.Deployment{} }},
		{gvr: apps.WithResource("statefulsets"), kind: "StatefulSet", singular: "statefulset", shortNames: []string{"sts"}, namespaced: true,
			newObj: func() kruntime.Object { return &appsv1.StatefulSet{} }},
	}
	for _, r := range rs {
		r.fieldNames = map[string]bool{}
		for f := range kapiFields(r.newObj(), r.namespaced) {
			r.fieldNames[f] = true
		}
	}
	return rs
}()

// kapiGroupVersions lists the served group versions, core first.
func kapiGroupVersions() []schema.GroupVersion {
	var out []schema.GroupVersion
	seen := map[schema.GroupVersion]bool{}
	for _, r := range kapiResources {
		if gv := r.gvr.GroupVersion(); !seen[gv] {
			seen[gv] = true
			out = append(out, gv)
		}
	}
	return out
}

func kapiLookup(group, version, resource string) *kapiResource {
	for _, r := range kapiResources {
		if r.gvr.Group == group && r.gvr.Version == version && r.gvr.Resource == resource {
			return r
		}
	}
	return nil
}

// kapiFields are the fields of an object a fieldSelector may name, as kube-apiserver offers them.
func kapiFields(obj kruntime.Object, namespaced bool) fields.Set {
	f := fields.Set{}
	if m, err := meta.Accessor(obj); err == nil {
		f["metadata.name"] = m.GetName()
		if namespaced {
			f["metadata.namespace"] = m.GetNamespace()
		}
	}
	switch o := obj.(type) {
	case *corev1.Pod:
		f["spec.nodeName"] = o.Spec.NodeName
		f["spec.restartPolicy"] = string(o.Spec.RestartPolicy)
		f["spec.schedulerName"] = o.Spec.SchedulerName
		f["spec.serviceAccountName"] = o.Spec.ServiceAccountName
		f["spec.hostNetwork"] = strconv.FormatBool(o.Spec.HostNetwork)
		f["status.phase"] = string(o.Status.Phase)
		f["status.podIP"] = o.Status.PodIP
		f["status.nominatedNodeName"] = o.Status.NominatedNodeName
	case *corev1.Service:
		f["spec.clusterIP"] = o.Spec.ClusterIP
		f["spec.type"] = string(o.Spec.Type)
	case *corev1.Node:
		f["spec.unschedulable"] = strconv.FormatBool(o.Spec.Unschedulable)
	case *corev1.Namespace:
		f["status.phase"] = string(o.Status.Phase)
	}
	return f
}

// Tunables; tests shrink them.
const (
	kapiDefaultHistory   = 4096             // watch history entries kept per resource
	kapiDefaultBookmark  = 30 * time.Second // how often a watch with bookmarks gets one
	kapiDefaultTimeout   = 30 * time.Minute // a watch without timeoutSeconds
	kapiFreshWait        = 3 * time.Second  // how long a read waits for the cache to catch up
	kapiHoldStamp        = 20 * time.Millisecond
	kapiFarFutureRV      = "9223372036854775807"
	kapiMaxBatch         = 1024
	kapiContentTypeJSON  = "application/json"
	kapiServerAddressTag = "lab"
)

// KubeAPI serves the lab's read-only Kubernetes API.
type KubeAPI struct {
	store *Store
	log   *slog.Logger

	history  int           // entries kept per resource
	bookmark time.Duration // bookmark interval

	mu     sync.Mutex
	caches map[schema.GroupVersionResource]*kapiCache
	closed chan struct{}

	srv *http.Server
	ln  net.Listener
}

// StartKubeAPI serves the store's read-only Kubernetes API on a unix socket at path (a stale
// socket there is replaced).
func StartKubeAPI(store *Store, path string, log *slog.Logger) (*KubeAPI, error) {
	k := newKubeAPI(store, log)
	if err := k.listen(path); err != nil {
		return nil, err
	}
	return k, nil
}

func newKubeAPI(store *Store, log *slog.Logger) *KubeAPI {
	if log == nil {
		log = slog.Default()
	}
	return &KubeAPI{store: store, log: log, history: kapiDefaultHistory, bookmark: kapiDefaultBookmark,
		caches: map[schema.GroupVersionResource]*kapiCache{}, closed: make(chan struct{})}
}

func (k *KubeAPI) listen(path string) error {
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("kubernetes API socket: %w", err)
	}
	k.ln = l
	k.srv = &http.Server{Handler: k, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := k.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			k.log.Error("kubernetes API stopped", "err", err)
		}
	}()
	return nil
}

// Close stops serving: open watches end, and every cache stops following the store.
func (k *KubeAPI) Close() error {
	k.mu.Lock()
	select {
	case <-k.closed:
		k.mu.Unlock()
		return nil
	default:
	}
	close(k.closed)
	caches := k.caches
	k.mu.Unlock()
	var err error
	if k.srv != nil {
		err = k.srv.Close()
	}
	for _, c := range caches {
		c.src.Stop()
		<-c.done
	}
	if k.ln != nil {
		if a, ok := k.ln.Addr().(*net.UnixAddr); ok {
			_ = os.Remove(a.Name)
		}
	}
	return err
}

// cache returns the resource's watch cache, starting it on first use.
func (k *KubeAPI) cache(r *kapiResource) (*kapiCache, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	select {
	case <-k.closed:
		return nil, errors.New("the lab's Kubernetes API is shutting down")
	default:
	}
	if c := k.caches[r.gvr]; c != nil {
		return c, nil
	}
	c, err := startKapiCache(k.store, r, k.history, k.log)
	if err != nil {
		return nil, err
	}
	k.caches[r.gvr] = c
	return c, nil
}

// ---- the watch cache ----

// kapiObj is one version of an object as the API serves it.
type kapiObj struct {
	key  Key
	obj  kruntime.Object // immutable once cached; carries apiVersion and kind
	meta metav1.Object
	data []byte // obj as JSON
	rv   int64
	uid  types.UID
}

// kapiEntry is one change in a resource's watch history.
type kapiEntry struct {
	typ    watch.EventType // Added, Modified or Deleted
	obj    *kapiObj        // the new version; for Deleted, the deleted object
	prev   *kapiObj        // the version before (nil for Added)
	pos    int64           // the highest resourceVersion applied up to and including this entry
	setter bool            // obj.rv raised pos to pos
}

// kapiHeld is an update that changed nothing but the resourceVersion: the store's stamp before
// a deletion, held back briefly to fold it into the deletion.
type kapiHeld struct {
	ev  watch.Event
	key Key
	rv  int64
	at  time.Time
}

// kapiCache is one resource's objects and recent history, fed by one store watch.
type kapiCache struct {
	res   *kapiResource
	store *Store
	log   *slog.Logger
	src   watch.Interface
	done  chan struct{}

	mu         sync.Mutex
	objs       map[Key]*kapiObj
	hist       []*kapiEntry // hist[i] has index base+i
	base       int64
	floorPos   int64 // pos just before hist[0]
	floorExact bool  // a watch from floorPos may start at hist[0] without losing an entry
	pos        int64
	capacity   int
	changed    chan struct{} // closed and replaced whenever the cache changes
}

func startKapiCache(s *Store, r *kapiResource, capacity int, log *slog.Logger) (*kapiCache, error) {
	c := &kapiCache{res: r, store: s, log: log, done: make(chan struct{}), objs: map[Key]*kapiObj{},
		capacity: max(capacity, 4), changed: make(chan struct{})}
	// Every resourceVersion up to rvBefore was handed out before the watch is registered, so
	// the list below reflects it unless its write is still under way (then its event comes).
	rvBefore := s.ResourceVersion()
	src, err := s.client.InvokesWatch(k8stesting.NewWatchActionWithOptions(r.gvr, "", metav1.ListOptions{ResourceVersion: kapiFarFutureRV}))
	if err != nil {
		return nil, err
	}
	rvAfter := s.ResourceVersion()
	list, err := s.client.Tracker().List(r.gvr, r.gvk(), "")
	if err != nil {
		src.Stop()
		return nil, err
	}
	rvListed := s.ResourceVersion()
	items, err := meta.ExtractList(list)
	if err != nil {
		src.Stop()
		return nil, err
	}
	pos := max(rvBefore, 1)
	// An object written after the watch was registered (resourceVersion > rvAfter) has its
	// write in the feed too: drop its events up to that write, which the list already holds.
	skip := map[Key]int64{}
	for _, it := range items {
		o, err := c.newObj(it)
		if err != nil {
			src.Stop()
			return nil, err
		}
		c.objs[o.key] = o
		pos = max(pos, o.rv)
		if o.rv > rvAfter && o.rv <= rvListed {
			skip[o.key] = o.rv
		}
	}
	c.pos, c.floorPos, c.floorExact = pos, pos, true
	c.src = src
	go c.run(skip)
	return c, nil
}

// newObj wraps an object the cache now owns.
func (c *kapiCache) newObj(obj kruntime.Object) (*kapiObj, error) {
	obj.GetObjectKind().SetGroupVersionKind(c.res.gvk())
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	return &kapiObj{key: Key{Namespace: m.GetNamespace(), Name: m.GetName()}, obj: obj, meta: m, data: data,
		rv: RVOf(m), uid: m.GetUID()}, nil
}

func (c *kapiCache) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *kapiCache) next() int64 { return c.base + int64(len(c.hist)) }

// run applies the feed's events until the feed ends.
func (c *kapiCache) run(skip map[Key]int64) {
	defer close(c.done)
	in := c.src.ResultChan()
	var holds []kapiHeld
	for {
		var timer *time.Timer
		var expire <-chan time.Time
		if len(holds) > 0 {
			timer = time.NewTimer(max(time.Until(holds[0].at.Add(kapiHoldStamp)), 0))
			expire = timer.C
		}
		select {
		case ev, ok := <-in:
			c.mu.Lock()
			changed := false
			// Apply what is waiting under one lock and one wake-up of the watchers.
		drain:
			for n := 0; ok; n++ {
				changed = c.process(ev, skip, &holds) || changed
				if n == kapiMaxBatch {
					break
				}
				select {
				case ev, ok = <-in:
				default:
					break drain
				}
			}
			if !ok {
				for _, h := range holds {
					c.apply(h.ev)
				}
				c.notifyLocked()
				c.mu.Unlock()
				if timer != nil {
					timer.Stop()
				}
				return
			}
			if changed {
				c.notifyLocked()
			}
			c.mu.Unlock()
		case <-expire:
			c.mu.Lock()
			for len(holds) > 0 && time.Since(holds[0].at) >= kapiHoldStamp {
				c.apply(holds[0].ev)
				holds = holds[1:]
			}
			c.notifyLocked()
			c.mu.Unlock()
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// process takes one feed event; it reports whether the cache changed. Called with c.mu held.
func (c *kapiCache) process(ev watch.Event, skip map[Key]int64, holds *[]kapiHeld) bool {
	if ev.Type != watch.Added && ev.Type != watch.Modified && ev.Type != watch.Deleted {
		return false
	}
	ev.Object.GetObjectKind().SetGroupVersionKind(c.res.gvk())
	m, err := meta.Accessor(ev.Object)
	if err != nil {
		return false
	}
	key, rv := Key{Namespace: m.GetNamespace(), Name: m.GetName()}, RVOf(m)
	if want, ok := skip[key]; ok {
		if rv == want {
			delete(skip, key)
		}
		return c.raise(rv)
	}
	changed := false
	for i, h := range *holds {
		if h.key != key {
			continue
		}
		*holds = append((*holds)[:i:i], (*holds)[i+1:]...)
		if ev.Type == watch.Deleted && rv == h.rv {
			break // the deletion's own stamp: the DELETED event below says it all
		}
		changed = c.apply(h.ev)
		break
	}
	if ev.Type == watch.Modified {
		if prev := c.objs[key]; prev != nil && prev.uid == m.GetUID() && prev.rv != rv && stampOnly(prev, ev.Object, m) {
			*holds = append(*holds, kapiHeld{ev: ev, key: key, rv: rv, at: time.Now()})
			return changed
		}
	}
	return c.apply(ev) || changed
}

// stampOnly reports whether obj differs from prev in its resourceVersion only.
func stampOnly(prev *kapiObj, obj kruntime.Object, m metav1.Object) bool {
	rv := m.GetResourceVersion()
	m.SetResourceVersion(prev.meta.GetResourceVersion())
	same := apiequality.Semantic.DeepEqual(prev.obj, obj)
	m.SetResourceVersion(rv)
	return same
}

// raise records that resourceVersion rv has been seen, without an entry.
func (c *kapiCache) raise(rv int64) bool {
	if rv > c.pos {
		c.pos = rv
		return true
	}
	return false
}

// apply makes one event part of the cache and its history. Called with c.mu held.
func (c *kapiCache) apply(ev watch.Event) bool {
	m, err := meta.Accessor(ev.Object)
	if err != nil {
		return false
	}
	key, rv := Key{Namespace: m.GetNamespace(), Name: m.GetName()}, RVOf(m)
	prev := c.objs[key]
	typ := ev.Type
	switch {
	case prev != nil && prev.uid != m.GetUID():
		// An event of an earlier incarnation: only a write the first list already reflects.
		return c.raise(rv)
	case typ == watch.Deleted && prev == nil, typ == watch.Modified && prev == nil:
		return c.raise(rv) // likewise
	case typ != watch.Deleted && prev != nil && prev.rv == rv:
		return c.raise(rv) // the same write again
	case typ == watch.Added && prev != nil:
		typ = watch.Modified
	}
	o, err := c.newObj(ev.Object)
	if err != nil {
		c.log.Error("kubernetes API: cannot encode object", "resource", c.res.gvr.Resource, "key", key, "err", err)
		return c.raise(rv)
	}
	if typ == watch.Deleted {
		delete(c.objs, key)
	} else {
		c.objs[key] = o
	}
	setter := rv > c.pos
	if setter {
		c.pos = rv
	}
	c.hist = append(c.hist, &kapiEntry{typ: typ, obj: o, prev: prev, pos: c.pos, setter: setter})
	c.trim()
	return true
}

// startIndex is where a watch from resourceVersion x begins: the first entry that a client whose
// state is labelled x may lack. ok is false when that entry has left the history.
func (c *kapiCache) startIndex(x int64) (idx int64, ok bool) {
	switch {
	case x > c.pos:
		return c.next(), true
	case x < c.floorPos:
		return 0, false
	case x == c.floorPos:
		return c.base, c.floorExact
	}
	j := sort.Search(len(c.hist), func(i int) bool { return c.hist[i].pos >= x })
	if j < len(c.hist) && c.hist[j].pos == x && c.hist[j].setter {
		j++
	}
	return c.base + int64(j), true
}

// labelAt is the resourceVersion that labels the state after every entry before idx: a watch
// from it starts at idx or earlier.
func (c *kapiCache) labelAt(idx int64) (int64, bool) {
	switch {
	case idx < c.base || idx > c.next():
		return 0, false
	case idx == c.base:
		return c.floorPos, c.floorExact
	}
	return c.hist[idx-1-c.base].pos, true
}

// trim drops the oldest entries once the history is a quarter over capacity, preferring a cut
// after which a watch from the last dropped entry's pos can still start exactly at the cut.
func (c *kapiCache) trim() {
	if len(c.hist) <= c.capacity+c.capacity/4 {
		return
	}
	cut := len(c.hist) - c.capacity
	exact := false
	for t := cut; t < len(c.hist) && t < cut+64; t++ {
		if s, ok := c.startIndex(c.hist[t-1].pos); ok && s == c.base+int64(t) {
			cut, exact = t, true
			break
		}
	}
	c.floorPos, c.floorExact = c.hist[cut-1].pos, exact
	c.hist = append([]*kapiEntry(nil), c.hist[cut:]...) // a new array: watchers may hold the old
	c.base += int64(cut)
}

// waitFresh waits until the cache holds every write to its resource that completed before the
// call, or the timeout passes.
func (c *kapiCache) waitFresh(ctx context.Context, timeout time.Duration) bool {
	target := c.store.MaxRV(c.res.gvr.Resource)
	var deadline <-chan time.Time
	for {
		c.mu.Lock()
		ok, ch := c.pos >= target, c.changed
		c.mu.Unlock()
		if ok {
			return true
		}
		if deadline == nil {
			t := time.NewTimer(timeout)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		case <-deadline:
			return false
		case <-c.done:
			return false
		}
	}
}

// snapshot lists the objects that pass f, sorted by namespace and name. Called with c.mu held.
func (c *kapiCache) snapshot(f *kapiFilter) []*kapiObj {
	out := make([]*kapiObj, 0, len(c.objs))
	for _, o := range c.objs {
		if f.matches(o) {
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].key.Namespace != out[j].key.Namespace {
			return out[i].key.Namespace < out[j].key.Namespace
		}
		return out[i].key.Name < out[j].key.Name
	})
	return out
}

// ---- requests ----

// kapiFilter selects objects: by namespace, labels and fields.
type kapiFilter struct {
	res       *kapiResource
	namespace string
	label     labels.Selector // nil: every object
	field     fields.Selector // nil: every object
}

// simple filters select by namespace only, which never changes: no object starts or stops
// matching.
func (f *kapiFilter) simple() bool { return f.label == nil && f.field == nil }

func (f *kapiFilter) matches(o *kapiObj) bool {
	if o == nil || (f.namespace != "" && o.key.Namespace != f.namespace) {
		return false
	}
	if f.label != nil && !f.label.Matches(labels.Set(o.meta.GetLabels())) {
		return false
	}
	if f.field != nil && !f.field.Matches(kapiFields(o.obj, f.res.namespaced)) {
		return false
	}
	return true
}

// kapiRequest is a parsed list or watch request.
type kapiRequest struct {
	filter      kapiFilter
	watch       bool
	rv          string
	rvNum       int64 // rv as a number; 0 for "" and "0"
	sendInitial *bool
	bookmarks   bool
	timeout     time.Duration
}

func parseKapiRequest(res *kapiResource, ns string, q url.Values, watchPath bool) (*kapiRequest, error) {
	req := &kapiRequest{filter: kapiFilter{res: res, namespace: ns}, watch: watchPath, rv: q.Get("resourceVersion"), timeout: kapiDefaultTimeout}
	boolParam := func(name string) (bool, bool, error) {
		v := q.Get(name)
		if v == "" {
			return false, false, nil
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return false, false, fmt.Errorf("%s=%q: not a boolean", name, v)
		}
		return b, true, nil
	}
	var err error
	var set bool
	if !req.watch {
		if req.watch, _, err = boolParam("watch"); err != nil {
			return nil, err
		}
	}
	if req.bookmarks, _, err = boolParam("allowWatchBookmarks"); err != nil {
		return nil, err
	}
	var send bool
	if send, set, err = boolParam("sendInitialEvents"); err != nil {
		return nil, err
	} else if set {
		req.sendInitial = &send
	}
	if req.rv != "" {
		if req.rvNum, err = strconv.ParseInt(req.rv, 10, 64); err != nil || req.rvNum < 0 {
			return nil, fmt.Errorf("resourceVersion %q: not a resource version this server handed out", req.rv)
		}
	}
	if v := q.Get("timeoutSeconds"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("timeoutSeconds=%q: not a number of seconds", v)
		}
		if n > 0 {
			req.timeout = time.Duration(n) * time.Second
		}
	}
	if v := q.Get("labelSelector"); v != "" {
		sel, err := labels.Parse(v)
		if err != nil {
			return nil, fmt.Errorf("labelSelector %q: %v", v, err)
		}
		if !sel.Empty() {
			req.filter.label = sel
		}
	}
	if v := q.Get("fieldSelector"); v != "" {
		sel, err := fields.ParseSelector(v)
		if err != nil {
			return nil, fmt.Errorf("fieldSelector %q: %v", v, err)
		}
		for _, r := range sel.Requirements() {
			if !res.fieldNames[r.Field] {
				return nil, fmt.Errorf("field label not supported: %s", r.Field)
			}
		}
		if !sel.Empty() {
			req.filter.field = sel
		}
	}
	return req, nil
}

// ServeHTTP answers one API request.
func (k *KubeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		kapiError(w, http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed,
			fmt.Sprintf("the lab's Kubernetes API is read-only: %s %s is not allowed; change the lab with `podnet apply` or `podnet delete`", r.Method, r.URL.Path), nil)
		return
	}
	path := strings.Trim(r.URL.Path, "/")
	switch path {
	case "healthz", "readyz", "livez":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok"))
		return
	case "version":
		kapiWriteJSON(w, version.Info{Major: "1", Minor: "37", GitVersion: "v1.37.2-podnet-lab", GitTreeState: "clean",
			GoVersion: runtime.Version(), Compiler: runtime.Compiler, Platform: runtime.GOOS + "/" + runtime.GOARCH})
		return
	case "api":
		kapiWriteJSON(w, &metav1.APIVersions{TypeMeta: metav1.TypeMeta{Kind: "APIVersions"}, Versions: []string{"v1"},
			ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{{ClientCIDR: "0.0.0.0/0", ServerAddress: kapiServerAddressTag}}})
		return
	case "apis":
		list := &metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}, Groups: []metav1.APIGroup{}}
		for _, gv := range kapiGroupVersions() {
			if gv.Group != "" {
				list.Groups = append(list.Groups, kapiGroup(gv))
			}
		}
		kapiWriteJSON(w, list)
		return
	}
	parts := strings.Split(path, "/")
	var group string
	switch {
	case parts[0] == "api" && len(parts) >= 2:
		parts = parts[1:]
	case parts[0] == "apis" && len(parts) >= 2:
		group, parts = parts[1], parts[2:]
		if len(parts) == 0 {
			for _, gv := range kapiGroupVersions() {
				if gv.Group == group {
					g := kapiGroup(gv)
					g.TypeMeta = metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"}
					kapiWriteJSON(w, &g)
					return
				}
			}
			kapiNotFound(w, r)
			return
		}
	default:
		kapiNotFound(w, r)
		return
	}
	ver, parts := parts[0], parts[1:]
	if len(parts) == 0 {
		k.serveResourceList(w, r, schema.GroupVersion{Group: group, Version: ver})
		return
	}
	watchPath := false
	if parts[0] == "watch" {
		watchPath, parts = true, parts[1:]
	}
	ns := ""
	if len(parts) >= 3 && parts[0] == "namespaces" {
		if res := kapiLookup(group, ver, parts[2]); res != nil && res.namespaced {
			ns, parts = parts[1], parts[2:]
		}
	}
	if len(parts) == 0 || len(parts) > 3 {
		kapiNotFound(w, r)
		return
	}
	res := kapiLookup(group, ver, parts[0])
	if res == nil || (ns != "" && !res.namespaced) || (len(parts) == 3 && parts[2] != "status") {
		kapiNotFound(w, r)
		return
	}
	name := ""
	if len(parts) >= 2 {
		name = parts[1]
	}
	c, err := k.cache(res)
	if err != nil {
		kapiError(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, err.Error(), nil)
		return
	}
	req, err := parseKapiRequest(res, ns, r.URL.Query(), watchPath)
	if err != nil {
		kapiError(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, err.Error(), nil)
		return
	}
	switch {
	case name != "" && req.watch:
		// The old /watch/…/NAME form: a watch of one object.
		sel := fields.OneTermEqualSelector("metadata.name", name)
		if req.filter.field != nil {
			sel = fields.AndSelectors(req.filter.field, sel)
		}
		req.filter.field = sel
		k.serveWatch(w, r, c, req)
	case name != "":
		k.serveGet(w, r, c, Key{Namespace: ns, Name: name})
	case req.watch:
		k.serveWatch(w, r, c, req)
	default:
		k.serveList(w, r, c, req)
	}
}

func kapiGroup(gv schema.GroupVersion) metav1.APIGroup {
	v := metav1.GroupVersionForDiscovery{GroupVersion: gv.String(), Version: gv.Version}
	return metav1.APIGroup{Name: gv.Group, Versions: []metav1.GroupVersionForDiscovery{v}, PreferredVersion: v}
}

func (k *KubeAPI) serveResourceList(w http.ResponseWriter, r *http.Request, gv schema.GroupVersion) {
	list := &metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: gv.String()}
	for _, res := range kapiResources {
		if res.gvr.GroupVersion() != gv {
			continue
		}
		list.APIResources = append(list.APIResources, metav1.APIResource{Name: res.gvr.Resource, SingularName: res.singular,
			Namespaced: res.namespaced, Kind: res.kind, Verbs: metav1.Verbs{"get", "list", "watch"}, ShortNames: res.shortNames})
	}
	if len(list.APIResources) == 0 {
		kapiNotFound(w, r)
		return
	}
	kapiWriteJSON(w, list)
}

func (k *KubeAPI) serveGet(w http.ResponseWriter, r *http.Request, c *kapiCache, key Key) {
	c.waitFresh(r.Context(), kapiFreshWait)
	c.mu.Lock()
	o := c.objs[key]
	c.mu.Unlock()
	if o == nil {
		kapiError(w, http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf("%s %q not found", c.res.gvr.GroupResource(), key.Name),
			&metav1.StatusDetails{Name: key.Name, Group: c.res.gvr.Group, Kind: c.res.gvr.Resource})
		return
	}
	w.Header().Set("Content-Type", kapiContentTypeJSON)
	_, _ = w.Write(o.data)
}

// checkRV refuses a resourceVersion newer than any the store has handed out: a client that
// holds one has seen state this store no longer has (it lost writes), and must relist.
func (k *KubeAPI) checkRV(w http.ResponseWriter, req *kapiRequest) bool {
	if req.rvNum > k.store.ResourceVersion() {
		kapiGone(w, req.rvNum, k.store.ResourceVersion())
		return false
	}
	return true
}

func (k *KubeAPI) serveList(w http.ResponseWriter, r *http.Request, c *kapiCache, req *kapiRequest) {
	if !k.checkRV(w, req) {
		return
	}
	c.waitFresh(r.Context(), kapiFreshWait)
	c.mu.Lock()
	items := c.snapshot(&req.filter)
	label, _ := c.labelAt(c.next())
	c.mu.Unlock()
	var buf bytes.Buffer
	fmt.Fprintf(&buf, `{"kind":%q,"apiVersion":%q,"metadata":{"resourceVersion":"%d"},"items":[`, c.res.kind+"List", c.res.apiVersion(), label)
	for i, o := range items {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(o.data)
	}
	buf.WriteString("]}\n")
	w.Header().Set("Content-Type", kapiContentTypeJSON)
	_, _ = w.Write(buf.Bytes())
}

// serveWatch streams watch events until the client goes, the timeout passes, the server closes,
// or the watcher falls out of the history.
func (k *KubeAPI) serveWatch(w http.ResponseWriter, r *http.Request, c *kapiCache, req *kapiRequest) {
	ctx := r.Context()
	if !k.checkRV(w, req) {
		return
	}
	// Where the stream starts: with the current state as ADDED events (watch-list, or a legacy
	// watch from "" or "0"), or at the history entry after resourceVersion rv.
	withInitial := (req.sendInitial != nil && *req.sendInitial) || (req.sendInitial == nil && req.rvNum == 0)
	var initial []*kapiObj
	var idx, initialLabel int64
	if withInitial || req.rv == "" {
		c.waitFresh(ctx, kapiFreshWait)
	}
	c.mu.Lock()
	switch {
	case withInitial:
		initial = c.snapshot(&req.filter)
		idx = c.next()
		initialLabel, _ = c.labelAt(idx)
	case req.rvNum == 0: // sendInitialEvents=false from "now"
		idx = c.next()
	default:
		var ok bool
		if idx, ok = c.startIndex(req.rvNum); !ok {
			floor := c.floorPos
			c.mu.Unlock()
			kapiGone(w, req.rvNum, floor)
			return
		}
	}
	c.mu.Unlock()

	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", kapiContentTypeJSON)
	w.Header().Set("Cache-Control", "no-cache, private")
	w.WriteHeader(http.StatusOK)
	if flusher != nil {
		flusher.Flush() // the client's Watch returns once it has the headers
	}
	flush := func(buf *bytes.Buffer) bool {
		if buf.Len() == 0 {
			return true
		}
		_, err := w.Write(buf.Bytes())
		buf.Reset()
		if err == nil && flusher != nil {
			flusher.Flush()
		}
		return err == nil
	}
	var buf bytes.Buffer
	sentRV := int64(-1) // the resourceVersion the client last saw
	for i, o := range initial {
		kapiEventLine(&buf, watch.Added, o.data)
		if i%kapiMaxBatch == kapiMaxBatch-1 && !flush(&buf) {
			return
		}
	}
	if req.sendInitial != nil && *req.sendInitial {
		kapiEventLine(&buf, watch.Bookmark, c.bookmark(initialLabel, true))
		sentRV = initialLabel
	}
	if !flush(&buf) {
		return
	}

	timeout := time.NewTimer(req.timeout)
	defer timeout.Stop()
	var tick <-chan time.Time
	if req.bookmarks && k.bookmark > 0 {
		t := time.NewTicker(k.bookmark)
		defer t.Stop()
		tick = t.C
	}
	// bookmarkNow sends a bookmark when the client's resourceVersion lags the stream's position.
	bookmarkNow := func() bool {
		if !req.bookmarks {
			return true
		}
		c.mu.Lock()
		label, ok := c.labelAt(idx)
		c.mu.Unlock()
		if !ok || label == sentRV {
			return true
		}
		kapiEventLine(&buf, watch.Bookmark, c.bookmark(label, false))
		sentRV = label
		return flush(&buf)
	}
	for {
		c.mu.Lock()
		if idx < c.base {
			floor := c.floorPos
			c.mu.Unlock()
			kapiEventLine(&buf, watch.Error, kapiStatusJSON(kapiGoneStatus(idx, floor, true)))
			flush(&buf)
			return
		}
		end := min(c.next(), idx+kapiMaxBatch)
		batch := c.hist[idx-c.base : end-c.base]
		changed := c.changed
		c.mu.Unlock()
		if len(batch) > 0 {
			for _, e := range batch {
				if typ, data := e.forClient(&req.filter); typ != "" {
					kapiEventLine(&buf, typ, data)
					sentRV = e.obj.rv
				}
			}
			idx = end
			if !flush(&buf) {
				return
			}
			continue
		}
		select {
		case <-changed:
		case <-tick:
			if !bookmarkNow() {
				return
			}
		case <-timeout.C:
			bookmarkNow()
			return
		case <-ctx.Done():
			return
		case <-k.closed:
			return
		case <-c.done:
			return
		}
	}
}

// forClient is how a watcher with filter f sees the entry: an event type and object, or "" when
// the entry does not concern it.
func (e *kapiEntry) forClient(f *kapiFilter) (watch.EventType, []byte) {
	if f.simple() {
		if f.namespace != "" && e.obj.key.Namespace != f.namespace {
			return "", nil
		}
		return e.typ, e.obj.data
	}
	cur := e.typ != watch.Deleted && f.matches(e.obj)
	old := e.prev != nil && f.matches(e.prev)
	switch {
	case cur && old:
		return watch.Modified, e.obj.data
	case cur:
		return watch.Added, e.obj.data
	case old && e.typ == watch.Deleted:
		return watch.Deleted, e.obj.data
	case old:
		// The object stopped matching: to this watcher it is gone, as it was before the change
		// but at the change's resourceVersion.
		gone := e.prev.obj.DeepCopyObject()
		if m, err := meta.Accessor(gone); err == nil {
			m.SetResourceVersion(strconv.FormatInt(e.obj.rv, 10))
		}
		data, err := json.Marshal(gone)
		if err != nil {
			return watch.Deleted, e.obj.data
		}
		return watch.Deleted, data
	}
	return "", nil
}

// bookmark is a BOOKMARK event's object: the resource's kind with only a resourceVersion.
func (c *kapiCache) bookmark(rv int64, initialEnd bool) []byte {
	obj := c.res.newObj()
	obj.GetObjectKind().SetGroupVersionKind(c.res.gvk())
	m, _ := meta.Accessor(obj)
	m.SetResourceVersion(strconv.FormatInt(rv, 10))
	if initialEnd {
		m.SetAnnotations(map[string]string{metav1.InitialEventsAnnotationKey: "true"})
	}
	data, _ := json.Marshal(obj)
	return data
}

func kapiEventLine(buf *bytes.Buffer, typ watch.EventType, data []byte) {
	buf.WriteString(`{"type":"`)
	buf.WriteString(string(typ))
	buf.WriteString(`","object":`)
	buf.Write(data)
	buf.WriteString("}\n")
}

func kapiWriteJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", kapiContentTypeJSON)
	_ = json.NewEncoder(w).Encode(v)
}

func kapiStatus(code int, reason metav1.StatusReason, msg string, details *metav1.StatusDetails) *metav1.Status {
	return &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
		Message: msg, Reason: reason, Details: details, Code: int32(code)}
}

func kapiStatusJSON(st *metav1.Status) []byte {
	b, _ := json.Marshal(st)
	return b
}

func kapiError(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string, details *metav1.StatusDetails) {
	w.Header().Set("Content-Type", kapiContentTypeJSON)
	w.WriteHeader(code)
	_, _ = w.Write(append(kapiStatusJSON(kapiStatus(code, reason, msg, details)), '\n'))
}

func kapiNotFound(w http.ResponseWriter, r *http.Request) {
	kapiError(w, http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf("the server could not find the requested resource (%s)", r.URL.Path), nil)
}

func kapiGoneStatus(rv, oldest int64, duringWatch bool) *metav1.Status {
	msg := fmt.Sprintf("too old resource version: %d (%d)", rv, oldest)
	if duringWatch {
		msg = fmt.Sprintf("too old resource version: the watch fell out of the history (%d)", oldest)
	}
	return kapiStatus(http.StatusGone, metav1.StatusReasonExpired, msg, nil)
}

func kapiGone(w http.ResponseWriter, rv, oldest int64) {
	st := kapiGoneStatus(rv, oldest, false)
	w.Header().Set("Content-Type", kapiContentTypeJSON)
	w.WriteHeader(http.StatusGone)
	_, _ = w.Write(append(kapiStatusJSON(st), '\n'))
}
