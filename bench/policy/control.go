package main

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podnet/podnet/internal/policy"

	"github.com/podnet/podnet/bench/internal/benchenv"
)

// objects is one state of the cluster as the agent's listers hold it.
type objects struct {
	pols []*networkingv1.NetworkPolicy
	pods []*corev1.Pod
	nss  []*corev1.Namespace
}

// step is one sync's time split, and how many set elements it changed.
type step struct {
	compile, render, apply time.Duration
	changed                int
}

func (s step) total() time.Duration { return s.compile + s.render + s.apply }

// syncNode does what the agent's syncPolicy does for node-0: Compile every policy against every pod
// and namespace, Render the node's table, Apply the difference.
func syncNode(k *policy.Kernel, o objects) (step, *policy.Ruleset, error) {
	t0 := time.Now()
	m := policy.Compile(o.pols, o.pods, o.nss)
	t1 := time.Now()
	rs := policy.Render(m, nodeInfo(o.pods, localNode))
	t2 := time.Now()
	n, err := k.Apply(rs)
	t3 := time.Now()
	return step{t1.Sub(t0), t2.Sub(t1), t3.Sub(t2), n}, rs, err
}

// change is one one-object change from the state the previous change left: changes come in
// pairs, a change and its undo, so every pair starts and ends at the base set.
type change struct {
	name    string
	to      objects
	undo    bool // the second of a pair
	samples []step
	rebuilt int    // samples where policy.Kernel rebuilt the table instead of a diff
	diff    string // the element diff, per set
	failed  string
}

func controlPlane(ctx context.Context, e *env, t *benchenv.Table, sizes []size) error {
	t.Section(fmt.Sprintf("1. control plane, node-0 holds 1/%d of the pods. Build: Compile + Render + first Apply in a fresh namespace, median of ≤ %d; "+
		"one change (and its undo) = full Compile + Render + Apply (element diff, or the Kernel's own choice of an atomic rebuild), median of ≤ %d",
		numNodes, *flagCPRuns, *flagReps))
	for _, sz := range sizes {
		if err := controlSize(ctx, e, t, sz); err != nil {
			return fmt.Errorf("%s: %w", sz, err)
		}
	}
	return nil
}

func controlSize(ctx context.Context, e *env, t *benchenv.Table, sz size) error {
	c := genCluster(sz.pods, sz.policies)
	base := objects{c.policies, c.pods, c.namespaces}
	local := localIPs(c.pods, localNode)
	var compiles, renders, applies []time.Duration
	var k *policy.Kernel
	var kns *nsRef
	var rs *policy.Ruleset
	defer func() {
		if k != nil {
			k.Close()
		}
		if kns != nil {
			kns.Release()
		}
	}()
	sizeStart := time.Now()
	for r := 0; r < *flagCPRuns && (r == 0 || time.Since(sizeStart) < *flagCPBudget); r++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if k != nil {
			k.Close()
			kns.Release()
			k, kns = nil, nil
		}
		var err error
		kns, err = e.OpenNS(ctx, fmt.Sprintf("cp%d-%d-%d", sz.pods, sz.policies, r))
		if err != nil {
			return err
		}
		runtime.GC() // do not bill the previous run's garbage to this one
		t0 := time.Now()
		m := policy.Compile(base.pols, base.pods, base.nss)
		t1 := time.Now()
		rs = policy.Render(m, nodeInfo(base.pods, localNode))
		t2 := time.Now()
		var d time.Duration
		if k, d, err = install(int(kns.H), rs); err != nil {
			return fmt.Errorf("first apply: %w", err)
		}
		compiles, renders, applies = append(compiles, t1.Sub(t0)), append(renders, t2.Sub(t1)), append(applies, d)
	}
	total, per := elements(rs)
	m := policy.Compile(c.policies, c.pods, c.namespaces)
	changes, err := c.changes(m, base)
	if err != nil {
		return err
	}
	// Rounds of all changes in order; after the first round, no round starts past the budget.
	// A change that fails gets a FAILED row, the base table is installed again, and neither it
	// nor its pair is tried again.
	deadline := time.Now().Add(*flagChangeBudget)
	prev := rs
	for r := 0; r < *flagReps && (r == 0 || time.Now().Before(deadline)); r++ {
		for i, ch := range changes {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if ch.failed != "" {
				continue
			}
			st, next, err := syncNode(k, ch.to)
			if err != nil {
				ch.failed = fmt.Sprintf("%v (element diff %s)", err, diffText(prev, next))
				fmt.Printf("  %s, %s: FAILED: %s\n", sz, ch.name, ch.failed)
				other := changes[i+1]
				if ch.undo {
					other = changes[i-1]
				}
				if other.failed == "" {
					other.failed = "not tried: its pair failed"
				}
				k.Close()
				if k, _, err = install(int(kns.H), rs); err != nil {
					return fmt.Errorf("reinstall after a failed change: %w", err)
				}
				prev = rs
				continue
			}
			ch.samples = append(ch.samples, st)
			ch.diff = diffText(prev, next)
			if n, _ := elements(next); st.changed != diffCount(prev, next) && st.changed == n {
				ch.rebuilt++
			}
			prev = next
		}
	}
	cm, rm, am := benchenv.MedianDur(compiles), benchenv.MedianDur(renders), benchenv.MedianDur(applies)
	fmt.Printf("  %s: compile %s, render %s, first apply %s, %d elements (%.1f s for this size)\n", sz, ms(cm), ms(rm), ms(am), total, time.Since(sizeStart).Seconds())
	t.Add(fmt.Sprintf("%s: build (%d local pods, %d elements)", sz, len(local), total), ms(cm+rm+am), "",
		fmt.Sprintf("Compile %s + Render %s + first Apply %s (n=%d); sets %s", ms(cm), ms(rm), ms(am), len(applies), setSummary(per)))
	if diff, err := verify(int(kns.H), rs); err != nil {
		return err
	} else if diff != "" {
		fmt.Printf("  %s: WARNING: after the changes, the %s\n", sz, diff)
		t.Add("    WARNING: the table differs after the changes", "", "", diff)
	}
	for _, ch := range changes {
		if ch.failed != "" {
			t.Add("    "+ch.name, "FAILED", "", ch.failed)
			continue
		}
		var tot, cs, rsd, as []time.Duration
		for _, s := range ch.samples {
			tot, cs, rsd, as = append(tot, s.total()), append(cs, s.compile), append(rsd, s.render), append(as, s.apply)
		}
		how := "element diff"
		switch {
		case ch.rebuilt == len(ch.samples):
			how = fmt.Sprintf("the Kernel rebuilt the whole table (%d elements) instead", total)
		case ch.rebuilt > 0:
			how = fmt.Sprintf("%d of %d times the Kernel rebuilt the whole table instead", ch.rebuilt, len(ch.samples))
		}
		t.Add("    "+ch.name, ms(benchenv.MedianDur(tot)), fmt.Sprintf("%.2f of build", float64(benchenv.MedianDur(tot))/float64(cm+rm+am)),
			fmt.Sprintf("Compile %s + Render %s + Apply %s; diff %s; %s; n=%d",
				ms(benchenv.MedianDur(cs)), ms(benchenv.MedianDur(rsd)), ms(benchenv.MedianDur(as)), ch.diff, how, len(ch.samples)))
	}
	// The userspace share of an Apply: the same table again (the Kernel diffs every set and
	// finds nothing to send), and the kernel's own share: one element in and out of each allow
	// set, straight over netlink.
	var same []time.Duration
	for r := 0; r < 3; r++ {
		t0 := time.Now()
		if n, err := k.Apply(rs); err != nil || n != 0 {
			return fmt.Errorf("apply of the unchanged table: %d changes, %v", n, err)
		}
		same = append(same, time.Since(t0))
	}
	t.Add("    Kernel.Apply of the unchanged table (its diff alone)", ms(benchenv.MedianDur(same)), "", "median of 3; no transaction is sent")
	var raw []string
	for _, set := range []string{policy.SetEgressAllow, policy.SetIngressAllow} {
		add, del, err := rawCommit(int(kns.H), set, 3)
		if err != nil {
			return err
		}
		raw = append(raw, fmt.Sprintf("%s (%d): add %s, delete %s", set, per[set], ms(add), ms(del)))
	}
	t.Add("    kernel alone: one transaction of 1 element", "", "", strings.Join(raw, "; ")+" (median of 3, netlink straight)")
	return nil
}

func intRange(xs []int) string {
	if len(xs) == 0 {
		return "?"
	}
	if xs[0] == xs[len(xs)-1] {
		return fmt.Sprint(xs[0])
	}
	return fmt.Sprintf("%d–%d", xs[0], xs[len(xs)-1])
}

func setSummary(per map[string]int) string {
	var names []string
	for n := range per {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %d", n, per[n]))
	}
	return strings.Join(parts, ", ")
}

// changes builds the one-object changes of part 1, all of them touching node-0's table:
// a new policy for an app with pods on node-0 (and its deletion), a port change in an existing
// app-from-app policy selecting a node-0 pod, and an app-label change of a node-0 pod.
func (c *cluster) changes(m *policy.Model, base objects) ([]*change, error) {
	local := map[netip.Addr]bool{}
	for _, a := range localIPs(c.pods, localNode) {
		local[a] = true
	}
	isLocal := func(p *policy.Pod) bool { return len(p.IPs) > 0 && local[p.IPs[0]] }

	// A node-0 pod in an application namespace.
	var pod *corev1.Pod
	podIdx := -1
	for i, p := range c.pods {
		if strings.HasPrefix(p.Namespace, "ns-") && p.Spec.NodeName == nodeName(localNode) {
			pod, podIdx = p, i
			break
		}
	}
	if pod == nil {
		return nil, fmt.Errorf("no application pod on %s", nodeName(localNode))
	}

	// An existing policy with a numeric port that selects a node-0 pod, preferably app-from-app.
	polIdx := -1
	for _, want := range []string{"app-from-app", ""} {
		for _, p := range m.Policies {
			if !strings.Contains(p.Ref.Name, want) || len(p.IngressRules) == 0 {
				continue
			}
			sel := false
			for _, s := range p.Selected {
				sel = sel || isLocal(s)
			}
			if !sel {
				continue
			}
			for i, np := range c.policies {
				if np.Namespace == p.Ref.Namespace && np.Name == p.Ref.Name && numericPort(np) != nil {
					polIdx = i
				}
			}
			if polIdx >= 0 {
				break
			}
		}
		if polIdx >= 0 {
			break
		}
	}
	if polIdx < 0 {
		return nil, fmt.Errorf("no policy with a numeric ingress port selects a pod on %s", nodeName(localNode))
	}

	// add / delete: a new cross-namespace policy for the relabelled pod's app.
	extra := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: "bench-extra"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: *sel("app", pod.Labels["app"]),
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("env", "staging"), PodSelector: sel("tier", "backend")}},
				Ports: []networkingv1.NetworkPolicyPort{tcpPort(7000)}}}}}
	added := base
	added.pols = append(append([]*networkingv1.NetworkPolicy(nil), base.pols...), extra)

	// modify: the policy's first numeric port +1.
	mod := c.policies[polIdx].DeepCopy()
	p := numericPort(mod)
	*p = intstr.FromInt32(p.IntVal + 1)
	modified := base
	modified.pols = append([]*networkingv1.NetworkPolicy(nil), base.pols...)
	modified.pols[polIdx] = mod

	// relabel: the pod's app label to the next app.
	rp := pod.DeepCopy()
	var k int
	fmt.Sscanf(rp.Labels["app"], "svc-%d", &k)
	rp.Labels["app"] = appName((k + 1) % c.apps)
	relabelled := base
	relabelled.pods = append([]*corev1.Pod(nil), base.pods...)
	relabelled.pods[podIdx] = rp

	return []*change{
		{name: fmt.Sprintf("add 1 policy (%s/%s)", extra.Namespace, extra.Name), to: added},
		{name: "  delete it again", to: base, undo: true},
		{name: fmt.Sprintf("modify 1 policy's port (%s/%s)", mod.Namespace, mod.Name), to: modified},
		{name: "  modify it back", to: base, undo: true},
		{name: fmt.Sprintf("relabel 1 node-0 pod app=%s→%s", pod.Labels["app"], rp.Labels["app"]), to: relabelled},
		{name: "  relabel it back", to: base, undo: true},
	}, nil
}

// numericPort is the first numeric port of a policy's ingress rules, or nil.
func numericPort(np *networkingv1.NetworkPolicy) *intstr.IntOrString {
	for i := range np.Spec.Ingress {
		for j := range np.Spec.Ingress[i].Ports {
			if p := np.Spec.Ingress[i].Ports[j].Port; p != nil && p.Type == intstr.Int && np.Spec.Ingress[i].Ports[j].EndPort == nil {
				return p
			}
		}
	}
	return nil
}

// diffText is the element difference from a to b, per set that differs: name +added −removed.
func diffText(a, b *policy.Ruleset) string {
	if a == nil || b == nil {
		return "?"
	}
	var parts []string
	for _, sb := range b.Sets {
		sa := a.Set(sb.Name)
		if sa == nil {
			continue
		}
		add, del := 0, 0
		for key, e := range sb.Elements {
			if o, ok := sa.Elements[key]; !ok || string(o.KeyEnd) != string(e.KeyEnd) {
				add++
			}
		}
		for key, e := range sa.Elements {
			if o, ok := sb.Elements[key]; !ok || string(o.KeyEnd) != string(e.KeyEnd) {
				del++
			}
		}
		if add+del > 0 {
			parts = append(parts, fmt.Sprintf("%s +%d −%d", sb.Name, add, del))
		}
	}
	if len(parts) == 0 {
		return "no element"
	}
	return strings.Join(parts, ", ")
}

// diffCount is the number of elements that differ from a to b (added plus removed).
func diffCount(a, b *policy.Ruleset) int {
	n := 0
	for _, sb := range b.Sets {
		sa := a.Set(sb.Name)
		for key, e := range sb.Elements {
			if o, ok := sa.Elements[key]; !ok || string(o.KeyEnd) != string(e.KeyEnd) {
				n++
			}
		}
		for key, e := range sa.Elements {
			if o, ok := sb.Elements[key]; !ok || string(o.KeyEnd) != string(e.KeyEnd) {
				n++
			}
		}
	}
	return n
}
