package netnsutil

import (
	"errors"
	"net"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/podnet/podnet/internal/nstest"
)

// newTestNS makes a fresh namespace for the test and returns its path.
func newTestNS(t *testing.T) string {
	_, path := nstest.New(t, "nsu")
	return path
}

func TestListenInNamespace(t *testing.T) {
	ns := newTestNS(t)

	l, err := Listen(ns, "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port

	accepted := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			accepted <- "accept: " + err.Error()
			return
		}
		defer c.Close()
		buf := make([]byte, 16)
		n, _ := c.Read(buf)
		_, _ = c.Write([]byte("pong"))
		accepted <- string(buf[:n])
	}()

	// From inside the namespace the listener answers.
	c, err := Dial(ns, "tcp4", l.Addr().String())
	if err != nil {
		t.Fatalf("dial from inside the namespace: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "pong" {
		t.Fatalf("reply %q, %v", buf[:n], err)
	}
	if got := <-accepted; got != "ping" {
		t.Fatalf("server saw %q", got)
	}

	// The host's loopback does not have the port: it can be bound there, and with nothing bound
	// a connection is refused.
	hl, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("port %d is taken on the host too (socket leaked out of the namespace?): %v", port, err)
	}
	hl.Close()
	hc, err := net.DialTimeout("tcp4", "127.0.0.1:"+strconv.Itoa(port), 2*time.Second)
	if err == nil {
		hc.Close()
		t.Fatalf("host loopback reached port %d", port)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial from the host: %v, want connection refused", err)
	}
}

func TestListenPacketInNamespace(t *testing.T) {
	ns := newTestNS(t)

	pc, err := ListenPacket(ns, "udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()

	c, err := Dial(ns, "udp4", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	n, from, err := pc.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read %q from %v: %v", buf[:n], from, err)
	}
	if _, err := pc.WriteTo([]byte("back"), from); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err = c.Read(buf); err != nil || string(buf[:n]) != "back" {
		t.Fatalf("reply %q: %v", buf[:n], err)
	}
}

func TestEmptyPathIsCurrentNamespace(t *testing.T) {
	l, err := Listen("", "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.DialTimeout("tcp4", l.Addr().String(), 2*time.Second)
	if err != nil {
		t.Fatalf("host dial of a listener made with nsPath \"\": %v", err)
	}
	c.Close()
}

func TestBadPath(t *testing.T) {
	if _, err := Listen("/nonexistent/netns", "tcp4", "127.0.0.1:0"); err == nil {
		t.Fatal("want an error for a missing namespace")
	}
}

// TestThreadsComeBack checks that after many concurrent switches no thread the scheduler hands
// out is left in the test namespace.
func TestThreadsComeBack(t *testing.T) {
	ns := newTestNS(t)
	host, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()

	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := Listen(ns, "tcp4", "127.0.0.1:0")
			if err != nil {
				t.Error(err)
				return
			}
			l.Close()
		}()
	}
	wg.Wait()

	for range 4 * runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			cur, err := netns.Get()
			if err != nil {
				t.Error(err)
				return
			}
			defer cur.Close()
			if !cur.Equal(host) {
				t.Errorf("thread left in namespace %s", cur)
			}
			time.Sleep(time.Millisecond)
		}()
	}
	wg.Wait()
}
