package flows

import (
	"context"
	"encoding/json"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 26, 10, 0, 0, 123_000_000, time.UTC)

// rec makes a record i seconds after t0 on node, from pod src to pod dst.
func rec(i int, node, src, dst string) Record {
	return Record{
		Time: t0.Add(time.Duration(i) * time.Second), Node: node, Direction: Ingress, Verdict: Denied,
		Src: netip.MustParseAddr("10.244.1.5"), Dst: netip.MustParseAddr("10.244.2.7"),
		SrcPod: src, DstPod: dst, Protocol: "TCP", SrcPort: uint16(40000 + i), DstPort: 80,
	}
}

// ids identifies records by their source port offset (their i in rec).
func ids(rs []Record) []int {
	var out []int
	for _, r := range rs {
		out = append(out, int(r.SrcPort)-40000)
	}
	return out
}

func TestLogRing(t *testing.T) {
	tests := []struct {
		name     string
		capacity int
		add      int
		want     []int
		evicted  uint64
	}{
		{name: "empty", capacity: 3, add: 0, want: nil},
		{name: "partly full", capacity: 3, add: 2, want: []int{0, 1}},
		{name: "exactly full", capacity: 3, add: 3, want: []int{0, 1, 2}},
		{name: "wrapped once", capacity: 3, add: 4, want: []int{1, 2, 3}, evicted: 1},
		{name: "wrapped many times", capacity: 3, add: 10, want: []int{7, 8, 9}, evicted: 7},
		{name: "capacity one", capacity: 1, add: 5, want: []int{4}, evicted: 4},
		{name: "capacity zero means one", capacity: 0, add: 2, want: []int{1}, evicted: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLog(tt.capacity)
			for i := range tt.add {
				l.Add(rec(i, "n1", "x/a", "y/b"))
			}
			if got := ids(l.List(Filter{})); !slices.Equal(got, tt.want) {
				t.Errorf("List = %v, want %v", got, tt.want)
			}
			st := l.Stats()
			if st.Added != uint64(tt.add) || st.Evicted != tt.evicted || st.Len != len(tt.want) || st.Capacity != max(tt.capacity, 1) {
				t.Errorf("Stats = %+v, want added %d evicted %d len %d", st, tt.add, tt.evicted, len(tt.want))
			}
		})
	}
}

func TestLogFilter(t *testing.T) {
	l := NewLog(5)
	// Seven records into five slots: 0 and 1 are gone.
	for i, r := range []Record{
		rec(0, "n1", "x/a", "y/b"),
		rec(1, "n1", "x/a", "y/b"),
		rec(2, "n1", "x/a", "y/b"),
		rec(3, "n2", "", "y/b"),
		rec(4, "n1", "y/b", "x/c"),
		rec(5, "n2", "x/c", ""),
		rec(6, "n1", "x/a", "x/c"),
	} {
		if i == 5 {
			r.Verdict = "allowed"
		}
		l.Add(r)
	}
	tests := []struct {
		name string
		f    Filter
		want []int
	}{
		{name: "all", f: Filter{}, want: []int{2, 3, 4, 5, 6}},
		{name: "since is inclusive", f: Filter{Since: t0.Add(4 * time.Second)}, want: []int{4, 5, 6}},
		{name: "since after all", f: Filter{Since: t0.Add(time.Hour)}, want: nil},
		{name: "verdict", f: Filter{Verdict: Denied}, want: []int{2, 3, 4, 6}},
		{name: "node", f: Filter{Node: "n2"}, want: []int{3, 5}},
		{name: "pod either side", f: Filter{Pod: "y/b"}, want: []int{2, 3, 4}},
		{name: "pod as source only", f: Filter{Pod: "x/a"}, want: []int{2, 6}},
		{name: "unknown pod", f: Filter{Pod: "z/z"}, want: nil},
		{name: "limit keeps newest", f: Filter{Limit: 2}, want: []int{5, 6}},
		{name: "limit over matches", f: Filter{Pod: "x/c", Limit: 2}, want: []int{5, 6}},
		{name: "limit larger than log", f: Filter{Limit: 100}, want: []int{2, 3, 4, 5, 6}},
		{name: "combined", f: Filter{Node: "n1", Verdict: Denied, Pod: "x/c", Since: t0.Add(3 * time.Second)}, want: []int{4, 6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ids(l.List(tt.f)); !slices.Equal(got, tt.want) {
				t.Errorf("List(%+v) = %v, want %v", tt.f, got, tt.want)
			}
		})
	}
}

func TestLogListIsACopy(t *testing.T) {
	l := NewLog(2)
	l.Add(rec(0, "n1", "x/a", "y/b"))
	got := l.List(Filter{})
	got[0].Node = "changed"
	if l.List(Filter{})[0].Node != "n1" {
		t.Error("List shares storage with the log")
	}
}

// recv reads n records from ch or fails after a second.
func recv(t *testing.T, ch <-chan Record, n int) []Record {
	t.Helper()
	var out []Record
	for len(out) < n {
		select {
		case r, ok := <-ch:
			if !ok {
				t.Fatalf("channel closed after %d of %d records", len(out), n)
			}
			out = append(out, r)
		case <-time.After(time.Second):
			t.Fatalf("got %d of %d records", len(out), n)
		}
	}
	return out
}

func waitClosed(t *testing.T, ch <-chan Record) {
	t.Helper()
	deadline := time.After(time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("channel not closed after cancel")
		}
	}
}

func TestLogSubscribe(t *testing.T) {
	l := NewLog(4)
	l.Add(rec(0, "n1", "x/a", "y/b")) // before subscribing: not sent
	ctx, cancel := context.WithCancel(context.Background())
	a := l.Subscribe(ctx)
	b := l.Subscribe(ctx)
	if n := l.Stats().Subscribers; n != 2 {
		t.Fatalf("Subscribers = %d, want 2", n)
	}
	for i := 1; i <= 3; i++ {
		l.Add(rec(i, "n1", "x/a", "y/b"))
	}
	if got := ids(recv(t, a, 3)); !slices.Equal(got, []int{1, 2, 3}) {
		t.Errorf("subscriber a got %v", got)
	}
	if got := ids(recv(t, b, 3)); !slices.Equal(got, []int{1, 2, 3}) {
		t.Errorf("subscriber b got %v", got)
	}
	cancel()
	waitClosed(t, a)
	waitClosed(t, b)
	l.Add(rec(4, "n1", "x/a", "y/b")) // no subscriber left: must not panic on a closed channel
	if st := l.Stats(); st.Subscribers != 0 || st.SubscriberDrops != 0 {
		t.Errorf("Stats = %+v, want no subscribers and no drops", st)
	}

	done, cancelDone := context.WithCancel(context.Background())
	cancelDone()
	waitClosed(t, l.Subscribe(done))
}

func TestLogSlowSubscriberLoses(t *testing.T) {
	l := NewLog(10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	slow := l.Subscribe(ctx) // never read until the end
	fast := l.Subscribe(ctx)
	const n = SubscriberBuffer + 50
	var got []Record
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // no t.Fatal off the test goroutine: just collect
		defer wg.Done()
		for len(got) < n {
			select {
			case r := <-fast:
				got = append(got, r)
			case <-time.After(2 * time.Second):
				return
			}
		}
	}()
	addDone := make(chan struct{})
	go func() {
		defer close(addDone)
		for i := range n {
			l.Add(rec(i, "n1", "x/a", "y/b"))
			if i%32 == 0 {
				time.Sleep(time.Millisecond) // let the fast reader keep up
			}
		}
	}()
	select {
	case <-addDone:
	case <-time.After(5 * time.Second):
		t.Fatal("Add blocked on a slow subscriber")
	}
	wg.Wait()
	if len(got) != n {
		t.Fatalf("fast subscriber got %d records, want %d", len(got), n)
	}
	if d := l.Stats().SubscriberDrops; d != n-SubscriberBuffer {
		t.Errorf("SubscriberDrops = %d, want %d", d, n-SubscriberBuffer)
	}
	// The slow subscriber has the oldest SubscriberBuffer records, in order.
	first := recv(t, slow, SubscriberBuffer)
	if ids(first)[0] != 0 || ids(first)[SubscriberBuffer-1] != SubscriberBuffer-1 {
		t.Errorf("slow subscriber got %v…%v", ids(first)[0], ids(first)[SubscriberBuffer-1])
	}
}

func TestLogFollow(t *testing.T) {
	l := NewLog(10)
	for i := range 4 {
		l.Add(rec(i, "n1", "x/a", "y/b"))
	}
	l.Add(rec(4, "n2", "x/a", "y/b"))
	ctx, cancel := context.WithCancel(context.Background())
	backlog, live := l.Follow(ctx, Filter{Node: "n1", Limit: 2})
	if got := ids(backlog); !slices.Equal(got, []int{2, 3}) {
		t.Errorf("backlog = %v, want [2 3]", got)
	}
	l.Add(rec(5, "n2", "x/a", "y/b")) // filtered out
	l.Add(rec(6, "n1", "x/a", "y/b"))
	l.Add(rec(7, "n1", "x/a", "y/b"))
	l.Add(rec(8, "n1", "x/a", "y/b")) // Limit does not apply to live records
	if got := ids(recv(t, live, 3)); !slices.Equal(got, []int{6, 7, 8}) {
		t.Errorf("live = %v, want [6 7 8]", got)
	}
	cancel()
	waitClosed(t, live)
}

func TestLogConcurrent(t *testing.T) {
	l := NewLog(64)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				l.Add(rec(i, "n"+string(rune('0'+w)), "x/a", "y/b"))
			}
		}()
	}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, scancel := context.WithCancel(ctx)
			ch := l.Subscribe(sctx)
			for range 50 {
				select {
				case <-ch:
				case <-time.After(10 * time.Millisecond):
				}
				_ = l.List(Filter{Pod: "x/a", Limit: 10})
			}
			scancel()
		}()
	}
	wg.Wait()
	if st := l.Stats(); st.Added != 2000 || st.Len != 64 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestRecordString(t *testing.T) {
	base := rec(0, "node-1", "x/a", "y/b")
	base.Policies = []string{"y/deny-all"}
	tests := []struct {
		name string
		edit func(*Record)
		want string
	}{
		{name: "pods and policy", edit: func(*Record) {},
			want: "2026-11-26T10:00:00.123Z node-1 DENIED ingress TCP x/a (10.244.1.5:40000) -> y/b (10.244.2.7:80) by y/deny-all"},
		{name: "unknown pods, two policies, egress", edit: func(r *Record) {
			r.SrcPod, r.DstPod, r.Direction = "", "", Egress
			r.Policies = []string{"x/a", "x/b"}
		}, want: "2026-11-26T10:00:00.123Z node-1 DENIED egress TCP 10.244.1.5:40000 -> 10.244.2.7:80 by x/a,x/b"},
		{name: "icmp, no policies", edit: func(r *Record) {
			r.Protocol, r.SrcPort, r.DstPort, r.Policies = "ICMP", 0, 0, nil
		}, want: "2026-11-26T10:00:00.123Z node-1 DENIED ingress ICMP x/a (10.244.1.5) -> y/b (10.244.2.7)"},
		{name: "local time printed in UTC", edit: func(r *Record) {
			r.Time = r.Time.In(time.FixedZone("X", 3600))
		}, want: "2026-11-26T10:00:00.123Z node-1 DENIED ingress TCP x/a (10.244.1.5:40000) -> y/b (10.244.2.7:80) by y/deny-all"},
		{name: "empty fields", edit: func(r *Record) { *r = Record{Time: t0} },
			want: "2026-11-26T10:00:00.123Z - - - - ? -> ?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base
			r.Policies = slices.Clone(base.Policies)
			tt.edit(&r)
			if got := r.String(); got != tt.want {
				t.Errorf("String() =\n  %s\nwant\n  %s", got, tt.want)
			}
		})
	}
}

func TestRecordJSON(t *testing.T) {
	r := rec(0, "node-1", "x/a", "")
	r.Policies = []string{"y/deny-all"}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"time":"2026-11-26T10:00:00.123Z","node":"node-1","direction":"ingress","verdict":"denied",` +
		`"src":"10.244.1.5","dst":"10.244.2.7","srcPod":"x/a","protocol":"TCP","srcPort":40000,"dstPort":80,"policies":["y/deny-all"]}`
	if string(b) != want {
		t.Errorf("JSON =\n  %s\nwant\n  %s", b, want)
	}
	var back Record
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.String() != r.String() {
		t.Errorf("round trip: %s, want %s", back, r)
	}
}
