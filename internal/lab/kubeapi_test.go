package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// kapiTestServer is a store and its Kubernetes API on a temporary socket, and a real client-go
// clientset that talks to it.
type kapiTestServer struct {
	store *Store
	api   *KubeAPI
	cfg   *rest.Config
	cs    kubernetes.Interface
}

func startKapiTest(t *testing.T, history int) *kapiTestServer {
	t.Helper()
	s, err := NewStore("")
	if err != nil {
		t.Fatal(err)
	}
	k := newKubeAPI(s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if history > 0 {
		k.history = history
	}
	k.bookmark = 200 * time.Millisecond
	sock := filepath.Join(t.TempDir(), "api.sock")
	if err := k.listen(sock); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Close() })
	cfg := RestConfigForSocket(sock)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &kapiTestServer{store: s, api: k, cfg: cfg, cs: cs}
}

func kapiPod(ns, name string, lbls map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbls},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}}
}

func kapiSvc(ns, name string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
}

func kapiSlice(ns, name string) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
		Labels: map[string]string{discoveryv1.LabelServiceName: name}}, AddressType: discoveryv1.AddressTypeIPv4}
}

// kapiState maps namespace/name to resourceVersion.
type kapiState map[string]string

func kapiStateOf(objs []kruntime.Object) kapiState {
	st := kapiState{}
	for _, o := range objs {
		m, _ := meta.Accessor(o)
		st[m.GetNamespace()+"/"+m.GetName()] = m.GetResourceVersion()
	}
	return st
}

func (a kapiState) diff(b kapiState) string {
	var out []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			out = append(out, fmt.Sprintf("%s: only in the store (rv %s)", k, v))
		} else if w != v {
			out = append(out, fmt.Sprintf("%s: store rv %s, informer rv %s", k, v, w))
		}
	}
	for k, w := range b {
		if _, ok := a[k]; !ok {
			out = append(out, fmt.Sprintf("%s: only in the informer (rv %s)", k, w))
		}
	}
	sort.Strings(out)
	if len(out) > 10 {
		out = append(out[:10], fmt.Sprintf("… %d differences", len(out)))
	}
	return strings.Join(out, "\n")
}

// storeState is what the store holds of one resource.
func (ts *kapiTestServer) storeState(t *testing.T, resource string) kapiState {
	t.Helper()
	r := kapiLookupResource(resource)
	list, err := ts.store.client.Tracker().List(r.gvr, r.gvk(), "")
	if err != nil {
		t.Fatal(err)
	}
	items, _ := meta.ExtractList(list)
	return kapiStateOf(items)
}

func kapiLookupResource(resource string) *kapiResource {
	for _, r := range kapiResources {
		if r.gvr.Resource == resource {
			return r
		}
	}
	panic(resource)
}

func informerState(inf cache.SharedIndexInformer) kapiState {
	var objs []kruntime.Object
	for _, o := range inf.GetStore().List() {
		objs = append(objs, o.(kruntime.Object))
	}
	return kapiStateOf(objs)
}

// waitConverged waits until every informer holds exactly what the store holds.
func (ts *kapiTestServer) waitConverged(t *testing.T, infs map[string]cache.SharedIndexInformer, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		bad := ""
		for res, inf := range infs {
			if d := ts.storeState(t, res).diff(informerState(inf)); d != "" {
				bad += res + ":\n" + d + "\n"
			}
		}
		if bad == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("informers did not converge in %s:\n%s", timeout, bad)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// classicLW is a ListerWatcher that makes a reflector list, then watch from the list's
// resourceVersion, instead of client-go's default watch-list stream.
type classicLW struct{ *cache.ListWatch }

func (classicLW) IsWatchListSemanticsUnSupported() bool { return true }

// kapiWriter drives the store the way a busy lab does: several writers at once, so the store's
// resourceVersions land out of order, creating, updating, deleting and re-creating objects.
func kapiWriter(ctx context.Context, t *testing.T, c kubernetes.Interface, w, n int) {
	ns := func(i int) string { return fmt.Sprintf("ns-%d", i%5) }
	for i := 0; i < n; i++ {
		if i%20 == 19 {
			time.Sleep(time.Millisecond) // a burst that lasts while the informers start
		}
		name := fmt.Sprintf("w%d-%d", w, i)
		if _, err := c.CoreV1().Pods(ns(i)).Create(ctx, kapiPod(ns(i), name, map[string]string{"app": "a"}), metav1.CreateOptions{}); err != nil {
			t.Error(err)
			return
		}
		if i%2 == 0 {
			if _, err := c.CoreV1().Services(ns(i)).Create(ctx, kapiSvc(ns(i), name), metav1.CreateOptions{}); err != nil {
				t.Error(err)
				return
			}
		}
		if i%4 == 0 {
			if _, err := c.DiscoveryV1().EndpointSlices(ns(i)).Create(ctx, kapiSlice(ns(i), name), metav1.CreateOptions{}); err != nil {
				t.Error(err)
				return
			}
		}
		if i >= 5 && i%3 == 0 { // update an older pod
			old := fmt.Sprintf("w%d-%d", w, i-5)
			if p, err := c.CoreV1().Pods(ns(i-5)).Get(ctx, old, metav1.GetOptions{}); err == nil {
				p.Labels["gen"] = strconv.Itoa(i)
				if _, err := c.CoreV1().Pods(ns(i-5)).Update(ctx, p, metav1.UpdateOptions{}); err != nil {
					t.Error(err)
					return
				}
			}
		}
		if i >= 3 && i%7 == 0 { // delete a recent pod
			_ = c.CoreV1().Pods(ns(i-3)).Delete(ctx, fmt.Sprintf("w%d-%d", w, i-3), metav1.DeleteOptions{})
		}
		if i >= 8 && i%8 == 0 { // delete a service and its slice, and create the service again
			old := fmt.Sprintf("w%d-%d", w, i-8)
			_ = c.CoreV1().Services(ns(i-8)).Delete(ctx, old, metav1.DeleteOptions{})
			_ = c.DiscoveryV1().EndpointSlices(ns(i-8)).Delete(ctx, old, metav1.DeleteOptions{})
			if _, err := c.CoreV1().Services(ns(i-8)).Create(ctx, kapiSvc(ns(i-8), old), metav1.CreateOptions{}); err != nil {
				t.Error(err)
				return
			}
		}
		if i%100 == 0 {
			nsName := fmt.Sprintf("extra-%d-%d", w, i)
			_, _ = c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsName}}, metav1.CreateOptions{})
			if i%200 == 0 {
				_ = c.CoreV1().Namespaces().Delete(ctx, nsName, metav1.DeleteOptions{})
			}
		}
	}
}

// TestKubeAPIInformersConverge: client-go informers over the socket, started while thousands of
// writes land from several writers at once, end up with exactly the store's objects — deletes
// included — whether they use the watch-list stream or list-then-watch, and even with a history
// so short that their watches keep falling out of it and they must relist.
func TestKubeAPIInformersConverge(t *testing.T) {
	for _, tc := range []struct {
		name    string
		classic bool
		history int
	}{
		{"watch-list", false, 0},
		{"list-then-watch", true, 0},
		{"list-then-watch-short-history", true, 16},
		{"watch-list-short-history", false, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startKapiTest(t, tc.history)
			c := ts.store.Client()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			for i := 0; i < 5; i++ {
				ns := fmt.Sprintf("ns-%d", i)
				if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				for j := 0; j < 20; j++ {
					name := fmt.Sprintf("pre-%d", j)
					_, _ = c.CoreV1().Pods(ns).Create(ctx, kapiPod(ns, name, map[string]string{"app": "pre"}), metav1.CreateOptions{})
					_, _ = c.CoreV1().Services(ns).Create(ctx, kapiSvc(ns, name), metav1.CreateOptions{})
					_, _ = c.DiscoveryV1().EndpointSlices(ns).Create(ctx, kapiSlice(ns, name), metav1.CreateOptions{})
				}
			}

			// 4 writers × 500 iterations: 2,000 pod creates, plus services, slices,
			// namespaces, updates, deletes and re-creates, while the informers start.
			var wg sync.WaitGroup
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					kapiWriter(ctx, t, c, w, 500)
				}(w)
			}
			// Start the informers once the burst is well under way.
			for start := ts.store.ResourceVersion(); ts.store.ResourceVersion() < start+500; {
				time.Sleep(100 * time.Microsecond)
			}
			started := ts.store.ResourceVersion()

			infs := map[string]cache.SharedIndexInformer{}
			var factory informers.SharedInformerFactory
			if tc.classic {
				for res, spec := range map[string]struct {
					rc  rest.Interface
					obj kruntime.Object
				}{
					"pods":           {ts.cs.CoreV1().RESTClient(), &corev1.Pod{}},
					"services":       {ts.cs.CoreV1().RESTClient(), &corev1.Service{}},
					"namespaces":     {ts.cs.CoreV1().RESTClient(), &corev1.Namespace{}},
					"endpointslices": {ts.cs.DiscoveryV1().RESTClient(), &discoveryv1.EndpointSlice{}},
				} {
					lw := cache.NewListWatchFromClient(spec.rc, res, "", fields.Everything())
					infs[res] = cache.NewSharedIndexInformer(classicLW{lw}, spec.obj, 0, cache.Indexers{})
				}
				for _, inf := range infs {
					go inf.Run(ctx.Done())
				}
			} else {
				factory = informers.NewSharedInformerFactory(ts.cs, 0)
				infs["pods"] = factory.Core().V1().Pods().Informer()
				infs["services"] = factory.Core().V1().Services().Informer()
				infs["namespaces"] = factory.Core().V1().Namespaces().Informer()
				infs["endpointslices"] = factory.Discovery().V1().EndpointSlices().Informer()
				factory.Start(ctx.Done())
			}
			for res, inf := range infs {
				if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
					t.Fatalf("%s informer did not sync", res)
				}
			}
			synced := ts.store.ResourceVersion()
			wg.Wait()
			if t.Failed() {
				return
			}
			t.Logf("the informers started at rv %d and synced at rv %d; the writers went on to %d", started, synced, ts.store.ResourceVersion())
			ts.waitConverged(t, infs, 30*time.Second)

			// Then a wave of deletes and updates, and convergence again.
			pods, _ := c.CoreV1().Pods("ns-1").List(ctx, metav1.ListOptions{})
			for _, p := range pods.Items {
				if err := c.CoreV1().Pods("ns-1").Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			svcs, _ := c.CoreV1().Services("ns-2").List(ctx, metav1.ListOptions{})
			for _, s := range svcs.Items {
				s.Labels = map[string]string{"touched": "yes"}
				if _, err := c.CoreV1().Services("ns-2").Update(ctx, &s, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.CoreV1().Namespaces().Delete(ctx, "ns-4", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			ts.waitConverged(t, infs, 30*time.Second)
			if n := len(informerState(infs["pods"])); n < 1000 {
				t.Fatalf("only %d pods: the test did not test much", n)
			}
			cancel()
			if factory != nil {
				factory.Shutdown()
			}
		})
	}
}

// TestKubeAPIListWatchExact: a watch from a list's resourceVersion delivers exactly the changes
// after the list, once each and in order; a deletion is one DELETED event.
func TestKubeAPIListWatchExact(t *testing.T) {
	ts := startKapiTest(t, 0)
	ctx := context.Background()
	c := ts.store.Client()
	for i := 0; i < 3; i++ {
		if _, err := c.CoreV1().Pods("default").Create(ctx, kapiPod("default", fmt.Sprintf("p%d", i), nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	list, err := ts.cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 3 || list.ResourceVersion == "" || list.Kind != "PodList" && list.Kind != "" {
		t.Fatalf("list: %d items, rv %q", len(list.Items), list.ResourceVersion)
	}
	if rv, _ := strconv.ParseInt(list.ResourceVersion, 10, 64); rv > ts.store.ResourceVersion() || rv < RVOf(&list.Items[2]) {
		t.Fatalf("list rv %d: store rv %d, newest item %d", rv, ts.store.ResourceVersion(), RVOf(&list.Items[2]))
	}
	// Changes after the list, before the watch starts.
	p3, _ := c.CoreV1().Pods("default").Create(ctx, kapiPod("default", "p3", nil), metav1.CreateOptions{})
	p0, _ := c.CoreV1().Pods("default").Get(ctx, "p0", metav1.GetOptions{})
	p0.Labels = map[string]string{"x": "y"}
	p0, _ = c.CoreV1().Pods("default").Update(ctx, p0, metav1.UpdateOptions{})
	if err := c.CoreV1().Pods("default").Delete(ctx, "p1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// Another namespace: not this watch's business.
	_, _ = c.CoreV1().Pods("other").Create(ctx, kapiPod("other", "q", nil), metav1.CreateOptions{})

	w, err := ts.cs.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	// And one after.
	_, _ = c.CoreV1().Pods("default").Create(ctx, kapiPod("default", "p4", nil), metav1.CreateOptions{})
	want := []string{"ADDED p3 " + p3.ResourceVersion, "MODIFIED p0 " + p0.ResourceVersion, "DELETED p1", "ADDED p4"}
	var got []string
	timeout := time.After(5 * time.Second)
	for len(got) < len(want) {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("watch closed after %v", got)
			}
			p := ev.Object.(*corev1.Pod)
			s := fmt.Sprintf("%s %s", ev.Type, p.Name)
			if ev.Type != watch.Deleted && p.Name != "p4" {
				s += " " + p.ResourceVersion
			}
			got = append(got, s)
		case <-timeout:
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	select {
	case ev := <-w.ResultChan():
		t.Fatalf("an extra event: %s %v", ev.Type, ev.Object.(*corev1.Pod).Name)
	case <-time.After(300 * time.Millisecond):
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}

// TestKubeAPIGone: a watch from a resourceVersion older than the history, or newer than any the
// store handed out, is 410 Gone, which client-go answers by relisting.
func TestKubeAPIGone(t *testing.T) {
	ts := startKapiTest(t, 8)
	ctx := context.Background()
	c := ts.store.Client()
	_, _ = c.CoreV1().Pods("default").Create(ctx, kapiPod("default", "first", nil), metav1.CreateOptions{})
	list, err := ts.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		_, _ = c.CoreV1().Pods("default").Create(ctx, kapiPod("default", fmt.Sprintf("p%d", i), nil), metav1.CreateOptions{})
	}
	// Let the cache take in the writes.
	if _, err := ts.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = ts.cs.CoreV1().Pods("").Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
		t.Fatalf("watch from an expired resourceVersion: %v, want 410 Gone", err)
	}
	future := strconv.FormatInt(ts.store.ResourceVersion()+1000, 10)
	_, err = ts.cs.CoreV1().Pods("").Watch(ctx, metav1.ListOptions{ResourceVersion: future})
	if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
		t.Fatalf("watch from a resourceVersion the store never handed out: %v, want 410 Gone", err)
	}
	// A watch from a recent list works.
	list, _ = ts.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	w, err := ts.cs.CoreV1().Pods("").Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	_, _ = c.CoreV1().Pods("default").Create(ctx, kapiPod("default", "last", nil), metav1.CreateOptions{})
	select {
	case ev := <-w.ResultChan():
		if ev.Type != watch.Added || ev.Object.(*corev1.Pod).Name != "last" {
			t.Fatalf("event %s %v", ev.Type, ev.Object)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}

	// A watcher that falls out of the history mid-stream gets a 410 ERROR event.
	list, _ = ts.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	ts.api.mu.Lock()
	pc := ts.api.caches[corev1.SchemeGroupVersion.WithResource("pods")]
	ts.api.mu.Unlock()
	pc.mu.Lock() // hold the cache: the watch cannot start reading, the feed queues
	w2, werr := make(chan watch.Interface, 1), make(chan error, 1)
	go func() {
		w, err := ts.cs.CoreV1().Pods("").Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
		werr <- err
		w2 <- w
	}()
	time.Sleep(100 * time.Millisecond)
	pc.mu.Unlock()
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	ww := <-w2
	defer ww.Stop()
	// Now write much more than the history holds while the client does not read: objects
	// large enough to fill the socket's buffers, so the server cannot write ahead either.
	big := strings.Repeat("x", 64<<10)
	for i := 0; i < 200; i++ {
		p := kapiPod("default", fmt.Sprintf("burst%d", i), nil)
		p.Annotations = map[string]string{"big": big}
		_, _ = c.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
	}
	sawGone := false
	deadline := time.After(10 * time.Second)
	for !sawGone {
		select {
		case ev, ok := <-ww.ResultChan():
			if !ok {
				t.Fatal("watch closed without an error event")
			}
			if ev.Type == watch.Error {
				if st, ok := ev.Object.(*metav1.Status); !ok || st.Code != 410 {
					t.Fatalf("error event %v", ev.Object)
				}
				sawGone = true
			}
		case <-deadline:
			t.Fatal("no 410 error event although the watcher fell behind the history")
		}
	}
}

// TestKubeAPISelectors: label and field selectors filter lists and watches; an object that stops
// matching leaves a selecting informer, one that starts matching joins it.
func TestKubeAPISelectors(t *testing.T) {
	ts := startKapiTest(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := ts.store.Client()
	mk := func(name, app, node string) {
		p := kapiPod("default", name, map[string]string{"app": app})
		p.Spec.NodeName = node
		if _, err := c.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mk("web-1", "web", "node-1")
	mk("web-2", "web", "node-2")
	mk("db-1", "db", "node-1")

	list, err := ts.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil || len(list.Items) != 2 {
		t.Fatalf("app=web: %v %d", err, len(list.Items))
	}
	list, err = ts.cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=node-1"})
	if err != nil || len(list.Items) != 2 {
		t.Fatalf("spec.nodeName=node-1: %v %d", err, len(list.Items))
	}
	list, err = ts.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: "app in (web,db)", FieldSelector: "spec.nodeName!=node-1,metadata.namespace=default"})
	if err != nil || len(list.Items) != 1 || list.Items[0].Name != "web-2" {
		t.Fatalf("both selectors: %v %v", err, list)
	}
	if _, err := ts.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.bogus=1"}); !apierrors.IsBadRequest(err) {
		t.Fatalf("unsupported field: %v, want 400", err)
	}
	if _, err := ts.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: "a in (("}); !apierrors.IsBadRequest(err) {
		t.Fatalf("bad label selector: %v, want 400", err)
	}

	f := informers.NewSharedInformerFactoryWithOptions(ts.cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = "app=web"
	}))
	inf := f.Core().V1().Pods().Informer()
	var mu sync.Mutex
	var events []string
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) { mu.Lock(); events = append(events, "add "+o.(*corev1.Pod).Name); mu.Unlock() },
		DeleteFunc: func(o any) {
			if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			mu.Lock()
			events = append(events, "delete "+o.(*corev1.Pod).Name)
			mu.Unlock()
		},
	})
	f.Start(ctx.Done())
	defer func() {
		cancel()
		f.Shutdown()
	}()
	f.WaitForCacheSync(ctx.Done())
	names := func() string {
		var n []string
		for _, o := range inf.GetStore().List() {
			n = append(n, o.(*corev1.Pod).Name)
		}
		sort.Strings(n)
		return strings.Join(n, ",")
	}
	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for names() != want {
			if time.Now().After(deadline) {
				t.Fatalf("informer holds %q, want %q", names(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("web-1,web-2")
	relabel := func(name, app string) {
		p, _ := c.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		p.Labels["app"] = app
		if _, err := c.CoreV1().Pods("default").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	relabel("web-1", "db")
	waitFor("web-2")
	relabel("db-1", "web")
	waitFor("db-1,web-2")
	mk("web-3", "web", "node-3")
	mk("db-2", "db", "node-3")
	_ = c.CoreV1().Pods("default").Delete(ctx, "db-2", metav1.DeleteOptions{})
	_ = c.CoreV1().Pods("default").Delete(ctx, "web-2", metav1.DeleteOptions{})
	waitFor("db-1,web-3")
	mu.Lock()
	sort.Strings(events[:2]) // the initial adds come in no particular order
	got := strings.Join(events, ",")
	mu.Unlock()
	if want := "add web-1,add web-2,delete web-1,add db-1,add web-3,delete web-2"; got != want {
		t.Fatalf("events %s\nwant   %s", got, want)
	}
}

// TestKubeAPIReadOnly: every write is refused with 405 Method Not Allowed.
func TestKubeAPIReadOnly(t *testing.T) {
	ts := startKapiTest(t, 0)
	ctx := context.Background()
	_, _ = ts.store.Client().CoreV1().Pods("default").Create(ctx, kapiPod("default", "p", nil), metav1.CreateOptions{})
	pods := ts.cs.CoreV1().Pods("default")
	_, err := pods.Create(ctx, kapiPod("default", "new", nil), metav1.CreateOptions{})
	if !apierrors.IsMethodNotSupported(err) {
		t.Fatalf("create: %v", err)
	}
	p, err := pods.Get(ctx, "p", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Update(ctx, p, metav1.UpdateOptions{}); !apierrors.IsMethodNotSupported(err) {
		t.Fatalf("update: %v", err)
	}
	if _, err := pods.UpdateStatus(ctx, p, metav1.UpdateOptions{}); !apierrors.IsMethodNotSupported(err) {
		t.Fatalf("update status: %v", err)
	}
	if _, err := pods.Patch(ctx, "p", types.MergePatchType, []byte(`{"metadata":{"labels":{"a":"b"}}}`), metav1.PatchOptions{}); !apierrors.IsMethodNotSupported(err) {
		t.Fatalf("patch: %v", err)
	}
	if err := pods.Delete(ctx, "p", metav1.DeleteOptions{}); !apierrors.IsMethodNotSupported(err) {
		t.Fatalf("delete: %v", err)
	}
	if err := pods.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); !apierrors.IsMethodNotSupported(err) {
		t.Fatalf("delete collection: %v", err)
	}
	if _, err := ts.store.Client().CoreV1().Pods("default").Get(ctx, "p", metav1.GetOptions{}); err != nil {
		t.Fatalf("the pod is gone: %v", err)
	}
	if _, err := ts.store.Client().CoreV1().Pods("default").Get(ctx, "new", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the refused pod exists: %v", err)
	}
}

// TestKubeAPIDiscoveryAndGet: discovery, /version, health, and GET of single objects.
func TestKubeAPIDiscoveryAndGet(t *testing.T) {
	ts := startKapiTest(t, 0)
	ctx := context.Background()
	c := ts.store.Client()
	_, _ = c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system"}}, metav1.CreateOptions{})
	_, _ = c.CoreV1().Services("kube-system").Create(ctx, kapiSvc("kube-system", "kube-dns"), metav1.CreateOptions{})
	_, _ = c.DiscoveryV1().EndpointSlices("kube-system").Create(ctx, kapiSlice("kube-system", "kube-dns"), metav1.CreateOptions{})

	v, err := ts.cs.Discovery().ServerVersion()
	if err != nil || v.Major != "1" {
		t.Fatalf("version: %v %v", v, err)
	}
	groups, resources, err := ts.cs.Discovery().ServerGroupsAndResources()
	if err != nil {
		t.Fatal(err)
	}
	var gs []string
	for _, g := range groups {
		gs = append(gs, g.Name)
	}
	have := map[string]bool{}
	for _, rl := range resources {
		for _, r := range rl.APIResources {
			have[rl.GroupVersion+"/"+r.Name] = true
		}
	}
	for _, want := range []string{"v1/pods", "v1/services", "v1/endpoints", "v1/configmaps", "v1/namespaces", "v1/nodes",
		"discovery.k8s.io/v1/endpointslices", "networking.k8s.io/v1/networkpolicies"} {
		if !have[want] {
			t.Errorf("discovery lacks %s (groups %v)", want, gs)
		}
	}
	for _, p := range []string{"/healthz", "/readyz", "/livez"} {
		b, err := ts.cs.Discovery().RESTClient().Get().AbsPath(p).DoRaw(ctx)
		if err != nil || string(b) != "ok" {
			t.Errorf("%s: %q %v", p, b, err)
		}
	}

	svc, err := ts.cs.CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
	if err != nil || svc.Name != "kube-dns" || svc.Spec.Ports[0].Port != 80 {
		t.Fatalf("get service: %v %v", svc, err)
	}
	if _, err := ts.cs.CoreV1().Services("default").Get(ctx, "kube-dns", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("get in the wrong namespace: %v", err)
	}
	ns, err := ts.cs.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
	if err != nil || ns.Name != "kube-system" {
		t.Fatalf("get namespace: %v %v", ns, err)
	}
	sl, err := ts.cs.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
	if err != nil || len(sl.Items) != 1 || sl.Items[0].Name != "kube-dns" {
		t.Fatalf("list slices: %v %v", sl, err)
	}
	eps, err := ts.cs.CoreV1().Endpoints("kube-system").List(ctx, metav1.ListOptions{}) //nolint:staticcheck
	if err != nil || len(eps.Items) != 0 {
		t.Fatalf("list endpoints: %v %v", eps, err)
	}
	cms, err := ts.cs.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{})
	if err != nil || len(cms.Items) != 0 {
		t.Fatalf("list configmaps: %v %v", cms, err)
	}
	nps, err := ts.cs.NetworkingV1().NetworkPolicies("").List(ctx, metav1.ListOptions{})
	if err != nil || len(nps.Items) != 0 {
		t.Fatalf("list network policies: %v %v", nps, err)
	}
	// A namespace-scoped path of a cluster-scoped resource does not exist.
	if err := ts.cs.CoreV1().RESTClient().Get().AbsPath("/api/v1/namespaces/default/nodes").Do(ctx).Error(); !apierrors.IsNotFound(err) {
		t.Fatalf("namespaced nodes: %v", err)
	}
}

// TestKubeAPIHistoryNeverLoses checks the history's bookkeeping on its own, with writes that
// land out of resourceVersion order (as concurrent writers to the store make them), writes that
// never land (failed) and resourceVersions that belong to other resources: from any list, a
// watch from the list's resourceVersion — or from the resourceVersion of the last event a
// client saw — replays to exactly the final state; with writes in order, it starts exactly
// where the list was taken.
func TestKubeAPIHistoryNeverLoses(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	res := kapiLookupResource("pods")
	for trial := 0; trial < 300; trial++ {
		reorder := trial%3 != 0
		capacity := 1 << 20
		if trial%4 == 1 {
			capacity = 8
		}
		c := &kapiCache{res: res, objs: map[Key]*kapiObj{}, capacity: capacity, changed: make(chan struct{}),
			pos: 1, floorPos: 1, floorExact: true, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		truth := map[Key]int64{}
		uids := map[Key]int{}
		type pending struct {
			rv  int64
			key Key
		}
		var inflight []pending
		rv := int64(1)
		type snap struct {
			state      map[Key]int64
			label, idx int64
			lastSeen   int64 // the resourceVersion of the last entry before idx, as a client would record it
		}
		var snaps []snap
		land := func(p pending) {
			// The write's effect is decided when it lands, like the tracker's.
			uid := func() types.UID { return types.UID(fmt.Sprintf("%s-%d", p.key.Name, uids[p.key])) }
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: p.key.Namespace, Name: p.key.Name, ResourceVersion: strconv.FormatInt(p.rv, 10)}}
			var ev watch.Event
			if _, ok := truth[p.key]; !ok {
				uids[p.key]++
				pod.UID = uid()
				ev = watch.Event{Type: watch.Added, Object: pod}
				truth[p.key] = p.rv
			} else if rng.Intn(3) == 0 {
				pod.UID = uid()
				ev = watch.Event{Type: watch.Deleted, Object: pod}
				delete(truth, p.key)
			} else {
				pod.UID = uid()
				ev = watch.Event{Type: watch.Modified, Object: pod}
				truth[p.key] = p.rv
			}
			c.mu.Lock()
			c.apply(ev)
			c.mu.Unlock()
		}
		for step := 0; step < 400; step++ {
			switch r := rng.Intn(10); {
			case r < 5: // a writer takes a resourceVersion
				rv++
				inflight = append(inflight, pending{rv, Key{Namespace: "ns", Name: fmt.Sprintf("o%d", rng.Intn(12))}})
			case r == 5: // a resourceVersion of another resource, or a write that fails
				rv++
			case r < 9 && len(inflight) > 0: // a write lands
				i := 0
				if reorder {
					i = rng.Intn(len(inflight))
				}
				p := inflight[i]
				inflight = append(inflight[:i:i], inflight[i+1:]...)
				land(p)
			default: // a list
				c.mu.Lock()
				st := map[Key]int64{}
				for k, o := range c.objs {
					st[k] = o.rv
				}
				idx := c.next()
				label, ok := c.labelAt(idx)
				last := int64(-1)
				if idx > c.base {
					last = c.hist[idx-1-c.base].obj.rv
				}
				c.mu.Unlock()
				if ok {
					snaps = append(snaps, snap{st, label, idx, last})
				}
			}
		}
		for _, p := range inflight {
			land(p)
		}
		final := map[Key]int64{}
		for k, o := range c.objs {
			final[k] = o.rv
		}
		if fmt.Sprint(final) != fmt.Sprint(truth) {
			t.Fatalf("trial %d: cache %v, truth %v", trial, final, truth)
		}
		replay := func(s snap, from int64, what string) {
			st := map[Key]int64{}
			for k, v := range s.state {
				st[k] = v
			}
			start, ok := c.startIndex(from)
			if !ok {
				return // 410: the client relists
			}
			if start > s.idx {
				t.Fatalf("trial %d: a watch from %s %d starts at %d, after the list's position %d", trial, what, from, start, s.idx)
			}
			if !reorder && what == "label" && start != s.idx {
				t.Fatalf("trial %d: writes in order, but a watch from the list's label %d starts at %d, not %d", trial, from, start, s.idx)
			}
			for _, e := range c.hist[start-c.base:] {
				if e.typ == watch.Deleted {
					delete(st, e.obj.key)
				} else {
					st[e.obj.key] = e.obj.rv
				}
			}
			if fmt.Sprint(st) != fmt.Sprint(final) {
				t.Fatalf("trial %d: list at %d + watch from %s %d gives %v, want %v", trial, s.label, what, from, st, final)
			}
		}
		for _, s := range snaps {
			replay(s, s.label, "label")
			if s.lastSeen >= 0 {
				replay(s, s.lastSeen, "last event")
			}
		}
	}
}

// TestKubeAPIWireFormat: lists and watch events carry apiVersion and kind, a list carries its
// resourceVersion, a watch is newline-delimited JSON events, and a watch with timeoutSeconds ends
// on time with a BOOKMARK that brings the client's resourceVersion up to date.
func TestKubeAPIWireFormat(t *testing.T) {
	ts := startKapiTest(t, 0)
	ctx := context.Background()
	c := ts.store.Client()
	_, _ = c.DiscoveryV1().EndpointSlices("default").Create(ctx, kapiSlice("default", "a"), metav1.CreateOptions{})
	rc := ts.cs.CoreV1().RESTClient()
	b, err := rc.Get().AbsPath("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Kind, APIVersion string
		Metadata         struct{ ResourceVersion string }
		Items            []struct{ Kind, APIVersion string }
	}
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	if list.Kind != "EndpointSliceList" || list.APIVersion != "discovery.k8s.io/v1" || list.Metadata.ResourceVersion == "" ||
		len(list.Items) != 1 || list.Items[0].Kind != "EndpointSlice" || list.Items[0].APIVersion != "discovery.k8s.io/v1" {
		t.Fatalf("list: %s", b)
	}
	// A change in another namespace is not this watcher's business, but a bookmark tells it
	// how far the stream has got.
	_, _ = c.DiscoveryV1().EndpointSlices("default").Create(ctx, kapiSlice("default", "b"), metav1.CreateOptions{})
	other, _ := c.DiscoveryV1().EndpointSlices("other").Create(ctx, kapiSlice("other", "c"), metav1.CreateOptions{})
	start := time.Now()
	body, err := rc.Get().AbsPath("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices").
		Param("watch", "1").Param("resourceVersion", list.Metadata.ResourceVersion).
		Param("timeoutSeconds", "1").Param("allowWatchBookmarks", "true").Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	all, err := io.ReadAll(body)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 900*time.Millisecond || d > 5*time.Second {
		t.Fatalf("a watch with timeoutSeconds=1 lasted %s", d)
	}
	lines := strings.Split(strings.TrimSpace(string(all)), "\n")
	var types []string
	for _, l := range lines {
		var ev struct {
			Type   string
			Object struct {
				Kind, APIVersion string
				Metadata         struct{ Name, ResourceVersion string }
			}
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if ev.Object.Kind != "EndpointSlice" || ev.Object.APIVersion != "discovery.k8s.io/v1" || ev.Object.Metadata.ResourceVersion == "" {
			t.Fatalf("event %s", l)
		}
		types = append(types, ev.Type+" "+ev.Object.Metadata.Name)
		if ev.Type == "BOOKMARK" && ev.Object.Metadata.ResourceVersion != other.ResourceVersion {
			t.Fatalf("bookmark at %s, want %s", ev.Object.Metadata.ResourceVersion, other.ResourceVersion)
		}
	}
	if got := strings.Join(types, ","); got != "ADDED b,BOOKMARK " {
		t.Fatalf("events %s", got)
	}
}
