package dns

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

const byServiceIndex = "podnet-dns-service"

type keyKind uint8

const (
	keyService keyKind = iota
	keyNamespace
	keyPod
)

type watchKey struct {
	kind      keyKind
	namespace string
	name      string
}

// keyQueue collects the keys informer events name; the worker takes them all at once, so a burst
// of events becomes one index update (one snapshot).
type keyQueue struct {
	mu     sync.Mutex
	keys   map[watchKey]struct{}
	signal chan struct{}
}

func newKeyQueue() *keyQueue {
	return &keyQueue{keys: map[watchKey]struct{}{}, signal: make(chan struct{}, 1)}
}

func (q *keyQueue) add(k watchKey) {
	q.mu.Lock()
	q.keys[k] = struct{}{}
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *keyQueue) take() map[watchKey]struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := q.keys
	q.keys = map[watchKey]struct{}{}
	return k
}

// Watch keeps the index current from the cluster through client-go informers: Services,
// EndpointSlices and Namespaces, and Pods in PodModeVerified. It returns once the informers have
// synced and the index has been fully built (marking it ready), or with an error if ctx ends
// first; updates then continue in the background until ctx is done. Event handlers only record
// which Service, Namespace or Pod changed; a worker re-derives exactly those from the informers'
// caches, as one index update per batch.
func (ix *Index) Watch(ctx context.Context, client kubernetes.Interface) error {
	factory := informers.NewSharedInformerFactory(client, 0)
	svcInf := factory.Core().V1().Services()
	sliceInf := factory.Discovery().V1().EndpointSlices()
	nsInf := factory.Core().V1().Namespaces()
	q := newKeyQueue()

	if err := sliceInf.Informer().AddIndexers(cache.Indexers{byServiceIndex: func(obj any) ([]string, error) {
		if k, ok := sliceService(obj); ok {
			return []string{k.namespace + "/" + k.name}, nil
		}
		return nil, nil
	}}); err != nil {
		return err
	}
	objKey := func(kind keyKind) func(any) {
		return func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if o, ok := obj.(interface {
				GetNamespace() string
				GetName() string
			}); ok {
				q.add(watchKey{kind: kind, namespace: o.GetNamespace(), name: o.GetName()})
			}
		}
	}
	onSlice := func(obj any) {
		if k, ok := sliceService(obj); ok {
			q.add(k)
		}
	}
	handlers := []struct {
		inf cache.SharedIndexInformer
		f   func(any)
	}{
		{svcInf.Informer(), objKey(keyService)},
		{sliceInf.Informer(), onSlice},
		{nsInf.Informer(), objKey(keyNamespace)},
	}
	var podLister listerscorev1.PodLister
	if ix.podMode == PodModeVerified {
		podInf := factory.Core().V1().Pods()
		podLister = podInf.Lister()
		handlers = append(handlers, struct {
			inf cache.SharedIndexInformer
			f   func(any)
		}{podInf.Informer(), objKey(keyPod)})
	}
	for _, h := range handlers {
		f := h.f
		if _, err := h.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    f,
			UpdateFunc: func(old, cur any) { f(old); f(cur) },
			DeleteFunc: f,
		}); err != nil {
			return err
		}
	}
	svcLister, nsLister := svcInf.Lister(), nsInf.Lister()
	sliceIndexer := sliceInf.Informer().GetIndexer()

	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			factory.Shutdown()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("dns: cache for %v did not sync", typ)
		}
	}

	// Everything the queue holds so far is in the listing below; what arrives later is queued
	// again (handlers run after the cache has the object), and re-deriving is idempotent.
	q.take()
	svcs, err := svcLister.List(labels.Everything())
	if err != nil {
		factory.Shutdown()
		return err
	}
	var slices []*discoveryv1.EndpointSlice
	for _, o := range sliceIndexer.List() {
		if s, ok := o.(*discoveryv1.EndpointSlice); ok {
			slices = append(slices, s)
		}
	}
	var pods []*corev1.Pod
	if podLister != nil {
		if pods, err = podLister.List(labels.Everything()); err != nil {
			factory.Shutdown()
			return err
		}
	}
	nss, err := nsLister.List(labels.Everything())
	if err != nil {
		factory.Shutdown()
		return err
	}
	ix.Replace(svcs, slices, pods, nss)

	slicesOf := func(ns, name string) []*discoveryv1.EndpointSlice {
		objs, _ := sliceIndexer.ByIndex(byServiceIndex, ns+"/"+name)
		out := make([]*discoveryv1.EndpointSlice, 0, len(objs))
		for _, o := range objs {
			if s, ok := o.(*discoveryv1.EndpointSlice); ok {
				out = append(out, s)
			}
		}
		return out
	}
	go func() {
		defer factory.Shutdown()
		for {
			select {
			case <-ctx.Done():
				return
			case <-q.signal:
			}
			keys := q.take()
			if len(keys) == 0 {
				continue
			}
			ix.update(func(t *txn) {
				for k := range keys {
					switch k.kind {
					case keyService:
						owner := ownerService(k.namespace, k.name)
						svc, err := svcLister.Services(k.namespace).Get(k.name)
						if apierrors.IsNotFound(err) {
							t.setOwner(owner, nil)
						} else if err == nil {
							t.setOwner(owner, ix.serviceRecords(svc, slicesOf(k.namespace, k.name)))
						}
					case keyNamespace:
						_, err := nsLister.Get(k.name)
						if apierrors.IsNotFound(err) {
							t.setOwner(ownerNamespace(k.name), nil)
						} else if err == nil {
							t.setOwner(ownerNamespace(k.name), ix.namespaceRecords(k.name))
						}
					case keyPod:
						pod, err := podLister.Pods(k.namespace).Get(k.name)
						if apierrors.IsNotFound(err) {
							t.setOwner(ownerPod(k.namespace, k.name), nil)
						} else if err == nil {
							t.setOwner(ownerPod(k.namespace, k.name), ix.podRecords(pod))
						}
					}
				}
			})
		}
	}()
	return nil
}

// sliceService names the Service an EndpointSlice belongs to.
func sliceService(obj any) (watchKey, bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return watchKey{}, false
	}
	name := s.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return watchKey{}, false
	}
	return watchKey{kind: keyService, namespace: s.Namespace, name: name}, true
}
