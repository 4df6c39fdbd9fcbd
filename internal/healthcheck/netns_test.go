package healthcheck

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/podnet/podnet/internal/netnsutil"
	"github.com/podnet/podnet/internal/nstest"
)

// newTestNS makes a fresh namespace for the test and returns its path.
func newTestNS(t *testing.T) string {
	_, path := nstest.New(t, "hc")
	return path
}

// TestServiceHealthServerInNamespace runs a ServiceHealthServer whose listeners are made in a fresh
// namespace and queries it from inside that namespace.
func TestServiceHealthServerInNamespace(t *testing.T) {
	ns := newTestNS(t)
	s := New(func(network, addr string) (net.Listener, error) {
		return netnsutil.Listen(ns, network, addr)
	}, nil)
	defer s.Close()

	// Any port is free in a fresh namespace.
	const port = 31777
	hostPortFree := func() bool {
		hl, err := net.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			return false
		}
		hl.Close()
		return true
	}
	freeBefore := hostPortFree()
	nsn := types.NamespacedName{Namespace: "default", Name: "lb"}
	s.SyncServices(map[types.NamespacedName]uint16{nsn: port})
	if got := s.Ports(); got[nsn] != port {
		t.Fatalf("ports %v", got)
	}
	s.SyncEndpoints(map[types.NamespacedName]int{nsn: 3})

	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return netnsutil.DialContext(ctx, ns, network, addr)
			},
		},
	}
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/"
	code, body := get(t, client, url)
	if code != 200 || body.LocalEndpoints != 3 || body.Service.Name != "lb" || !body.ServiceProxyHealthy {
		t.Fatalf("inside the namespace: %d %+v", code, body)
	}

	s.SyncEndpoints(nil)
	if code, body = get(t, client, url); code != 503 || body.LocalEndpoints != 0 {
		t.Fatalf("no endpoints: %d %+v", code, body)
	}

	// The host does not have the port (checked only if the host itself was not using it).
	if freeBefore && !hostPortFree() {
		t.Fatal("the health check's port is taken on the host: the listener is not in the namespace")
	}
}
