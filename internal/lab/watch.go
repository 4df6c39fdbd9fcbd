package lab

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	k8stesting "k8s.io/client-go/testing"
)

// The object tracker delivers watch events through channels of 100 events (watch.DefaultChanSize)
// and panics when one is full, which a busy lab (many watchers, bulk applies, a slow consumer)
// reaches easily. Every watch the store serves is therefore a queuedWatcher: one goroutine
// drains the tracker's channel into an unbounded queue as fast as events come and hands them to
// the consumer at the consumer's pace. Writers are paced by the drainers, never by consumers: a
// write returns only once no tracker channel is more than half full.

// queueHighWater is how full a tracker channel may be before a writer waits for its drainer.
var queueHighWater = int(watch.DefaultChanSize) / 2

// queuedWatcher is a watch.Interface with an unbounded buffer in front of the tracker's watcher.
type queuedWatcher struct {
	src  watch.Interface
	in   <-chan watch.Event
	out  chan watch.Event
	stop chan struct{}
	once sync.Once
	done chan struct{} // closed when the drainer has exited
}

// newQueuedWatcher starts draining src; initial events are delivered before src's.
func newQueuedWatcher(src watch.Interface, initial []watch.Event) *queuedWatcher {
	w := &queuedWatcher{src: src, in: src.ResultChan(), out: make(chan watch.Event),
		stop: make(chan struct{}), done: make(chan struct{})}
	go w.loop(initial)
	return w
}

func (w *queuedWatcher) loop(queue []watch.Event) {
	defer close(w.done)
	defer close(w.out)
	in := w.in
	for {
		var out chan watch.Event
		var head watch.Event
		if len(queue) > 0 {
			out, head = w.out, queue[0]
		} else if in == nil {
			return // the source ended and everything was delivered
		}
		select {
		case ev, ok := <-in:
			if !ok {
				in = nil
				continue
			}
			queue = append(queue, ev)
		case out <- head:
			queue[0] = watch.Event{}
			queue = queue[1:]
			if len(queue) == 0 {
				queue = nil // let a large backlog's array go
			}
		case <-w.stop:
			return
		}
	}
}

// ResultChan delivers the events in the order the tracker produced them.
func (w *queuedWatcher) ResultChan() <-chan watch.Event { return w.out }

// Stop ends the watch: the tracker stops sending, the drainer exits and ResultChan is closed.
func (w *queuedWatcher) Stop() {
	w.once.Do(func() {
		w.src.Stop()
		close(w.stop)
	})
}

// backlog is how many events wait in the tracker's channel.
func (w *queuedWatcher) backlog() int {
	select {
	case <-w.done:
		return 0
	default:
		return len(w.in)
	}
}

// watch serves every watch through a queuedWatcher. A watch from "now" (no resourceVersion, or
// "0") gets the existing objects as Added events from the queue too, not from the tracker's
// channel, so no number of objects can overflow it.
func (s *Store) watch(action k8stesting.Action) (bool, watch.Interface, error) {
	wa, ok := action.(k8stesting.WatchActionImpl)
	if !ok {
		return false, nil, nil
	}
	gvr, ns, opts := action.GetResource(), action.GetNamespace(), wa.ListOptions
	var initial []watch.Event
	if rv := opts.ResourceVersion; rv == "" || rv == "0" {
		if gvk, ok := kindOf(gvr); ok {
			list, err := s.client.Tracker().List(gvr, gvk, ns)
			if err != nil {
				return true, nil, err
			}
			lm, err := meta.ListAccessor(list)
			if err != nil {
				return true, nil, err
			}
			items, err := meta.ExtractList(list)
			if err != nil {
				return true, nil, err
			}
			for _, it := range items {
				initial = append(initial, watch.Event{Type: watch.Added, Object: it})
			}
			opts.ResourceVersion = lm.GetResourceVersion()
		}
	}
	src, err := s.client.Tracker().Watch(gvr, ns, opts)
	if err != nil {
		return true, nil, err
	}
	w := newQueuedWatcher(src, initial)
	s.watchMu.Lock()
	if s.watchers == nil {
		s.watchers = map[*queuedWatcher]bool{}
	}
	s.watchers[w] = true
	s.watchMu.Unlock()
	go func() {
		<-w.done
		s.watchMu.Lock()
		delete(s.watchers, w)
		s.watchMu.Unlock()
	}()
	return true, w, nil
}

// paceWriters returns once no watcher's tracker channel is more than half full: drainers only
// append to memory, so this waits microseconds, and only under a burst of writes.
func (s *Store) paceWriters() {
	s.watchMu.Lock()
	var busy []*queuedWatcher
	for w := range s.watchers {
		if w.backlog() > queueHighWater {
			busy = append(busy, w)
		}
	}
	s.watchMu.Unlock()
	for _, w := range busy {
		for w.backlog() > queueHighWater {
			time.Sleep(20 * time.Microsecond)
		}
	}
}

// kindOf finds the kind of a resource the store persists.
func kindOf(gvr schema.GroupVersionResource) (schema.GroupVersionKind, bool) {
	for _, k := range storedKinds {
		if k.gvr == gvr {
			return k.gvk, true
		}
	}
	return schema.GroupVersionKind{}, false
}
