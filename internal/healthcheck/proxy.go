package healthcheck

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/podnet/podnet/internal/serve"
)

// ToBeDeletedTaint is the taint the Cluster Autoscaler puts on a node it is about to delete; a node
// carrying it is not eligible for load-balancer traffic.
const ToBeDeletedTaint = "ToBeDeletedByClusterAutoscaler"

// Clock tells the time (k8s.io/utils/clock's PassiveClock and its fake satisfy it).
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// ProxyHealthServer is kube-proxy's health server (":10256" by default): /healthz and /livez.
//
// The proxy calls QueuedUpdate when it learns of a change it must program and Updated when a sync
// has programmed everything. It is healthy unless an update has been queued for longer than
// healthTimeout without an Updated since (kube-proxy uses twice its sync period). /livez reports
// just that; /healthz also fails while the node is not eligible for traffic (being deleted), so
// load balancers drain it first.
type ProxyHealthServer struct {
	clock         Clock
	healthTimeout time.Duration

	mu                  sync.RWMutex
	lastUpdated         time.Time
	oldestPendingQueued time.Time
	nodeEligible        bool
	observe             func(path string, code int)
}

// NewProxyHealthServer returns a healthy server with the node eligible; clk nil means the real clock.
func NewProxyHealthServer(healthTimeout time.Duration, clk Clock) *ProxyHealthServer {
	if clk == nil {
		clk = realClock{}
	}
	return &ProxyHealthServer{clock: clk, healthTimeout: healthTimeout, nodeEligible: true}
}

// QueuedUpdate records that the proxy has a change to program. Only the oldest pending one counts.
func (hs *ProxyHealthServer) QueuedUpdate() {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.oldestPendingQueued.IsZero() {
		hs.oldestPendingQueued = hs.clock.Now()
	}
}

// Updated records that the proxy has programmed everything queued so far.
func (hs *ProxyHealthServer) Updated() {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.oldestPendingQueued = time.Time{}
	hs.lastUpdated = hs.clock.Now()
}

// IsHealthy reports the proxy's health, ignoring node eligibility (what /livez reports).
func (hs *ProxyHealthServer) IsHealthy() bool {
	healthy, _ := hs.health(hs.clock.Now())
	return healthy
}

func (hs *ProxyHealthServer) health(now time.Time) (healthy bool, lastUpdated time.Time) {
	hs.mu.RLock()
	defer hs.mu.RUnlock()
	if hs.oldestPendingQueued.IsZero() || now.Sub(hs.oldestPendingQueued) < hs.healthTimeout {
		// Starting up, fully synced, or an update is queued but not late yet.
		return true, hs.lastUpdated
	}
	return false, hs.lastUpdated
}

// SetNodeEligible says whether the node may receive load-balancer traffic.
func (hs *ProxyHealthServer) SetNodeEligible(eligible bool) {
	hs.mu.Lock()
	hs.nodeEligible = eligible
	hs.mu.Unlock()
}

// SyncNode sets node eligibility from the Node object, as kube-proxy does: a node being deleted
// (deletionTimestamp set) or tainted ToBeDeletedByClusterAutoscaler is not eligible.
func (hs *ProxyHealthServer) SyncNode(node *corev1.Node) {
	eligible := node.DeletionTimestamp.IsZero()
	for _, taint := range node.Spec.Taints {
		if taint.Key == ToBeDeletedTaint {
			eligible = false
		}
	}
	hs.SetNodeEligible(eligible)
}

// NodeEligible reports the node's eligibility.
func (hs *ProxyHealthServer) NodeEligible() bool {
	hs.mu.RLock()
	defer hs.mu.RUnlock()
	return hs.nodeEligible
}

// SetRequestObserver registers a function called with the path ("/healthz" or "/livez") and status
// code of every answer, for kube-proxy's kubeproxy_proxy_healthz_total and _livez_total.
func (hs *ProxyHealthServer) SetRequestObserver(fn func(path string, code int)) {
	hs.mu.Lock()
	hs.observe = fn
	hs.mu.Unlock()
}

// Handler serves /healthz and /livez (anything else is 404).
func (hs *ProxyHealthServer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { hs.serve(w, "/healthz", true) })
	mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) { hs.serve(w, "/livez", false) })
	return mux
}

// Serve serves Handler on l until ctx is done (then it shuts down and returns nil) or serving
// fails. It closes l.
func (hs *ProxyHealthServer) Serve(ctx context.Context, l net.Listener) error {
	return serveUntil(ctx, l, hs.Handler())
}

func (hs *ProxyHealthServer) serve(w http.ResponseWriter, path string, withNode bool) {
	now := hs.clock.Now()
	healthy, lastUpdated := hs.health(now)
	eligible := hs.NodeEligible()
	if withNode {
		healthy = healthy && eligible
	}
	code := http.StatusServiceUnavailable
	if healthy {
		code = http.StatusOK
		// As kube-proxy does: a healthy proxy reports lastUpdated as now, which is what it meant
		// when the proxy re-synced periodically whether or not anything changed.
		lastUpdated = now
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	// Byte-for-byte kube-proxy's layout; times in Go's time.Time.String form, minus the
	// monotonic clock reading.
	if withNode {
		fmt.Fprintf(w, `{"lastUpdated": %q,"currentTime": %q, "nodeEligible": %v}`,
			lastUpdated.Round(0).String(), now.Round(0).String(), eligible)
	} else {
		fmt.Fprintf(w, `{"lastUpdated": %q,"currentTime": %q}`,
			lastUpdated.Round(0).String(), now.Round(0).String())
	}
	hs.mu.RLock()
	observe := hs.observe
	hs.mu.RUnlock()
	if observe != nil {
		observe(path, code)
	}
}

// serveUntil serves h on l until ctx is done (then shuts down, letting requests in flight finish
// for a few seconds, and returns nil) or serving fails.
func serveUntil(ctx context.Context, l net.Listener, h http.Handler) error {
	return serve.HTTP(ctx, l, h)
}
