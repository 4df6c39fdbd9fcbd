package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
)

// dialFromPod opens a TCP connection whose socket lives in the pod's network namespace.
func dialFromPod(lab string, pod corev1.Pod, addr string) (net.Conn, error) {
	var conn net.Conn
	err := ns.WithNetNSPath("/var/run/netns/"+lab+".pod."+pod.Namespace+"."+pod.Name, func(ns.NetNS) error {
		var err error
		conn, err = net.DialTimeout("tcp", addr, 3*time.Second)
		return err
	})
	return conn, err
}

// askOnConn sends one HTTP request on an open keep-alive connection and decodes the reply.
func askOnConn(conn net.Conn) (reply, error) {
	var r reply
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: e2e\r\n\r\n"); err != nil {
		return r, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return r, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&r)
	return r, err
}

// watchKernel counts route, neighbour, link and address changes in a node's namespace.
type watchKernel struct {
	events chan string
	done   chan struct{}
}

func watchNode(t *testing.T, netnsName string) *watchKernel {
	t.Helper()
	h, err := netns.GetFromName(netnsName)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	w := &watchKernel{events: make(chan string, 1000), done: make(chan struct{})}
	t.Cleanup(func() { close(w.done) })
	routes := make(chan netlink.RouteUpdate, 100)
	neighs := make(chan netlink.NeighUpdate, 100)
	links := make(chan netlink.LinkUpdate, 100)
	addrs := make(chan netlink.AddrUpdate, 100)
	if err := netlink.RouteSubscribeWithOptions(routes, w.done, netlink.RouteSubscribeOptions{Namespace: &h}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.NeighSubscribeWithOptions(neighs, w.done, netlink.NeighSubscribeOptions{Namespace: &h}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSubscribeWithOptions(links, w.done, netlink.LinkSubscribeOptions{Namespace: &h}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, w.done, netlink.AddrSubscribeOptions{Namespace: &h}); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			var ev string
			select {
			case <-w.done:
				return
			case u := <-routes:
				// IPv6 link-local addresses and their local routes appear when the kernel
				// finishes duplicate address detection on a new veth; podnet never writes IPv6.
				if u.Dst != nil && u.Dst.IP.IsLinkLocalUnicast() {
					continue
				}
				ev = fmt.Sprintf("route %d %v", u.Type, u.Route)
			case u := <-neighs:
				// Reachability state changes of learned neighbours are the kernel's, not ours.
				if u.Neigh.State&netlink.NUD_PERMANENT == 0 {
					continue
				}
				ev = fmt.Sprintf("neigh %d %v", u.Type, u.Neigh)
			case u := <-links:
				ev = fmt.Sprintf("link %d %s", u.Header.Type, u.Attrs().Name)
			case u := <-addrs:
				if u.LinkAddress.IP.IsLinkLocalUnicast() {
					continue
				}
				ev = fmt.Sprintf("addr new=%v %v", u.NewAddr, u.LinkAddress)
			}
			select {
			case w.events <- ev:
			default:
			}
		}
	}()
	return w
}

func (w *watchKernel) drain() []string {
	var out []string
	for {
		select {
		case ev := <-w.events:
			out = append(out, ev)
		default:
			return out
		}
	}
}

// testAgentRestart restarts every node agent while a cross-node TCP connection is open: the
// connection keeps working, and the new agents adopt what is programmed without a single route,
// neighbour, link or address change in any node.
func testAgentRestart(t *testing.T, lab string, pods []corev1.Pod) {
	var from, to corev1.Pod
	for _, p := range pods {
		switch p.Spec.NodeName {
		case "node-1":
			from = p
		case "node-3":
			to = p
		}
	}
	conn, err := dialFromPod(lab, from, net.JoinHostPort(to.Status.PodIP, "8080"))
	if err != nil {
		t.Fatalf("dial from %s: %v", from.Name, err)
	}
	defer conn.Close()
	if r, err := askOnConn(conn); err != nil || r.Pod != to.Name {
		t.Fatalf("before restart: %+v %v", r, err)
	}
	var watches []*watchKernel
	for _, n := range []string{"node-1", "node-2", "node-3"} {
		watches = append(watches, watchNode(t, lab+"."+n))
	}
	time.Sleep(200 * time.Millisecond)
	for _, w := range watches {
		w.drain()
	}
	out := mustPodnet(t, "lab", "restart-agents", "--lab", lab)
	t.Logf("restart-agents: %s", out)
	time.Sleep(500 * time.Millisecond) // let a late write show up if there is one
	for i, w := range watches {
		if evs := w.drain(); len(evs) > 0 {
			t.Errorf("node-%d: the restarted agent changed the kernel: %v", i+1, evs)
		}
	}
	r, err := askOnConn(conn)
	if err != nil || r.Pod != to.Name || r.ClientIP != from.Status.PodIP {
		t.Fatalf("the connection opened before the restart broke: %+v %v", r, err)
	}
}
