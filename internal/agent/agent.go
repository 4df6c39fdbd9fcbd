// Package agent is the node agent: one per node, it prepares the node's network (forwarding, the
// pod bridge, the Service CIDR route), writes the CNI configuration, publishes what other nodes need
// to reach it (the VTEP MAC), and keeps routes to every other node's podCIDR in step with the Node
// objects. It reads the cluster only through client-go informers and touches only the node's own
// network namespace, through handles bound to it, so many agents can share one process (the lab).
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containernetworking/cni/libcni"
	cniversion "github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"

	"github.com/podnet/podnet/internal/flows"
	"github.com/podnet/podnet/internal/routing"
	"github.com/podnet/podnet/internal/runner"
)

// Defaults for a node.
const (
	DefaultBridge   = "podnet0"
	DefaultUnderlay = "eth0"
	ConflistName    = "10-podnet.conflist"
	NetworkName     = "podnet"
)

// Config says which node an agent serves and where.
type Config struct {
	NodeName    string
	NetNS       string // path of the node's network namespace; "" means the agent's own namespace
	Client      kubernetes.Interface
	Backend     string     // routing backend: vxlan | host-gw
	Underlay    string     // the node's underlay link (default eth0)
	Bridge      string     // the pod bridge (default podnet0)
	ServiceCIDR *net.IPNet // routed to the bridge so the node itself reaches ClusterIPs
	ClusterCIDR *net.IPNet // every pod address; traffic from outside it to a ClusterIP is masqueraded
	// MetricsBindAddress serves Prometheus metrics (kube-proxy's names) in the node's namespace;
	// HealthzBindAddress serves kube-proxy's /healthz and /livez. "" means the kube-proxy
	// defaults ":10249" and ":10256"; "-" turns the server off.
	MetricsBindAddress string
	HealthzBindAddress string
	CNIConfDir         string   // where the conflist is written (a real node: /etc/cni/net.d)
	IPAMDir            string   // the CNI plugin's IPAM state directory for this node
	CNIBinDirs         []string // searched for optional chained plugins (bandwidth)
	// Flows receives the node's verdict log (denied connections); nil: the agent keeps its own
	// (see Flows). A lab shares one among its nodes.
	Flows *flows.Log
	Log   *slog.Logger
}

// Agent runs one node's networking.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	nsh     netns.NsHandle
	nl      *netlink.Handle
	backend routing.Backend
	local   routing.Node
	info    routing.LocalInfo

	nodes listersv1.NodeLister

	ready    chan struct{}
	routesRV progress // nodes and pods, programmed by the routing backend
	proxyRV  progress // services and endpointslices, programmed by the proxy
	policyRV progress // networkpolicies, pods and namespaces, programmed by the policy table
	writes   atomic.Int64
	syncs    atomic.Int64

	px    *proxyState
	pol   *policyState
	flows *flows.Log

	routesDone, proxyDone, policyDone atomic.Bool
	readyOnce                         sync.Once

	mu      sync.Mutex
	lastErr error
}

// New checks the configuration; Run does the work.
func New(cfg Config) (*Agent, error) {
	if cfg.NodeName == "" || cfg.Client == nil {
		return nil, errors.New("agent: NodeName and Client are required")
	}
	if cfg.Underlay == "" {
		cfg.Underlay = DefaultUnderlay
	}
	if cfg.Bridge == "" {
		cfg.Bridge = DefaultBridge
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Flows == nil {
		cfg.Flows = flows.NewLog(DefaultFlowLogSize)
	}
	return &Agent{cfg: cfg, log: cfg.Log.With("node", cfg.NodeName), ready: make(chan struct{}), flows: cfg.Flows}, nil
}

// DefaultFlowLogSize is how many flow records an agent keeps when not given a log.
const DefaultFlowLogSize = 4096

// Flows is the node's verdict log.
func (a *Agent) Flows() *flows.Log { return a.flows }

// markReady closes Ready once routes, Services and NetworkPolicies have all been programmed once.
func (a *Agent) markReady() {
	if a.routesDone.Load() && a.proxyDone.Load() && a.policyDone.Load() {
		a.readyOnce.Do(func() { close(a.ready) })
	}
}

// Ready is closed once the node is set up and its first route and Service syncs succeeded.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Stats reports what the agent has done so far.
type Stats struct {
	Node         string `json:"node"`
	Syncs        int64  `json:"syncs"`
	KernelWrites int64  `json:"kernelWrites"`
	SeenRV       int64  `json:"seenResourceVersion"`
	SyncedRV     int64  `json:"syncedResourceVersion"`
	MTU          int    `json:"mtu"`
	LastError    string `json:"lastError,omitempty"`
}

// Stats returns counters of this agent's syncs.
func (a *Agent) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := Stats{Node: a.cfg.NodeName, Syncs: a.syncs.Load(), KernelWrites: a.writes.Load(),
		SeenRV: max(a.routesRV.seen.Load(), a.proxyRV.seen.Load(), a.policyRV.seen.Load()), SyncedRV: a.SyncedRV(), MTU: a.info.MTU}
	if a.lastErr != nil {
		s.LastError = a.lastErr.Error()
	}
	return s
}

// progress tracks, for one part of the agent, the newest resourceVersion its informers delivered
// and the newest whose effects it has programmed.
type progress struct{ seen, synced atomic.Int64 }

func (p *progress) observe(o interface{}) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	m, ok := o.(metav1.Object)
	if !ok {
		return
	}
	rv, _ := strconv.ParseInt(m.GetResourceVersion(), 10, 64)
	for {
		cur := p.seen.Load()
		if rv <= cur || p.seen.CompareAndSwap(cur, rv) {
			return
		}
	}
}

// SyncedRV is the newest cluster resourceVersion whose effects this agent has programmed: every
// change at or below it that the agent watches is in the kernel.
func (a *Agent) SyncedRV() int64 {
	var newest int64
	lowest := int64(math.MaxInt64)
	for _, p := range []*progress{&a.routesRV, &a.proxyRV, &a.policyRV} {
		seen, synced := p.seen.Load(), p.synced.Load()
		newest = max(newest, seen)
		if synced < seen {
			lowest = min(lowest, synced)
		}
	}
	if lowest != math.MaxInt64 {
		return lowest
	}
	return newest
}

// Run sets the node up and keeps it in sync until ctx is done. It never tears down what it
// programmed: a restarted agent adopts it.
func (a *Agent) Run(ctx context.Context) error {
	var err error
	if a.cfg.NetNS != "" {
		a.nsh, err = netns.GetFromPath(a.cfg.NetNS)
	} else {
		a.nsh, err = netns.Get()
	}
	if err != nil {
		return fmt.Errorf("agent %s: open netns: %w", a.cfg.NodeName, err)
	}
	defer a.nsh.Close()
	a.nl, err = netlink.NewHandleAt(a.nsh)
	if err != nil {
		return fmt.Errorf("agent %s: netlink: %w", a.cfg.NodeName, err)
	}
	defer a.nl.Close()

	node, err := a.waitForNode(ctx)
	if err != nil {
		return err
	}
	if a.local, err = routing.ParseNode(node); err != nil {
		return fmt.Errorf("agent %s: %w", a.cfg.NodeName, err)
	}
	if err := a.setupNode(ctx); err != nil {
		return fmt.Errorf("agent %s: node setup: %w", a.cfg.NodeName, err)
	}
	if err := a.publish(ctx); err != nil {
		return fmt.Errorf("agent %s: publish node: %w", a.cfg.NodeName, err)
	}

	factory := informers.NewSharedInformerFactory(a.cfg.Client, 0)
	r := runner.New("agent/"+a.cfg.NodeName, a.sync, 20*time.Millisecond, 5*time.Minute, a.log)
	nodeInf := factory.Core().V1().Nodes()
	if _, err := nodeInf.Informer().AddEventHandler(handlerFor(&a.routesRV, r)); err != nil {
		return err
	}
	if _, err := factory.Core().V1().Pods().Informer().AddEventHandler(handlerFor(&a.routesRV, r)); err != nil {
		return err
	}
	a.nodes = nodeInf.Lister()

	pr, stopProxy, err := a.setupProxy(ctx, factory)
	if err != nil {
		return err
	}
	defer stopProxy()
	polr, stopPolicy, err := a.setupPolicy(factory)
	if err != nil {
		return err
	}
	defer stopPolicy()

	factory.Start(ctx.Done())
	defer factory.Shutdown()
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("agent %s: cache for %v did not sync", a.cfg.NodeName, typ)
		}
	}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); pr.Run(ctx) }()
	go func() { defer wg.Done(); polr.Run(ctx) }()
	go func() { defer wg.Done(); a.runVerdictLog(ctx) }()
	r.Run(ctx)
	wg.Wait()
	return nil
}

// handlerFor records what the informers deliver and asks the runner for a sync; it never does
// kernel work itself.
func handlerFor(p *progress, r *runner.Runner) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o interface{}) { p.observe(o); r.Request() },
		UpdateFunc: func(_, o interface{}) { p.observe(o); r.Request() },
		DeleteFunc: func(o interface{}) { p.observe(o); r.Request() },
	}
}

func (a *Agent) waitForNode(ctx context.Context) (*corev1.Node, error) {
	for {
		n, err := a.cfg.Client.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		if err == nil && n.Spec.PodCIDR != "" {
			return n, nil
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// sync makes routes to other nodes match the Node objects. It is the runner's function.
func (a *Agent) sync(ctx context.Context) error {
	rv := a.routesRV.seen.Load()
	nodes, err := a.nodes.List(labels.Everything())
	if err != nil {
		return err
	}
	var remotes []routing.Node
	for _, n := range nodes {
		if n.Name == a.cfg.NodeName {
			continue
		}
		rn, err := routing.ParseNode(n)
		if err != nil {
			// A node that has not got its podCIDR or address yet is not routable yet.
			a.log.Debug("skipping node", "peer", n.Name, "reason", err)
			continue
		}
		remotes = append(remotes, rn)
	}
	st, err := a.backend.Sync(remotes)
	a.writes.Add(int64(st.Added + st.Updated + st.Removed))
	a.syncs.Add(1)
	a.mu.Lock()
	a.lastErr = err
	a.mu.Unlock()
	if err != nil {
		return err
	}
	if st.Added+st.Updated+st.Removed > 0 {
		a.log.Info("routes synced", "added", st.Added, "updated", st.Updated, "removed", st.Removed, "peers", len(remotes))
	}
	a.routesRV.synced.Store(rv)
	a.routesDone.Store(true)
	a.markReady()
	return nil
}

// publish writes what other nodes need to know about this one to its Node object: the VTEP MAC
// annotation and the NetworkUnavailable=False condition.
func (a *Agent) publish(ctx context.Context) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := a.cfg.Client.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		changed := false
		want := ""
		if a.info.VTEPMAC != nil {
			want = a.info.VTEPMAC.String()
		}
		if n.Annotations[routing.AnnotationVTEPMAC] != want {
			if n.Annotations == nil {
				n.Annotations = map[string]string{}
			}
			if want == "" {
				delete(n.Annotations, routing.AnnotationVTEPMAC)
			} else {
				n.Annotations[routing.AnnotationVTEPMAC] = want
			}
			changed = true
		}
		if setCondition(&n.Status.Conditions, corev1.NodeCondition{Type: corev1.NodeNetworkUnavailable,
			Status: corev1.ConditionFalse, Reason: "PodnetIsUp", Message: "podnet " + a.backend.Name() + " is up"}) {
			changed = true
		}
		if !changed {
			return nil
		}
		_, err = a.cfg.Client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

// setCondition sets a condition, keeping its transition time when the status did not change.
func setCondition(conds *[]corev1.NodeCondition, c corev1.NodeCondition) bool {
	now := metav1.Now()
	for i := range *conds {
		old := &(*conds)[i]
		if old.Type != c.Type {
			continue
		}
		if old.Status == c.Status && old.Reason == c.Reason && old.Message == c.Message {
			return false
		}
		if old.Status != c.Status {
			old.LastTransitionTime = now
		}
		old.Status, old.Reason, old.Message, old.LastHeartbeatTime = c.Status, c.Reason, c.Message, now
		return true
	}
	c.LastTransitionTime, c.LastHeartbeatTime = now, now
	*conds = append(*conds, c)
	return true
}

// conflist is the CNI configuration this node's runtime uses: podnet-cni, chained with the
// reference bandwidth plugin when it is installed (so the kubernetes.io/*-bandwidth pod
// annotations work). The list's cniVersion is the newest version every chained plugin supports:
// Debian's bandwidth plugin stops at 1.0.0, and a 1.1.0 list would make it refuse every ADD.
func (a *Agent) conflist(ctx context.Context) ([]byte, error) {
	plugins := []map[string]interface{}{{
		"type":        "podnet-cni",
		"bridge":      a.cfg.Bridge,
		"podCIDR":     a.local.PodCIDR.String(),
		"dataDir":     a.cfg.IPAMDir,
		"mtu":         a.info.MTU,
		"hairpinMode": true,
	}}
	version := "1.1.0"
	if len(a.cfg.CNIBinDirs) > 0 {
		if vi, err := libcni.NewCNIConfig(a.cfg.CNIBinDirs, nil).GetVersionInfo(ctx, "bandwidth"); err == nil {
			plugins = append(plugins, map[string]interface{}{"type": "bandwidth", "capabilities": map[string]bool{"bandwidth": true}})
			version = newestCommon(vi.SupportedVersions(), version)
		}
	}
	return json.MarshalIndent(map[string]interface{}{
		"cniVersion": version,
		"name":       NetworkName,
		"plugins":    plugins,
	}, "", "  ")
}

// newestCommon is the newest version in supported that is not newer than limit.
func newestCommon(supported []string, limit string) string {
	best := ""
	for _, v := range supported {
		if ok, _ := cniversion.GreaterThan(v, limit); ok {
			continue
		}
		if best == "" {
			best = v
		} else if ok, _ := cniversion.GreaterThan(v, best); ok {
			best = v
		}
	}
	if best == "" {
		return limit
	}
	return best
}

// writeFileAtomic replaces path with data, never leaving a half-written file behind.
func writeFileAtomic(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
