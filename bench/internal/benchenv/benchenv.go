// Package benchenv is what the root benchmark drivers share: a run that cleans up every
// namespace it created even when interrupted, and small `ip` helpers.
package benchenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Env records the namespaces and cleanups of one benchmark run.
type Env struct {
	ID   string // prefix of every namespace: pnbench-<random>
	name string

	mu       sync.Mutex
	ns       []string
	cleanups []func()
}

// Main runs bench as root under a context that signals cancel, then cleans up; it returns the
// process exit code. name prefixes messages.
func Main(name string, bench func(ctx context.Context, e *Env) error) int {
	if os.Geteuid() != 0 {
		fmt.Fprintf(os.Stderr, "%s: must run as root (it creates network namespaces)\n", name)
		return 2
	}
	// The handler stays installed until cleanup is done, so a second Ctrl-C cannot cut it short.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	e := &Env{ID: "pnbench-" + RandHex(4), name: name}
	defer e.Cleanup()
	if err := bench(ctx, e); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(os.Stderr, "%s: interrupted, cleaning up\n", name)
		} else {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		}
		return 1
	}
	return 0
}

// RandHex is n random bytes in hex.
func RandHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// OnCleanup registers fn to run at cleanup, newest first, before namespaces are deleted.
func (e *Env) OnCleanup(fn func()) {
	e.mu.Lock()
	e.cleanups = append(e.cleanups, fn)
	e.mu.Unlock()
}

// Cleanup runs the registered cleanups and deletes every namespace still recorded.
func (e *Env) Cleanup() {
	e.mu.Lock()
	fns, names := e.cleanups, e.ns
	e.cleanups, e.ns = nil, nil
	e.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
	for i := len(names) - 1; i >= 0; i-- {
		e.delNS(names[i])
	}
}

// NewNS creates the namespace <ID>-<suffix> with lo up and records it for cleanup.
func (e *Env) NewNS(ctx context.Context, suffix string) (string, error) {
	name := e.ID + "-" + suffix
	if err := Sh(ctx, "ip", "netns", "add", name); err != nil {
		return "", err
	}
	e.mu.Lock()
	e.ns = append(e.ns, name)
	e.mu.Unlock()
	return name, IPN(ctx, name, "link", "set", "lo", "up")
}

// Release deletes a namespace now instead of at cleanup.
func (e *Env) Release(name string) {
	e.mu.Lock()
	for i, n := range e.ns {
		if n == name {
			e.ns = append(e.ns[:i], e.ns[i+1:]...)
			break
		}
	}
	e.mu.Unlock()
	e.delNS(name)
}

func (e *Env) delNS(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ip", "netns", "del", name).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: cleanup: ip netns del %s: %v: %s\n", e.name, name, err, bytes.TrimSpace(out))
	}
}

// Sh runs a command and returns its output in the error when it fails.
func Sh(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// IPN runs `ip -n ns args...`.
func IPN(ctx context.Context, ns string, args ...string) error {
	return Sh(ctx, append([]string{"ip", "-n", ns}, args...)...)
}

// NS is a namespace of the run with an open handle (closed by Release or at cleanup).
type NS struct {
	Name string
	H    netns.NsHandle
	e    *Env
	once sync.Once
}

// OpenNS creates <ID>-<suffix> with lo up, records it for cleanup, and opens a handle to it.
func (e *Env) OpenNS(ctx context.Context, suffix string) (*NS, error) {
	name, err := e.NewNS(ctx, suffix)
	if err != nil {
		return nil, err
	}
	h, err := netns.GetFromName(name)
	if err != nil {
		return nil, fmt.Errorf("open namespace %s: %w", name, err)
	}
	r := &NS{Name: name, H: h, e: e}
	e.OnCleanup(r.closeHandle)
	return r, nil
}

// Path is the namespace's bind mount.
func (r *NS) Path() string { return "/run/netns/" + r.Name }

func (r *NS) closeHandle() { r.once.Do(func() { r.H.Close() }) }

// Release deletes the namespace now (its handle first) instead of at cleanup.
func (r *NS) Release() {
	r.closeHandle()
	r.e.Release(r.Name)
}

// Netlink opens a netlink handle in the namespace, closed at cleanup.
func (r *NS) Netlink() (*netlink.Handle, error) {
	h, err := netlink.NewHandleAt(r.H)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", r.Name, err)
	}
	r.e.OnCleanup(h.Close)
	return h, nil
}
