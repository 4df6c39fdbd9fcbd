package healthcheck

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/podnet/podnet/internal/netnsutil"
)

// newTestNS creates a uniquely named namespace with 127.0.0.1 on lo up, registers its removal
// (which runs even when the test fails), and returns its path.
func newTestNS(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := "pntest-" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	for _, args := range [][]string{
		{"-n", name, "link", "set", "lo", "up"},
		{"-n", name, "addr", "replace", "127.0.0.1/8", "dev", "lo"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	return "/run/netns/" + name
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
