package lab

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// TestWatchSlowConsumer: the tracker's own watchers panic once 100 events wait; the store's do
// not, however many writes a consumer that does not read yet falls behind by, and deliver every
// event in order.
func TestWatchSlowConsumer(t *testing.T) {
	s, err := NewStore("")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c := s.Client()
	w, err := c.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	const n = 5000
	for i := 0; i < n; i++ {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("cm-%d", i)}}
		if _, err := c.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("channel closed after %d events", i)
			}
			if name := ev.Object.(*corev1.ConfigMap).Name; ev.Type != watch.Added || name != fmt.Sprintf("cm-%d", i) {
				t.Fatalf("event %d: %s %s", i, ev.Type, name)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d of %d events", i, n)
		}
	}
}

// TestWatchFromNowManyObjects: a watch without a resourceVersion starts with every existing
// object, more than a tracker channel holds.
func TestWatchFromNowManyObjects(t *testing.T) {
	s, _ := NewStore("")
	ctx := context.Background()
	c := s.Client()
	for i := 0; i < 300; i++ {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("p-%d", i)}}
		if _, err := c.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	w, err := c.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "late"}}
	if _, err := c.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := 0
	for ev := range w.ResultChan() {
		got++
		if ev.Object.(*corev1.Pod).Name == "late" {
			break
		}
	}
	if got != 301 {
		t.Fatalf("%d events, want 300 existing pods and the new one", got)
	}
}

// TestWatchStop: Stop closes the result channel and ends the drainer goroutine.
func TestWatchStop(t *testing.T) {
	s, _ := NewStore("")
	ctx := context.Background()
	before := runtime.NumGoroutine()
	var ws []watch.Interface
	for i := 0; i < 20; i++ {
		w, err := s.Client().CoreV1().Services("").Watch(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	for _, w := range ws {
		w.Stop()
		select {
		case _, ok := <-w.ResultChan():
			if ok {
				t.Fatal("an event after Stop")
			}
		case <-time.After(2 * time.Second):
			t.Fatal("ResultChan not closed after Stop")
		}
	}
	// Writes after Stop reach no one and do not block.
	for i := 0; i < 500; i++ {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("s-%d", i)}}
		if _, err := s.Client().CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after Stop, %d before the watches", n, before)
	}
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	if len(s.watchers) != 0 {
		t.Fatalf("%d watchers still registered", len(s.watchers))
	}
}

// TestInformerBulk: an informer whose handler is slow keeps up with a bulk of writes and ends
// with every object.
func TestInformerBulk(t *testing.T) {
	s, _ := NewStore("")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := informers.NewSharedInformerFactory(s.Client(), 0)
	inf := f.Core().V1().Pods().Informer()
	seen := make(chan struct{}, 10000)
	inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(interface{}) {
		time.Sleep(100 * time.Microsecond)
		seen <- struct{}{}
	}})
	f.Start(ctx.Done())
	f.WaitForCacheSync(ctx.Done())
	const n = 2000
	for i := 0; i < n; i++ {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("p-%d", i)}}
		if _, err := s.Client().CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		select {
		case <-seen:
		case <-time.After(10 * time.Second):
			t.Fatalf("informer saw %d of %d pods", i, n)
		}
	}
	cancel()
	f.Shutdown()
}

// TestStatusSubresource: an update keeps the stored status and a status update keeps the stored
// object, so writers with older copies do not undo each other.
func TestStatusSubresource(t *testing.T) {
	s, _ := NewStore("")
	ctx := context.Background()
	svcs := s.Client().CoreV1().Services("default")
	created, err := svcs.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "lb"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stale := created.DeepCopy()
	// A controller writes the status…
	withIP := created.DeepCopy()
	withIP.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "172.31.255.1"}}
	if _, err := svcs.UpdateStatus(ctx, withIP, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// …while apply, holding the older copy, changes the spec.
	stale.Spec.Type = corev1.ServiceTypeNodePort
	stale.Labels = map[string]string{"a": "b"}
	if _, err := svcs.Update(ctx, stale, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, _ := svcs.Get(ctx, "lb", metav1.GetOptions{})
	if got.Spec.Type != corev1.ServiceTypeNodePort || got.Labels["a"] != "b" || len(got.Status.LoadBalancer.Ingress) != 1 {
		t.Fatalf("after an update with a stale status: %+v %v %+v", got.Spec.Type, got.Labels, got.Status)
	}
	// A status write from a copy older than the spec change keeps the spec.
	withIP.Status.LoadBalancer.Ingress = nil
	if _, err := svcs.UpdateStatus(ctx, withIP, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, _ = svcs.Get(ctx, "lb", metav1.GetOptions{})
	if got.Spec.Type != corev1.ServiceTypeNodePort || got.Labels["a"] != "b" || len(got.Status.LoadBalancer.Ingress) != 0 {
		t.Fatalf("after a status update with a stale spec: %+v %v %+v", got.Spec.Type, got.Labels, got.Status)
	}
	// Pods: a kubelet's status write does not undo a deletion timestamp.
	pods := s.Client().CoreV1().Pods("default")
	p, _ := pods.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "p"}}, metav1.CreateOptions{})
	kubeletCopy := p.DeepCopy()
	now := metav1.Now()
	p.DeletionTimestamp = &now
	if _, err := pods.Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubeletCopy.Status.Phase = corev1.PodRunning
	if _, err := pods.UpdateStatus(ctx, kubeletCopy, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	gp, _ := pods.Get(ctx, "p", metav1.GetOptions{})
	if gp.DeletionTimestamp == nil || gp.Status.Phase != corev1.PodRunning {
		t.Fatalf("pod: deletionTimestamp %v phase %s", gp.DeletionTimestamp, gp.Status.Phase)
	}
}
