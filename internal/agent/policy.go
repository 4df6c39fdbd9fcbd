package agent

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	listersv1 "k8s.io/client-go/listers/core/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"

	"github.com/podnet/podnet/internal/flows"
	"github.com/podnet/podnet/internal/policy"
	"github.com/podnet/podnet/internal/runner"
)

// policyState is the agent's NetworkPolicy enforcement: the node's podnet-policy table.
type policyState struct {
	kernel     *policy.Kernel
	policies   networkinglisters.NetworkPolicyLister
	pods       listersv1.PodLister
	namespaces listersv1.NamespaceLister
	model      atomic.Pointer[policy.Model] // the last compiled model, for the verdict log
	denied     *prometheus.CounterVec
}

// setupPolicy watches NetworkPolicies, Pods and Namespaces and returns the runner that keeps
// the node's policy table in step with them.
func (a *Agent) setupPolicy(factory informers.SharedInformerFactory) (*runner.Runner, func(), error) {
	kern, err := policy.NewKernel(int(a.nsh))
	if err != nil {
		return nil, nil, fmt.Errorf("agent %s: nftables (policy): %w", a.cfg.NodeName, err)
	}
	r := runner.New("policy/"+a.cfg.NodeName, a.syncPolicy, 10*time.Millisecond, 5*time.Minute, a.log)
	polInf := factory.Networking().V1().NetworkPolicies()
	podInf := factory.Core().V1().Pods()
	nsInf := factory.Core().V1().Namespaces()
	for _, inf := range []func() error{
		func() error { _, err := polInf.Informer().AddEventHandler(handlerFor(&a.policyRV, r)); return err },
		func() error { _, err := podInf.Informer().AddEventHandler(handlerFor(&a.policyRV, r)); return err },
		func() error { _, err := nsInf.Informer().AddEventHandler(handlerFor(&a.policyRV, r)); return err },
	} {
		if err := inf(); err != nil {
			kern.Close()
			return nil, nil, err
		}
	}
	a.pol = &policyState{kernel: kern, policies: polInf.Lister(), pods: podInf.Lister(), namespaces: nsInf.Lister(),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podnet_policy_denied_packets_total",
			Help: "New connections' packets dropped by NetworkPolicy on this node, per deciding policy (direction ingress or egress), or for a pod whose policies were not programmed yet (direction pending, no policy). Counted as logged: at most 200 per second per direction.",
		}, []string{"direction", "namespace", "policy"})}
	if a.px != nil {
		if err := a.px.metrics.Registry().Register(a.pol.denied); err != nil {
			kern.Close()
			return nil, nil, err
		}
	}
	return r, func() { kern.Close() }, nil
}

// runVerdictLog receives the packets the policy table drops (NFLOG) until ctx is done and
// turns each into a flow record and a count for the policies that decided. Without it (another
// process holds the group) enforcement is unchanged; only the log is missing.
func (a *Agent) runVerdictLog(ctx context.Context) {
	warned := false
	for ctx.Err() == nil {
		l, err := flows.Start(ctx, int(a.nsh), policy.LogGroup, a.onDenied)
		if err == nil {
			<-l.Done()
			continue
		}
		if !warned {
			a.log.Warn("no verdict log yet: cannot receive the policy table's NFLOG group; retrying", "group", policy.LogGroup, "err", err)
			warned = true
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// onDenied attributes one dropped packet with the current model: the policies isolating the
// pod in the direction that dropped it, none of which allows the packet.
func (a *Agent) onDenied(pkt flows.Packet) {
	rec := flows.Record{Time: pkt.Time, Node: a.cfg.NodeName, Verdict: flows.Denied, Src: pkt.Src, Dst: pkt.Dst,
		Protocol: flows.ProtocolName(pkt.Protocol), SrcPort: pkt.SrcPort, DstPort: pkt.DstPort}
	switch pkt.Prefix {
	case policy.LogPrefixEgress:
		rec.Direction = flows.Egress
	case policy.LogPrefixIngress:
		rec.Direction = flows.Ingress
	case policy.LogPrefixPending:
		rec.Direction = "pending"
	default:
		return
	}
	if m := a.pol.model.Load(); m != nil {
		if p := m.PodByIP(pkt.Src); p != nil {
			rec.SrcPod = p.Ref.String()
		}
		if p := m.PodByIP(pkt.Dst); p != nil {
			rec.DstPod = p.Ref.String()
		}
		if rec.Direction != "pending" {
			v := m.Evaluate(pkt.Src, pkt.Dst, corev1.Protocol(rec.Protocol), pkt.DstPort)
			d := v.Ingress
			if rec.Direction == flows.Egress {
				d = v.Egress
			}
			for _, ref := range d.IsolatedBy {
				rec.Policies = append(rec.Policies, ref.String())
			}
		}
	}
	if len(rec.Policies) == 0 {
		a.pol.denied.WithLabelValues(rec.Direction, "", "").Inc()
	}
	for _, ref := range rec.Policies {
		ns, name, _ := strings.Cut(ref, "/")
		a.pol.denied.WithLabelValues(rec.Direction, ns, name).Inc()
	}
	a.flows.Add(rec)
}

// syncPolicy compiles every policy against the pods and namespaces, renders this node's table
// and applies the difference; it is the policy runner's function.
func (a *Agent) syncPolicy(ctx context.Context) error {
	p := a.pol
	rv := a.policyRV.seen.Load()
	pols, err := p.policies.List(labels.Everything())
	if err != nil {
		return err
	}
	pods, err := p.pods.List(labels.Everything())
	if err != nil {
		return err
	}
	nss, err := p.namespaces.List(labels.Everything())
	if err != nil {
		return err
	}
	var local []netip.Addr
	for _, pod := range pods {
		if pod.Spec.NodeName == a.cfg.NodeName {
			local = append(local, policy.PodIPs(pod)...)
		}
	}
	// Any other address of the node's pod CIDR belongs to a pod this sync has not seen: it is
	// cut off until a sync renders its policies (fail closed).
	var cidrs []netip.Prefix
	if c := a.local.PodCIDR; c != nil {
		if p, err := netip.ParsePrefix(c.String()); err == nil {
			cidrs = append(cidrs, p)
		}
	}
	m := policy.Compile(pols, pods, nss)
	p.model.Store(m)
	rs := policy.Render(m, policy.NodeInfo{LocalPodIPs: local, PodCIDRs: cidrs})
	n, err := p.kernel.Apply(rs)
	a.syncs.Add(1)
	if err != nil {
		a.mu.Lock()
		a.lastErr = err
		a.mu.Unlock()
		return err
	}
	a.writes.Add(int64(n))
	if n > 0 {
		a.log.Info("policies synced", "policies", len(pols), "localPods", len(local), "elementsChanged", n)
	}
	a.policyRV.synced.Store(rv)
	a.policyDone.Store(true)
	a.markReady()
	return nil
}
