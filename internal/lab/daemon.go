package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/podnet/podnet/internal/agent"
	"github.com/podnet/podnet/internal/flows"
	"github.com/podnet/podnet/internal/ipam"
)

// agentResources are the resources node agents watch: a change to them is programmed once every
// agent's synced resourceVersion has reached the change's.
var agentResources = []string{"nodes", "pods", "services", "endpointslices", "networkpolicies", "namespaces"}

// LabelLab marks the Node objects of a lab with the lab's name.
const LabelLab = "podnet.io/lab"

// Daemon is the lab's control plane and node software, in one process: the embedded API server,
// the controllers, one kubelet and one node agent per node, and the API the CLI talks to.
type Daemon struct {
	cfg        Config
	paths      Paths
	store      *Store
	client     kubernetes.Interface
	log        *slog.Logger
	selfExe    string
	cniBinDirs []string

	factory  informers.SharedInformerFactory
	kubelets map[string]*kubelet
	slices   *endpointSliceController
	lb       *lbController
	router   *router
	flows    *flows.Log // every node's verdict log

	// applyMu serialises applies: admission allocates against what the store holds.
	applyMu sync.Mutex

	mu     sync.Mutex
	agents map[string]*agentRun
	ctx    context.Context
	stop   context.CancelFunc
	ready  bool

	onReady func()
}

type agentRun struct {
	agent  *agent.Agent
	cancel context.CancelFunc
	done   chan struct{}
}

// DaemonOptions are how the daemon finds its helpers.
type DaemonOptions struct {
	SelfExe    string   // the podnet binary (started in pods as the workload server)
	CNIBinDirs []string // where podnet-cni and the reference plugins are
	Log        *slog.Logger
}

// NewDaemon prepares a daemon for a lab whose config is stored in its state directory.
func NewDaemon(cfg Config, opts DaemonOptions) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	d := &Daemon{cfg: cfg, paths: PathsFor(cfg.Name), log: opts.Log, selfExe: opts.SelfExe,
		cniBinDirs: opts.CNIBinDirs, kubelets: map[string]*kubelet{}, agents: map[string]*agentRun{},
		flows: flows.NewLog(flowLogSize)}
	return d, nil
}

// dnsIP is the cluster DNS Service address: the tenth address of the Service CIDR.
func (d *Daemon) dnsIP() net.IP {
	n := mustCIDR(d.cfg.ServiceCIDR)
	ip := make(net.IP, 4)
	copy(ip, n.IP.To4())
	ip[3] += 10
	return ip
}

// Run builds (or adopts) the lab, serves until ctx is done or a shutdown is requested, and stops.
// With destroy, it removes everything of the lab on the way out.
func (d *Daemon) Run(ctx context.Context) (err error) {
	ctx, d.stop = context.WithCancel(ctx)
	defer d.stop()
	d.ctx = ctx
	if d.store, err = NewStore(d.paths.Objects()); err != nil {
		return err
	}
	defer d.store.Close()
	d.client = d.store.Client()
	kubeAPI, err := StartKubeAPI(d.store, d.paths.APISocket(), d.log)
	if err != nil {
		return err
	}
	defer kubeAPI.Close()
	if err := os.WriteFile(d.paths.PIDFile(), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return err
	}
	if err := buildUnderlay(d.cfg); err != nil {
		return fmt.Errorf("underlay: %w", err)
	}
	if err := d.ensureNamespaces(ctx); err != nil {
		return err
	}
	nodes, err := d.ensureNodes(ctx)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		d.startAgent(n.Name)
	}
	if err := d.waitAgentsReady(ctx, 60*time.Second); err != nil {
		return err
	}
	for _, n := range nodes {
		if err := d.setNodeReady(ctx, n.Name); err != nil {
			return err
		}
	}
	// Ready means every node routes to every other: wait until each agent has programmed the
	// Node objects as they are now, with every VTEP published.
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	err = d.waitProgrammed(wctx, d.store.MaxRV(agentResources...))
	cancel()
	if err != nil {
		return err
	}

	d.factory = informers.NewSharedInformerFactory(d.client, 0)
	podInf := d.factory.Core().V1().Pods()
	for _, n := range nodes {
		k := newKubelet(d, n.Name, nodeInternalIP(n), podInf.Lister())
		d.kubelets[n.Name] = k
		if _, err := podInf.Informer().AddEventHandler(k.handler()); err != nil {
			return err
		}
	}
	ctrl := newControllers(d)
	if err := ctrl.register(d.factory); err != nil {
		return err
	}
	d.slices, d.lb, d.router = newEndpointSliceController(d), newLBController(d), newRouter(d)
	for _, c := range []interface {
		register(informers.SharedInformerFactory) error
	}{d.slices, d.lb, d.router} {
		if err := c.register(d.factory); err != nil {
			return err
		}
	}
	d.factory.Start(ctx.Done())
	defer d.factory.Shutdown()
	d.factory.WaitForCacheSync(ctx.Done())
	for _, k := range d.kubelets {
		go k.run(ctx, 4)
	}
	go ctrl.run(ctx)
	go d.slices.run(ctx, 2)
	go d.lb.run(ctx)
	go d.router.run(ctx)

	srv, err := d.serveAPI()
	if err != nil {
		return err
	}
	defer srv.Close()
	if err := d.ensureClusterDNS(ctx); err != nil {
		return fmt.Errorf("cluster DNS: %w", err)
	}
	d.mu.Lock()
	d.ready = true
	d.mu.Unlock()
	if d.onReady != nil {
		d.onReady()
	}
	d.log.Info("lab is up", "lab", d.cfg.Name, "nodes", d.cfg.Nodes, "backend", d.cfg.Backend)
	<-ctx.Done()
	d.stopAgents()
	return nil
}

func (d *Daemon) ensureNamespaces(ctx context.Context) error {
	for _, ns := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		_, err := d.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
			ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{corev1.LabelMetadataName: ns}},
			Status:     corev1.NamespaceStatus{Phase: corev1.NamespaceActive},
		}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	return nil
}

// ensureNodes creates the Node objects a new lab needs, each with a podCIDR from the cluster
// CIDR, and returns all of them (a restarted daemon finds them in the store).
func (d *Daemon) ensureNodes(ctx context.Context) ([]*corev1.Node, error) {
	alloc, err := ipam.NewNodeAllocator(mustCIDR(d.cfg.PodCIDR), d.cfg.NodeCIDRSize)
	if err != nil {
		return nil, err
	}
	existing := map[string]*corev1.Node{}
	list, err := d.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range list.Items {
		n := &list.Items[i]
		existing[n.Name] = n
		if _, c, err := net.ParseCIDR(n.Spec.PodCIDR); err == nil {
			if err := alloc.Occupy(c); err != nil {
				return nil, fmt.Errorf("node %s: %w", n.Name, err)
			}
		}
	}
	underlay := mustCIDR(d.cfg.UnderlayCIDR)
	var out []*corev1.Node
	for i := 1; i <= d.cfg.Nodes; i++ {
		name := NodeName(i)
		if n, ok := existing[name]; ok {
			out = append(out, n)
			continue
		}
		cidr, err := alloc.Allocate()
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", name, err)
		}
		n := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
				corev1.LabelHostname: name, corev1.LabelOSStable: "linux", corev1.LabelArchStable: "amd64", LabelLab: d.cfg.Name,
			}},
			Spec: corev1.NodeSpec{PodCIDR: cidr.String(), PodCIDRs: []string{cidr.String()}},
			Status: corev1.NodeStatus{
				Addresses: []corev1.NodeAddress{
					{Type: corev1.NodeInternalIP, Address: NodeAddress(underlay, i).IP.String()},
					{Type: corev1.NodeHostName, Address: name},
				},
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionFalse,
					Reason: "NetworkNotReady", LastTransitionTime: metav1.Now(), LastHeartbeatTime: metav1.Now()}},
				NodeInfo: corev1.NodeSystemInfo{OperatingSystem: "linux", Architecture: "amd64", KubeletVersion: "podnet-lab"},
			},
		}
		created, err := d.client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		if err != nil {
			return nil, err
		}
		out = append(out, created)
	}
	return out, nil
}

func nodeInternalIP(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}

func (d *Daemon) setNodeReady(ctx context.Context, name string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := d.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for i := range n.Status.Conditions {
			c := &n.Status.Conditions[i]
			if c.Type == corev1.NodeReady {
				if c.Status == corev1.ConditionTrue {
					return nil
				}
				c.Status, c.Reason, c.Message = corev1.ConditionTrue, "KubeletReady", "podnet lab node is ready"
				c.LastTransitionTime, c.LastHeartbeatTime = metav1.Now(), metav1.Now()
			}
		}
		_, err = d.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

// flowLogSize is how many flow records the lab keeps, over all nodes.
const flowLogSize = 20000

// startAgent runs the node agent of one node inside this process, bound to the node's namespace.
func (d *Daemon) startAgent(node string) *agentRun {
	nodeDir := d.paths.NodeDir(node)
	a, _ := agent.New(agent.Config{
		NodeName:    node,
		NetNS:       NetnsPath(NodeNetns(d.cfg.Name, node)),
		Client:      d.client,
		Backend:     d.cfg.Backend,
		ServiceCIDR: mustCIDR(d.cfg.ServiceCIDR),
		ClusterCIDR: mustCIDR(d.cfg.PodCIDR),
		CNIConfDir:  filepath.Join(nodeDir, "cni"),
		IPAMDir:     filepath.Join(nodeDir, "ipam"),
		CNIBinDirs:  d.cniBinDirs,
		Flows:       d.flows,
		Log:         d.log.With("agent", node),
	})
	ctx, cancel := context.WithCancel(d.ctx)
	r := &agentRun{agent: a, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		if err := a.Run(ctx); err != nil && ctx.Err() == nil {
			d.log.Error("node agent stopped", "node", node, "err", err)
		}
	}()
	d.mu.Lock()
	d.agents[node] = r
	d.mu.Unlock()
	return r
}

func (d *Daemon) waitAgentsReady(ctx context.Context, timeout time.Duration) error {
	d.mu.Lock()
	runs := make(map[string]*agentRun, len(d.agents))
	for n, r := range d.agents {
		runs[n] = r
	}
	d.mu.Unlock()
	deadline := time.After(timeout)
	for n, r := range runs {
		select {
		case <-r.agent.Ready():
		case <-r.done:
			return fmt.Errorf("node agent %s stopped before it was ready (see %s)", n, d.paths.Log())
		case <-deadline:
			return fmt.Errorf("node agent %s not ready after %s: %s", n, timeout, r.agent.Stats().LastError)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// RestartAgents stops the named node agents (all when none are named) and starts new ones, as
// a crash and restart of the agent process would. It returns when the new agents are ready.
func (d *Daemon) RestartAgents(nodes []string) error {
	d.mu.Lock()
	if len(nodes) == 0 {
		for n := range d.agents {
			nodes = append(nodes, n)
		}
	}
	var old []*agentRun
	for _, n := range nodes {
		r, ok := d.agents[n]
		if !ok {
			d.mu.Unlock()
			return fmt.Errorf("no node %q in lab %s", n, d.cfg.Name)
		}
		old = append(old, r)
	}
	d.mu.Unlock()
	for _, r := range old {
		r.cancel()
		<-r.done
	}
	for _, n := range nodes {
		d.startAgent(n)
	}
	return d.waitAgentsReady(d.ctx, 60*time.Second)
}

func (d *Daemon) stopAgents() {
	d.mu.Lock()
	runs := d.agents
	d.mu.Unlock()
	for _, r := range runs {
		r.cancel()
		<-r.done
	}
}

// agentStats lists every agent's counters.
func (d *Daemon) agentStats() []agent.Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []agent.Stats
	for i := 1; i <= d.cfg.Nodes; i++ {
		if r, ok := d.agents[NodeName(i)]; ok {
			out = append(out, r.agent.Stats())
		}
	}
	return out
}

// waitProgrammed waits until every agent has programmed the cluster state at resourceVersion rv,
// and the LAN router (once it runs) the part of that state its routes depend on.
func (d *Daemon) waitProgrammed(ctx context.Context, rv int64) error {
	for {
		done := true
		d.mu.Lock()
		for _, r := range d.agents {
			done = done && r.agent.SyncedRV() >= rv
		}
		d.mu.Unlock()
		routerDone := d.router == nil || d.router.SyncedRV() >= min(rv, d.store.MaxRV(routerResources...))
		if done && routerDone {
			return nil
		}
		select {
		case <-ctx.Done():
			if !done {
				return errors.New("timed out waiting for every node agent to program the change")
			}
			return errors.New("timed out waiting for the lab's LAN router to program the change")
		case <-time.After(20 * time.Millisecond):
		}
	}
}
