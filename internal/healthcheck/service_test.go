package healthcheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// fakeProxy is a HealthChecker with a settable answer.
type fakeProxy struct{ healthy bool }

func (f *fakeProxy) IsHealthy() bool { return f.healthy }

func TestServiceHandler(t *testing.T) {
	nsn := types.NamespacedName{Namespace: "ns", Name: "web"}
	for _, tc := range []struct {
		name      string
		open      bool
		endpoints int
		proxy     HealthChecker
		wantCode  int
		wantBody  string
	}{
		{"local endpoints", true, 2, nil, 200,
			`{"service":{"namespace":"ns","name":"web"},"localEndpoints":2,"serviceProxyHealthy":true}`},
		{"no local endpoints", true, 0, nil, 503,
			`{"service":{"namespace":"ns","name":"web"},"localEndpoints":0,"serviceProxyHealthy":true}`},
		{"proxy unhealthy", true, 3, &fakeProxy{false}, 503,
			`{"service":{"namespace":"ns","name":"web"},"localEndpoints":3,"serviceProxyHealthy":false}`},
		{"proxy healthy", true, 1, &fakeProxy{true}, 200,
			`{"service":{"namespace":"ns","name":"web"},"localEndpoints":1,"serviceProxyHealthy":true}`},
		{"closed meanwhile", false, 1, nil, 503,
			`{"service":{"namespace":"ns","name":"web"},"localEndpoints":1,"serviceProxyHealthy":true}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(nil, nil)
			if tc.open {
				s.services[nsn] = &hcInstance{port: 30000}
			}
			if tc.proxy != nil {
				s.SetProxyHealth(tc.proxy)
			}
			s.SyncEndpoints(map[types.NamespacedName]int{nsn: tc.endpoints})
			for _, path := range []string{"/", "/healthz", "/any/path?x=1"} {
				rec := httptest.NewRecorder()
				serviceHandler{s: s, nsn: nsn}.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
				if rec.Code != tc.wantCode {
					t.Errorf("%s: code %d, want %d", path, rec.Code, tc.wantCode)
				}
				if got := rec.Body.String(); got != tc.wantBody {
					t.Errorf("%s: body\n%s\nwant\n%s", path, got, tc.wantBody)
				}
				if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
				if v := rec.Header().Get("X-Content-Type-Options"); v != "nosniff" {
					t.Errorf("X-Content-Type-Options %q", v)
				}
			}
		})
	}
}

// loopbackListener maps the ports SyncServices asks for to ephemeral ports on 127.0.0.1, records
// them, and can be told to fail some ports.
type loopbackListener struct {
	mu    sync.Mutex
	addrs map[string]string // requested port → actual address
	fail  map[string]bool
	calls int
}

func newLoopbackListener() *loopbackListener {
	return &loopbackListener{addrs: map[string]string{}, fail: map[string]bool{}}
}

func (f *loopbackListener) listen(network, addr string) (net.Listener, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != "" || network != "tcp" {
		return nil, fmt.Errorf("unexpected listen %s %q", network, addr)
	}
	if f.fail[port] {
		return nil, errors.New("address already in use (simulated)")
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f.addrs[port] = l.Addr().String()
	return l, nil
}

func (f *loopbackListener) addr(port uint16) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addrs[strconv.Itoa(int(port))]
}

func (f *loopbackListener) setFail(port uint16, fail bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[strconv.Itoa(int(port))] = fail
}

func get(t *testing.T, c *http.Client, url string) (int, serviceHealthResponse) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var body serviceHealthResponse
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("GET %s: body %q: %v", url, b, err)
	}
	return resp.StatusCode, body
}

func TestServiceHealthServerListeners(t *testing.T) {
	ll := newLoopbackListener()
	s := New(ll.listen, nil)
	defer s.Close()
	client := &http.Client{Timeout: 5 * time.Second}

	a := types.NamespacedName{Namespace: "default", Name: "a"}
	b := types.NamespacedName{Namespace: "other", Name: "b"}

	// b's port is taken: a opens, b is logged and left for the next sync.
	ll.setFail(32001, true)
	s.SyncServices(map[types.NamespacedName]uint16{a: 32000, b: 32001})
	if got := s.Ports(); len(got) != 1 || got[a] != 32000 {
		t.Fatalf("ports %v, want only a:32000", got)
	}
	// Endpoints known before the server opens still count once it does.
	s.SyncEndpoints(map[types.NamespacedName]int{a: 1, b: 2})

	for _, tc := range []struct {
		step      string
		services  map[types.NamespacedName]uint16
		endpoints map[types.NamespacedName]int
		unfail    uint16
		want      map[types.NamespacedName]int // expected code per open service
		wantCount map[types.NamespacedName]int
	}{
		{step: "a open with one endpoint",
			want: map[types.NamespacedName]int{a: 200}, wantCount: map[types.NamespacedName]int{a: 1}},
		{step: "b retried on the next sync", unfail: 32001,
			services: map[types.NamespacedName]uint16{a: 32000, b: 32001},
			want:     map[types.NamespacedName]int{a: 200, b: 200}, wantCount: map[types.NamespacedName]int{a: 1, b: 2}},
		{step: "a loses its endpoints",
			endpoints: map[types.NamespacedName]int{b: 2},
			want:      map[types.NamespacedName]int{a: 503, b: 200}, wantCount: map[types.NamespacedName]int{a: 0, b: 2}},
		{step: "b moves port",
			services: map[types.NamespacedName]uint16{a: 32000, b: 32002},
			want:     map[types.NamespacedName]int{a: 503, b: 200}, wantCount: map[types.NamespacedName]int{a: 0, b: 2}},
	} {
		t.Run(tc.step, func(t *testing.T) {
			if tc.unfail != 0 {
				ll.setFail(tc.unfail, false)
			}
			if tc.services != nil {
				s.SyncServices(tc.services)
			}
			if tc.endpoints != nil {
				s.SyncEndpoints(tc.endpoints)
			}
			ports := s.Ports()
			if len(ports) != len(tc.want) {
				t.Fatalf("open %v, want %v", ports, tc.want)
			}
			for nsn, wantCode := range tc.want {
				port, ok := ports[nsn]
				if !ok {
					t.Fatalf("%s not open", nsn)
				}
				code, body := get(t, client, "http://"+ll.addr(port)+"/")
				if code != wantCode || body.LocalEndpoints != tc.wantCount[nsn] ||
					body.Service.Namespace != nsn.Namespace || body.Service.Name != nsn.Name || !body.ServiceProxyHealthy {
					t.Errorf("%s: %d %+v, want %d with %d endpoints", nsn, code, body, wantCode, tc.wantCount[nsn])
				}
			}
		})
	}

	// b's old port is closed.
	oldB := ll.addr(32001)
	if c, err := net.DialTimeout("tcp4", oldB, time.Second); err == nil {
		c.Close()
		t.Errorf("b's old health check %s still accepts connections", oldB)
	}

	// A sync that keeps everything opens nothing new.
	calls := ll.calls
	s.SyncServices(map[types.NamespacedName]uint16{a: 32000, b: 32002})
	if ll.calls != calls {
		t.Errorf("unchanged sync called listen %d times", ll.calls-calls)
	}

	// Removing everything closes everything.
	addrA := ll.addr(32000)
	s.SyncServices(nil)
	if got := s.Ports(); len(got) != 0 {
		t.Fatalf("ports %v after removing all", got)
	}
	if c, err := net.DialTimeout("tcp4", addrA, time.Second); err == nil {
		c.Close()
		t.Errorf("a's health check %s still accepts connections", addrA)
	}
}

func TestServiceHealthServerClose(t *testing.T) {
	ll := newLoopbackListener()
	s := New(ll.listen, nil)
	nsn := types.NamespacedName{Namespace: "x", Name: "y"}
	s.SyncServices(map[types.NamespacedName]uint16{nsn: 31000})
	addr := ll.addr(31000)
	s.Close()
	if c, err := net.DialTimeout("tcp4", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after Close", addr)
	}
	s.SyncServices(map[types.NamespacedName]uint16{nsn: 31000})
	if got := s.Ports(); len(got) != 0 {
		t.Errorf("sync after Close opened %v", got)
	}
}
