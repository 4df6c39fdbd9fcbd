package flows

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Directions and verdicts of a Record.
const (
	Ingress = "ingress"
	Egress  = "egress"

	Denied = "denied"
)

// Record is one flow verdict as `podnet flows` shows it: a packet a node's NetworkPolicy decided
// on, with the pods and policies it was resolved to.
type Record struct {
	Time time.Time `json:"time"`
	// Node is the node whose policy table gave the verdict.
	Node string `json:"node"`
	// Direction is Ingress (the destination pod's policies decided) or Egress (the source pod's).
	Direction string `json:"direction"`
	// Verdict is Denied (the only verdict logged for now).
	Verdict string `json:"verdict"`
	// Src and Dst are the packet's addresses.
	Src netip.Addr `json:"src"`
	Dst netip.Addr `json:"dst"`
	// SrcPod and DstPod are "namespace/name", or "" when the address is no known pod.
	SrcPod string `json:"srcPod,omitempty"`
	DstPod string `json:"dstPod,omitempty"`
	// Protocol is "TCP", "UDP", "SCTP", "ICMP" or a protocol number (see ProtocolName).
	Protocol string `json:"protocol"`
	// SrcPort and DstPort are zero for protocols without ports.
	SrcPort uint16 `json:"srcPort,omitempty"`
	DstPort uint16 `json:"dstPort,omitempty"`
	// Policies are the "namespace/name" of the policies that decided: for a denial, those that
	// isolate the pod in this direction, none of which allowed the packet.
	Policies []string `json:"policies,omitempty"`
}

// TimeFormat is how Record.String prints times (always in UTC).
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// String formats the record on one line for the CLI, for example
//
//	2026-11-26T10:00:00.123Z node-1 DENIED ingress TCP x/a (10.244.1.5:40000) -> y/b (10.244.2.7:80) by y/deny-all
//
// An endpoint that is no known pod is just its address; ports are left out for protocols without
// them; "by …" lists the deciding policies, comma-separated, and is left out when there are none.
func (r Record) String() string {
	var b strings.Builder
	b.WriteString(r.Time.UTC().Format(TimeFormat))
	for _, w := range []string{r.Node, strings.ToUpper(r.Verdict), r.Direction, r.Protocol} {
		b.WriteByte(' ')
		if w == "" {
			w = "-"
		}
		b.WriteString(w)
	}
	b.WriteByte(' ')
	b.WriteString(endpoint(r.SrcPod, r.Src, r.SrcPort))
	b.WriteString(" -> ")
	b.WriteString(endpoint(r.DstPod, r.Dst, r.DstPort))
	if len(r.Policies) > 0 {
		b.WriteString(" by ")
		b.WriteString(strings.Join(r.Policies, ","))
	}
	return b.String()
}

func endpoint(pod string, addr netip.Addr, port uint16) string {
	a := "?"
	switch {
	case addr.IsValid() && port != 0:
		a = netip.AddrPortFrom(addr, port).String()
	case addr.IsValid():
		a = addr.String()
	case port != 0:
		a = "?:" + strconv.Itoa(int(port))
	}
	if pod == "" {
		return a
	}
	return pod + " (" + a + ")"
}

// Filter selects records. Zero fields select everything.
type Filter struct {
	// Since keeps records at or after this time.
	Since time.Time
	// Verdict keeps records with this verdict ("denied").
	Verdict string
	// Node keeps records from this node.
	Node string
	// Pod ("namespace/name") keeps records whose source or destination is this pod.
	Pod string
	// Limit, if positive, keeps only the newest Limit of the records that match (List still
	// returns them oldest first). Match ignores it.
	Limit int
}

// Match reports whether r passes the filter (Limit aside).
func (f Filter) Match(r Record) bool {
	return (f.Since.IsZero() || !r.Time.Before(f.Since)) &&
		(f.Verdict == "" || r.Verdict == f.Verdict) &&
		(f.Node == "" || r.Node == f.Node) &&
		(f.Pod == "" || r.SrcPod == f.Pod || r.DstPod == f.Pod)
}

// SubscriberBuffer is how many records a subscriber's channel holds; a subscriber further behind
// than that loses records.
const SubscriberBuffer = 256

// LogStats counts what a Log has seen. Counters only grow, except Len and Subscribers.
type LogStats struct {
	// Added is how many records were ever added; Evicted how many of them the ring has
	// overwritten to make room.
	Added, Evicted uint64
	// Len is how many records the log holds now, at most Capacity.
	Len, Capacity int
	// Subscribers is how many subscriptions are open now.
	Subscribers int
	// SubscriberDrops is how many records subscribers lost because their channel was full.
	SubscriberDrops uint64
}

// Log keeps the most recent records in a fixed-size ring and fans new ones out to subscribers. It
// is safe for concurrent use. Add never blocks on a subscriber.
type Log struct {
	mu      sync.Mutex
	ring    []Record // ring[(start+i)%len(ring)] is the i-th oldest of n records
	start   int
	n       int
	added   uint64
	evicted uint64
	drops   uint64
	subs    map[*subscriber]struct{}
}

type subscriber struct {
	ch    chan Record
	match func(Record) bool // nil matches all
}

// NewLog returns an empty log that keeps the newest capacity records (at least 1).
func NewLog(capacity int) *Log {
	return &Log{ring: make([]Record, max(capacity, 1)), subs: map[*subscriber]struct{}{}}
}

// Add appends r, overwriting the oldest record when the log is full, and sends it to every
// subscriber it matches whose channel has room; the others lose it (counted in
// LogStats.SubscriberDrops). Records should be added in time order: List returns them in the
// order they were added.
func (l *Log) Add(r Record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n < len(l.ring) {
		l.ring[(l.start+l.n)%len(l.ring)] = r
		l.n++
	} else {
		l.ring[l.start] = r
		l.start = (l.start + 1) % len(l.ring)
		l.evicted++
	}
	l.added++
	for s := range l.subs {
		if s.match != nil && !s.match(r) {
			continue
		}
		select {
		case s.ch <- r:
		default:
			l.drops++
		}
	}
}

// List returns the records that pass f, oldest first. With f.Limit > 0 it returns only the newest
// f.Limit of them.
func (l *Log) List(f Filter) []Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.listLocked(f)
}

func (l *Log) listLocked(f Filter) []Record {
	var out []Record
	// Walk newest to oldest so Limit stops early, then reverse.
	for i := l.n - 1; i >= 0; i-- {
		if f.Limit > 0 && len(out) >= f.Limit {
			break
		}
		if r := l.ring[(l.start+i)%len(l.ring)]; f.Match(r) {
			out = append(out, r)
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// Subscribe returns a channel that receives every record added from now on, until ctx is done;
// then the channel is closed. A subscriber that falls more than SubscriberBuffer records behind
// loses records rather than slowing Add.
func (l *Log) Subscribe(ctx context.Context) <-chan Record {
	_, ch := l.subscribe(ctx, nil)
	return ch
}

// Follow returns the records that pass f now (as List does) and a channel of the records added
// from then on that pass f (Since, Verdict, Node, Pod; Limit applies only to the backlog), taken
// together so that no record is missed or repeated between the two. The channel is closed when ctx
// is done and, like Subscribe's, loses records when its reader falls behind.
func (l *Log) Follow(ctx context.Context, f Filter) (backlog []Record, live <-chan Record) {
	return l.subscribe(ctx, &f)
}

// subscribe registers a subscriber for the records passing f (nil: all) and, with a filter,
// returns the current backlog too, under one lock.
func (l *Log) subscribe(ctx context.Context, f *Filter) ([]Record, <-chan Record) {
	s := &subscriber{ch: make(chan Record, SubscriberBuffer)}
	l.mu.Lock()
	var backlog []Record
	if f != nil {
		s.match = f.Match
		backlog = l.listLocked(*f)
	}
	if ctx.Err() != nil {
		l.mu.Unlock()
		close(s.ch)
		return backlog, s.ch
	}
	l.subs[s] = struct{}{}
	l.mu.Unlock()
	context.AfterFunc(ctx, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		delete(l.subs, s)
		close(s.ch) // Add sends only under l.mu, so nothing sends after this
	})
	return backlog, s.ch
}

// Stats returns the log's counters.
func (l *Log) Stats() LogStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return LogStats{
		Added:           l.added,
		Evicted:         l.evicted,
		Len:             l.n,
		Capacity:        len(l.ring),
		Subscribers:     len(l.subs),
		SubscriberDrops: l.drops,
	}
}
