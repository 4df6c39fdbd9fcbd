package healthcheck

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Step(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type proxyHealthBody struct {
	LastUpdated  string `json:"lastUpdated"`
	CurrentTime  string `json:"currentTime"`
	NodeEligible *bool  `json:"nodeEligible"`
}

func TestProxyHealthServer(t *testing.T) {
	const timeout = 60 * time.Second
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

	type step struct {
		do          func(hs *ProxyHealthServer, c *fakeClock)
		wantHealthz int
		wantLivez   int
	}
	queued := func(hs *ProxyHealthServer, _ *fakeClock) { hs.QueuedUpdate() }
	updated := func(hs *ProxyHealthServer, _ *fakeClock) { hs.Updated() }
	wait := func(d time.Duration) func(*ProxyHealthServer, *fakeClock) {
		return func(_ *ProxyHealthServer, c *fakeClock) { c.Step(d) }
	}
	eligible := func(e bool) func(*ProxyHealthServer, *fakeClock) {
		return func(hs *ProxyHealthServer, _ *fakeClock) { hs.SetNodeEligible(e) }
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"starting up", []step{{nil, 200, 200}}},
		{"starting up, long idle", []step{{wait(10 * timeout), 200, 200}}},
		{"queued, not late yet", []step{{queued, 200, 200}, {wait(timeout - time.Second), 200, 200}}},
		{"queued, never updated", []step{{queued, 200, 200}, {wait(timeout), 503, 503}}},
		{"updated in time", []step{{queued, 200, 200}, {wait(timeout / 2), 200, 200}, {updated, 200, 200}, {wait(timeout), 200, 200}}},
		{"only the oldest queued update counts", []step{
			{queued, 200, 200}, {wait(timeout / 2), 200, 200}, {queued, 200, 200}, {wait(timeout / 2), 503, 503}}},
		{"recovers after an update", []step{{queued, 200, 200}, {wait(2 * timeout), 503, 503}, {updated, 200, 200}}},
		{"node not eligible: healthz only", []step{{eligible(false), 503, 200}, {eligible(true), 200, 200}}},
		{"unhealthy and not eligible", []step{{queued, 200, 200}, {eligible(false), 503, 200}, {wait(timeout), 503, 503}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &fakeClock{now: start}
			hs := NewProxyHealthServer(timeout, clk)
			var observed []string
			hs.SetRequestObserver(func(path string, code int) { observed = append(observed, path+" "+http.StatusText(code)) })
			h := hs.Handler()
			for i, st := range tc.steps {
				if st.do != nil {
					st.do(hs, clk)
				}
				for _, p := range []struct {
					path string
					want int
				}{{"/healthz", st.wantHealthz}, {"/livez", st.wantLivez}} {
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p.path, nil))
					if rec.Code != p.want {
						t.Errorf("step %d %s: code %d, want %d: %s", i, p.path, rec.Code, p.want, rec.Body)
					}
					if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
						t.Errorf("Content-Type %q", ct)
					}
					if v := rec.Header().Get("X-Content-Type-Options"); v != "nosniff" {
						t.Errorf("X-Content-Type-Options %q", v)
					}
					var body proxyHealthBody
					if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
						t.Fatalf("step %d %s: body %q: %v", i, p.path, rec.Body, err)
					}
					now := clk.Now().String()
					if body.CurrentTime != now {
						t.Errorf("currentTime %q, want %q", body.CurrentTime, now)
					}
					if rec.Code == 200 && body.LastUpdated != now {
						t.Errorf("healthy lastUpdated %q, want now %q", body.LastUpdated, now)
					}
					if p.path == "/healthz" {
						if body.NodeEligible == nil || *body.NodeEligible != hs.NodeEligible() {
							t.Errorf("nodeEligible %v, want %v", body.NodeEligible, hs.NodeEligible())
						}
					} else if body.NodeEligible != nil {
						t.Errorf("/livez carries nodeEligible")
					}
				}
				if hs.IsHealthy() != (st.wantLivez == 200) {
					t.Errorf("step %d: IsHealthy %v, livez %d", i, hs.IsHealthy(), st.wantLivez)
				}
			}
			if len(observed) != 2*len(tc.steps) {
				t.Errorf("observer saw %v", observed)
			}
		})
	}
}

func TestProxyHealthBodyLayout(t *testing.T) {
	clk := &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)}
	hs := NewProxyHealthServer(time.Minute, clk)
	rec := httptest.NewRecorder()
	hs.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	want := `{"lastUpdated": "2026-01-02 03:04:05.0000006 +0000 UTC","currentTime": "2026-01-02 03:04:05.0000006 +0000 UTC", "nodeEligible": true}`
	if got := rec.Body.String(); got != want {
		t.Errorf("body\n%s\nwant\n%s", got, want)
	}
	// Unhealthy: lastUpdated is the last real update (zero here).
	hs.QueuedUpdate()
	clk.Step(time.Minute)
	rec = httptest.NewRecorder()
	hs.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/livez", nil))
	want = `{"lastUpdated": "0001-01-01 00:00:00 +0000 UTC","currentTime": "2026-01-02 03:05:05.0000006 +0000 UTC"}`
	if got := rec.Body.String(); rec.Code != 503 || got != want {
		t.Errorf("%d body\n%s\nwant 503\n%s", rec.Code, got, want)
	}
	rec = httptest.NewRecorder()
	hs.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/other", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("/other: %d", rec.Code)
	}
}

func TestSyncNode(t *testing.T) {
	now := metav1.Now()
	for _, tc := range []struct {
		name string
		node corev1.Node
		want bool
	}{
		{"plain", corev1.Node{}, true},
		{"deleting", corev1.Node{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}}, false},
		{"autoscaler taint", corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{
			{Key: "other", Effect: corev1.TaintEffectNoSchedule},
			{Key: ToBeDeletedTaint, Effect: corev1.TaintEffectNoSchedule}}}}, false},
		{"other taint", corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: "other"}}}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs := NewProxyHealthServer(time.Minute, nil)
			hs.SetNodeEligible(!tc.want)
			hs.SyncNode(&tc.node)
			if got := hs.NodeEligible(); got != tc.want {
				t.Errorf("eligible %v, want %v", got, tc.want)
			}
		})
	}
}

func TestProxyHealthServe(t *testing.T) {
	hs := NewProxyHealthServer(time.Minute, nil)
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ctx, l) }()

	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + l.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/healthz %d %s", resp.StatusCode, b)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if c, err := net.DialTimeout("tcp4", l.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("listener still open after Serve returned")
	}
}
