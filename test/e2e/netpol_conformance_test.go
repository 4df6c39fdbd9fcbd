package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/podnet/podnet/internal/netnsutil"
	"github.com/podnet/podnet/internal/policy"
	"github.com/podnet/podnet/internal/workload"
)

// The netpol conformance layout, as upstream's netpol e2e suite has it: namespaces x, y, z
// (labelled ns=<name>), pods a, b, c in each (labelled pod=<name>), each serving 80 and 81 on
// TCP and UDP with ports named serve-<port>-<proto>, and one Service per pod (s-a, s-b, s-c)
// that every probe goes through, so policies are judged after Service DNAT.
var (
	npNamespaces = []string{"x", "y", "z"}
	npPodNames   = []string{"a", "b", "c"}
	// npPlacement spreads the 9 pods over 3 nodes so that same-node and cross-node pairs occur
	// both within a namespace and across namespaces.
	npPlacement = map[string]string{
		"x/a": "node-1", "x/b": "node-2", "x/c": "node-3",
		"y/a": "node-2", "y/b": "node-3", "y/c": "node-1",
		"z/a": "node-3", "z/b": "node-1", "z/c": "node-2",
	}
)

const npPodCIDR = "10.244.0.0/16" // the lab's default cluster CIDR

// npEnv is the shared lab of both netpol conformance tests.
type npEnv struct {
	lab   string
	refs  []policy.PodRef          // x/a x/b x/c y/a ... z/c: rows and columns of every matrix
	ip    map[policy.PodRef]string // pod IP
	svcIP map[policy.PodRef]string // ClusterIP of the pod's own Service
	node  map[policy.PodRef]string
}

func npRefs() []policy.PodRef {
	var out []policy.PodRef
	for _, ns := range npNamespaces {
		for _, p := range npPodNames {
			out = append(out, policy.PodRef{Namespace: ns, Name: p})
		}
	}
	return out
}

func npServePorts() []corev1.ContainerPort {
	var out []corev1.ContainerPort
	for _, port := range []int32{80, 81} {
		for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP} {
			out = append(out, corev1.ContainerPort{
				Name:          fmt.Sprintf("serve-%d-%s", port, strings.ToLower(string(proto))),
				ContainerPort: port,
				Protocol:      proto,
			})
		}
	}
	return out
}

// npObjects is the layout as typed objects (namespaces, pods, Services).
func npObjects() []any {
	var objs []any
	for _, ns := range npNamespaces {
		objs = append(objs, &corev1.Namespace{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"ns": ns}},
		})
	}
	for _, ref := range npRefs() {
		objs = append(objs, &corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: ref.Name, Namespace: ref.Namespace, Labels: map[string]string{"pod": ref.Name}},
			Spec: corev1.PodSpec{
				NodeName:   npPlacement[ref.String()],
				Containers: []corev1.Container{{Name: "w", Image: "podnet/workload", Ports: npServePorts()}},
			},
		})
		svc := &corev1.Service{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
			ObjectMeta: metav1.ObjectMeta{Name: "s-" + ref.Name, Namespace: ref.Namespace},
			Spec:       corev1.ServiceSpec{Selector: map[string]string{"pod": ref.Name}},
		}
		for _, cp := range npServePorts() {
			svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{
				Name: cp.Name, Protocol: cp.Protocol, Port: cp.ContainerPort, TargetPort: intstr.FromInt32(cp.ContainerPort),
			})
		}
		objs = append(objs, svc)
	}
	return objs
}

// npListFile writes objects as one JSON List (JSON sidesteps YAML 1.1's "y" = true) and
// returns its path.
func npListFile(t *testing.T, objs []any) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": objs})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(t.TempDir(), "np-*.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

func setupNetpolLab(t *testing.T) *npEnv {
	t.Helper()
	lab := upLab(t, "e2enc", "--nodes", "3")
	mustPodnet(t, "apply", "--lab", lab, "-f", npListFile(t, npObjects()), "--wait")
	e := &npEnv{lab: lab, refs: npRefs(), ip: map[policy.PodRef]string{}, svcIP: map[policy.PodRef]string{},
		node: map[policy.PodRef]string{}}
	cidr := netip.MustParsePrefix(npPodCIDR)
	for _, ns := range npNamespaces {
		for _, p := range getPods(t, lab, ns) {
			ref := policy.PodRef{Namespace: ns, Name: p.Name}
			a, err := netip.ParseAddr(p.Status.PodIP)
			if err != nil || !cidr.Contains(a) {
				t.Fatalf("pod %s has IP %q, want one in %s", ref, p.Status.PodIP, npPodCIDR)
			}
			e.ip[ref] = p.Status.PodIP
			e.node[ref] = p.Spec.NodeName
		}
		for _, p := range npPodNames {
			e.svcIP[policy.PodRef{Namespace: ns, Name: p}] = getServiceIn(t, lab, ns, "s-"+p)
		}
	}
	for _, ref := range e.refs {
		if e.ip[ref] == "" || e.svcIP[ref] == "" || e.node[ref] != npPlacement[ref.String()] {
			t.Fatalf("pod %s: ip %q, service %q, node %q", ref, e.ip[ref], e.svcIP[ref], e.node[ref])
		}
	}
	return e
}

// npProto is a (protocol, port) pair probed over the whole matrix.
type npProto struct {
	proto corev1.Protocol
	port  int
}

func (p npProto) String() string { return fmt.Sprintf("%s/%d", p.proto, p.port) }

var npAllProtos = []npProto{{corev1.ProtocolTCP, 80}, {corev1.ProtocolTCP, 81}, {corev1.ProtocolUDP, 80}, {corev1.ProtocolUDP, 81}}

// npSem bounds the number of probes in flight (each dial holds a locked OS thread).
var npSem = make(chan struct{}, 200)

// UDP probes must be new flows. A kernel-chosen source port may repeat one an earlier probe of
// the same pair used while conntrack still holds that flow (30 s and more after its last
// datagram); a datagram of a known flow is "established" and passes whatever policy now says,
// which is how stateful policy works, not what a probe of new traffic wants to see. So every UDP
// probe from a pod gets a source port of its own, from a range the kernel does not hand out
// (ephemeral ports start at 32768).
var (
	npUDPPortMu sync.Mutex
	npUDPPort   = map[string]int{} // netns path -> last source port used
)

const npUDPPortLo, npUDPPortHi = 10000, 32000

func npDialUDP(ctx context.Context, nsPath, addr string) (net.Conn, error) {
	var lastErr error
	for try := 0; try < 10; try++ {
		npUDPPortMu.Lock()
		p := npUDPPort[nsPath] + 1
		if p < npUDPPortLo || p >= npUDPPortHi {
			p = npUDPPortLo
		}
		npUDPPort[nsPath] = p
		npUDPPortMu.Unlock()
		var c net.Conn
		err := netnsutil.Do(nsPath, func() error {
			var err error
			d := net.Dialer{LocalAddr: &net.UDPAddr{Port: p}}
			c, err = d.DialContext(ctx, "udp", addr)
			return err
		})
		if err == nil {
			return c, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// probeCell asks pod `from` to reach pod `to` through to's Service ClusterIP. It reports
// whether the target pod answered; an answer from another pod is an error (misrouting).
// patient probes wait longer (used to re-check mismatches).
func (e *npEnv) probeCell(from, to policy.PodRef, pp npProto, patient bool) (bool, error) {
	npSem <- struct{}{}
	defer func() { <-npSem }()
	nsPath := podNetns(e.lab, from.Namespace, from.Name)
	addr := net.JoinHostPort(e.svcIP[to], strconv.Itoa(pp.port))
	prober := workload.Prober{Dial: func(ctx context.Context, network, a string) (net.Conn, error) {
		if network == "udp" {
			return npDialUDP(ctx, nsPath, a)
		}
		return netnsutil.DialContext(ctx, nsPath, network, a)
	}}
	var r workload.Reply
	var err error
	if pp.proto == corev1.ProtocolTCP {
		d := time.Second
		if patient {
			d = 3 * time.Second
		}
		ctx, cancel := context.WithTimeout(context.Background(), d)
		r, err = prober.TCP(ctx, addr)
		cancel()
	} else {
		// A datagram may be lost without any policy in the way: retry within the budget.
		tries, d := 3, 350*time.Millisecond
		if patient {
			tries, d = 6, 500*time.Millisecond
		}
		for i := 0; i < tries; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), d)
			r, err = prober.UDP(ctx, addr)
			cancel()
			if err == nil {
				break
			}
		}
	}
	if err != nil {
		return false, nil
	}
	if r.Pod != to.Name || r.Namespace != to.Namespace {
		return true, fmt.Errorf("%s -> %s (%s %s): answered by %s/%s", from, to, pp, addr, r.Namespace, r.Pod)
	}
	return true, nil
}

// probeMatrix probes all 81 pairs concurrently.
func (e *npEnv) probeMatrix(pp npProto) ([][]bool, []error) {
	n := len(e.refs)
	out := make([][]bool, n)
	for i := range out {
		out[i] = make([]bool, n)
	}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for i := range e.refs {
		for j := range e.refs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := e.probeCell(e.refs[i], e.refs[j], pp, false)
				out[i][j] = ok
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	return out, errs
}

// npCheck is one expectation: the matrix for a (protocol, port).
type npCheck struct {
	pp   npProto
	want [][]bool
}

// npResult is what verifying one check found.
type npResult struct {
	check    npCheck
	first    [][]bool // the first probe
	got      [][]bool // after re-probing mismatches
	mismatch [][2]int // cells that still differ
	flaky    [][2]int // cells that differed at first and matched when re-probed
	errs     []error
}

// verify probes every check's matrix (all checks concurrently), re-probes mismatching cells
// twice, patiently, and returns what still differs.
func (e *npEnv) verify(checks []npCheck) []npResult {
	res := make([]npResult, len(checks))
	var wg sync.WaitGroup
	for k, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := npResult{check: c}
			r.first, r.errs = e.probeMatrix(c.pp)
			r.got = make([][]bool, len(r.first))
			for i := range r.first {
				r.got[i] = append([]bool(nil), r.first[i]...)
			}
			var bad [][2]int
			for i := range r.got {
				for j := range r.got[i] {
					if r.got[i][j] != c.want[i][j] {
						bad = append(bad, [2]int{i, j})
					}
				}
			}
			for round := 0; round < 2 && len(bad) > 0; round++ {
				var mu sync.Mutex
				var still [][2]int
				var rwg sync.WaitGroup
				for _, cell := range bad {
					rwg.Add(1)
					go func() {
						defer rwg.Done()
						ok, err := e.probeCell(e.refs[cell[0]], e.refs[cell[1]], c.pp, true)
						mu.Lock()
						defer mu.Unlock()
						if err != nil {
							r.errs = append(r.errs, err)
						}
						r.got[cell[0]][cell[1]] = ok
						if ok != c.want[cell[0]][cell[1]] {
							still = append(still, cell)
						}
					}()
				}
				rwg.Wait()
				bad = still
			}
			npSortCells(bad)
			r.mismatch = bad
			for i := range r.first {
				for j := range r.first[i] {
					if r.first[i][j] != c.want[i][j] && r.got[i][j] == c.want[i][j] {
						r.flaky = append(r.flaky, [2]int{i, j})
					}
				}
			}
			res[k] = r
		}()
	}
	wg.Wait()
	return res
}

func npSortCells(c [][2]int) {
	sort.Slice(c, func(a, b int) bool {
		if c[a][0] != c[b][0] {
			return c[a][0] < c[b][0]
		}
		return c[a][1] < c[b][1]
	})
}

// report describes a result; ok is false when it must fail the test.
func (e *npEnv) report(r npResult, explain func(from, to policy.PodRef, pp npProto) string) (string, bool) {
	var b strings.Builder
	for _, c := range r.flaky {
		fmt.Fprintf(&b, "note: %s %s -> %s was %v on the first probe, %v (as expected) on re-probe\n",
			r.check.pp, e.refs[c[0]], e.refs[c[1]], r.first[c[0]][c[1]], r.got[c[0]][c[1]])
	}
	for _, err := range r.errs {
		fmt.Fprintf(&b, "misrouted: %v\n", err)
	}
	if len(r.mismatch) == 0 && len(r.errs) == 0 {
		return b.String(), true
	}
	fmt.Fprintf(&b, "%s: %d cell(s) differ\nexpected:\n%sobserved:\n%s", r.check.pp, len(r.mismatch),
		policy.FormatMatrix(e.refs, r.check.want), policy.FormatMatrix(e.refs, r.got))
	for _, c := range r.mismatch {
		from, to := e.refs[c[0]], e.refs[c[1]]
		fmt.Fprintf(&b, "  %s -> %s (pod IP %s, via %s): expected %s, observed %s\n", from, to, e.ip[to], e.svcIP[to],
			npVerdict(r.check.want[c[0]][c[1]]), npVerdict(r.got[c[0]][c[1]]))
		if explain != nil {
			for _, l := range strings.Split(strings.TrimSpace(explain(from, to, r.check.pp)), "\n") {
				fmt.Fprintf(&b, "      %s\n", l)
			}
		}
	}
	return b.String(), false
}

func npVerdict(ok bool) string {
	if ok {
		return "allowed"
	}
	return "denied"
}

// expect verifies checks and fails t (without stopping it) on any difference.
func (e *npEnv) expect(t *testing.T, what string, checks ...npCheck) bool {
	t.Helper()
	ok := true
	for _, r := range e.verify(checks) {
		msg, good := e.report(r, nil)
		if !good {
			ok = false
			t.Errorf("%s: %s", what, msg)
		} else if msg != "" {
			t.Logf("%s: %s", what, msg)
		}
	}
	return ok
}

// deleteAllPolicies removes every NetworkPolicy of the lab and waits until every node has
// programmed that.
func (e *npEnv) deleteAllPolicies(t *testing.T) {
	t.Helper()
	out := mustPodnet(t, "get", "networkpolicies", "--lab", e.lab, "-A", "-o", "json")
	var list struct{ Items []networkingv1.NetworkPolicy }
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("decode networkpolicies: %v\n%s", err, out)
	}
	if len(list.Items) == 0 {
		return
	}
	var objs []any
	for _, p := range list.Items {
		objs = append(objs, &networkingv1.NetworkPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
			ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace},
		})
	}
	mustPodnet(t, "delete", "--lab", e.lab, "-f", npListFile(t, objs), "--wait")
}

// grid parses 9 rows (sources x/a .. z/c) of 9 cells (destinations x/a .. z/c), "." allowed,
// "X" denied; spaces are ignored.
func npGrid(rows ...string) [][]bool {
	if len(rows) != 9 {
		panic(fmt.Sprintf("grid: %d rows, want 9", len(rows)))
	}
	out := make([][]bool, len(rows))
	for i, r := range rows {
		r = strings.ReplaceAll(r, " ", "")
		if len(r) != 9 {
			panic(fmt.Sprintf("grid: row %q has %d cells, want 9", r, len(r)))
		}
		out[i] = make([]bool, len(r))
		for j, c := range r {
			out[i][j] = c == '.'
		}
	}
	return out
}

// same9 is a grid whose 9 rows are all row.
func npSame9(row string) [][]bool {
	rows := make([]string, 9)
	for i := range rows {
		rows[i] = row
	}
	return npGrid(rows...)
}

const npAll = "... ... ..."

var npEverything = npSame9(npAll)

func npTCP(port int, want [][]bool) npCheck { return npCheck{npProto{corev1.ProtocolTCP, port}, want} }
func npUDP(port int, want [][]bool) npCheck { return npCheck{npProto{corev1.ProtocolUDP, port}, want} }

// npStep is one step of a conformance case: optionally apply policies (YAML with $IP(ns/pod)
// placeholders), delete a policy, run an action (labels), then verify the checks.
type npStep struct {
	apply  string
	delete [2]string // namespace, name
	do     func(t *testing.T, e *npEnv)
	checks []npCheck
}

type npCase struct {
	name  string
	steps []npStep
}

// npPolicy renders a NetworkPolicy header; spec is indented YAML below "spec:".
func npPolicy(ns, name, spec string) string {
	return fmt.Sprintf("---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: %s, namespace: %q}\nspec:\n%s\n", name, ns, spec)
}

func (e *npEnv) expand(s string) string {
	for _, ref := range e.refs {
		s = strings.ReplaceAll(s, "$IP("+ref.String()+")", e.ip[ref])
	}
	if strings.Contains(s, "$IP(") {
		panic("unexpanded placeholder in " + s)
	}
	return s
}

func npLabel(kind, ns, name, kv string) func(t *testing.T, e *npEnv) {
	return func(t *testing.T, e *npEnv) {
		args := []string{"label", "--lab", e.lab, kind, name, kv, "--overwrite", "--wait"}
		if kind == "pod" {
			args = append(args, "-n", ns)
		}
		mustPodnet(t, args...)
	}
}

// npConformanceCases are modelled on upstream's netpol e2e cases; every expected matrix is
// written by hand from the NetworkPolicy API semantics (rows: sources, columns: destinations,
// both in the order x/a x/b x/c y/a y/b y/c z/a z/b z/c). Traffic of a pod to itself (through
// its own Service) is judged like any other pair: the pod is both the egress and the ingress
// endpoint.
func npConformanceCases() []npCase {
	denyAllX := npPolicy("x", "deny-all", "  podSelector: {}\n  policyTypes: [Ingress, Egress]")
	return []npCase{
		{name: "default-deny-ingress (policyTypes defaulted)", steps: []npStep{{
			apply:  npPolicy("x", "deny-ingress", "  podSelector: {}"),
			checks: []npCheck{npTCP(80, npSame9("XXX ... ...")), npUDP(81, npSame9("XXX ... ..."))},
		}}},
		{name: "default-deny-egress", steps: []npStep{{
			apply: npPolicy("x", "deny-egress", "  podSelector: {}\n  policyTypes: [Egress]"),
			checks: []npCheck{
				npTCP(80, npGrid("XXX XXX XXX", "XXX XXX XXX", "XXX XXX XXX", npAll, npAll, npAll, npAll, npAll, npAll)),
				npUDP(80, npGrid("XXX XXX XXX", "XXX XXX XXX", "XXX XXX XXX", npAll, npAll, npAll, npAll, npAll, npAll)),
			},
		}}},
		{name: "default-deny-all", steps: []npStep{{
			apply: denyAllX,
			checks: []npCheck{npTCP(81, npGrid("XXX XXX XXX", "XXX XXX XXX", "XXX XXX XXX",
				"XXX ... ...", "XXX ... ...", "XXX ... ...", "XXX ... ...", "XXX ... ...", "XXX ... ..."))},
		}}},
		{name: "allow from pods in the server's namespace by podSelector", steps: []npStep{{
			apply: npPolicy("x", "x-a-from-x-b", `  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{podSelector: {matchLabels: {pod: b}}}]`),
			checks: []npCheck{
				npTCP(80, npGrid("X.. ... ...", npAll, "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...")),
				npUDP(81, npGrid("X.. ... ...", npAll, "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...")),
			},
		}}},
		{name: "podSelector with matchExpressions", steps: []npStep{{
			apply: npPolicy("x", "x-a-from-b-c", `  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{podSelector: {matchExpressions: [{key: pod, operator: In, values: [b, c]}]}}]`),
			checks: []npCheck{npTCP(80, npGrid("X.. ... ...", npAll, npAll, "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ..."))},
		}}},
		{name: "allow ingress for a target over a namespace default-deny", steps: []npStep{{
			apply: npPolicy("x", "deny-ingress", "  podSelector: {}\n  policyTypes: [Ingress]") +
				npPolicy("x", "allow-all-to-a", `  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{podSelector: {}, namespaceSelector: {}}]`),
			checks: []npCheck{npTCP(80, npSame9(".XX ... ...")), npUDP(80, npSame9(".XX ... ..."))},
		}}},
		{name: "allow from pods in all namespaces", steps: []npStep{{
			apply: npPolicy("x", "from-all-ns", `  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{namespaceSelector: {}}]`) + npPolicy("y", "deny-b", "  podSelector: {matchLabels: {pod: b}}"),
			checks: []npCheck{npTCP(80, npSame9("... .X. ..."))},
		}}},
		{name: "allow only from a different namespace by namespaceSelector", steps: []npStep{{
			apply: npPolicy("x", "from-y", `  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {ns: "y"}}}]`),
			checks: []npCheck{npTCP(80, npGrid("X.. ... ...", "X.. ... ...", "X.. ... ...", npAll, npAll, npAll, "X.. ... ...", "X.. ... ...", "X.. ... ..."))},
		}}},
		{name: "namespaceSelector NotIn (metadata.name) OR podSelector: two peers", steps: []npStep{{
			apply: npPolicy("x", "not-x-or-b", `  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from:
    - namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: ["x"]}]}
    - podSelector: {matchLabels: {pod: b}}`),
			checks: []npCheck{npTCP(80, npGrid("X.. ... ...", npAll, "X.. ... ...", npAll, npAll, npAll, npAll, npAll, npAll))},
		}}},
		{name: "podSelector AND namespaceSelector in one peer", steps: []npStep{{
			apply: npPolicy("x", "not-x-and-b", `  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from:
    - namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: ["x"]}]}
      podSelector: {matchLabels: {pod: b}}`),
			checks: []npCheck{npTCP(80, npGrid("X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", npAll, "X.. ... ...", "X.. ... ...", npAll, "X.. ... ..."))},
		}}},
		{name: "two peers: namespace+pod, and pod alone (own namespace only)", steps: []npStep{{
			apply: npPolicy("y", "from-x-a-or-c", `  podSelector: {}
  ingress:
  - from:
    - {namespaceSelector: {matchLabels: {ns: "x"}}, podSelector: {matchLabels: {pod: a}}}
    - {podSelector: {matchLabels: {pod: c}}}`),
			checks: []npCheck{npTCP(81, npGrid(npAll, "... XXX ...", "... XXX ...", "... XXX ...", "... XXX ...", npAll, "... XXX ...", "... XXX ...", "... XXX ..."))},
		}}},
		{name: "namespaceSelector matchExpressions In into a whole namespace", steps: []npStep{{
			apply: npPolicy("y", "from-x-z", `  podSelector: {}
  ingress:
  - from: [{namespaceSelector: {matchExpressions: [{key: ns, operator: In, values: ["x", "z"]}]}}]`),
			checks: []npCheck{npTCP(80, npGrid(npAll, npAll, npAll, "... XXX ...", "... XXX ...", "... XXX ...", npAll, npAll, npAll))},
		}}},
		{name: "pod c of every namespace into z", steps: []npStep{{
			apply: npPolicy("z", "from-any-c", `  podSelector: {}
  ingress:
  - from: [{namespaceSelector: {}, podSelector: {matchLabels: {pod: c}}}]`),
			checks: []npCheck{npUDP(80, npGrid("... ... XXX", "... ... XXX", npAll, "... ... XXX", "... ... XXX", npAll, "... ... XXX", "... ... XXX", npAll))},
		}}},
		{name: "allow only port 80 by number", steps: []npStep{{
			apply: npPolicy("x", "port-80", `  podSelector: {}
  ingress:
  - ports: [{port: 80}]`),
			checks: []npCheck{npTCP(80, npEverything), npTCP(81, npSame9("XXX ... ...")), npUDP(80, npSame9("XXX ... ..."))},
		}}},
		{name: "named port serve-81-tcp from one namespace", steps: []npStep{{
			apply: npPolicy("x", "named-81", `  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {ns: "y"}}}]
    ports: [{port: serve-81-tcp}]`),
			checks: []npCheck{
				npTCP(81, npGrid("X.. ... ...", "X.. ... ...", "X.. ... ...", npAll, npAll, npAll, "X.. ... ...", "X.. ... ...", "X.. ... ...")),
				npTCP(80, npSame9("X.. ... ...")),
				npUDP(81, npSame9("X.. ... ...")),
			},
		}}},
		{name: "named UDP port", steps: []npStep{{
			apply: npPolicy("x", "named-80-udp", `  podSelector: {matchLabels: {pod: a}}
  ingress:
  - ports: [{port: serve-80-udp, protocol: UDP}]`),
			checks: []npCheck{npUDP(80, npEverything), npUDP(81, npSame9("X.. ... ...")), npTCP(80, npSame9("X.. ... ..."))},
		}}},
		{name: "named port with the wrong protocol matches nothing", steps: []npStep{{
			apply: npPolicy("x", "named-mismatch", `  podSelector: {matchLabels: {pod: a}}
  ingress:
  - ports: [{port: serve-80-tcp, protocol: UDP}]`),
			checks: []npCheck{npTCP(80, npSame9("X.. ... ...")), npUDP(80, npSame9("X.. ... ..."))},
		}}},
		{name: "endPort ranges (TCP 80-81 on x/a, UDP 70-80 on y/b)", steps: []npStep{{
			apply: npPolicy("x", "range-tcp", `  podSelector: {matchLabels: {pod: a}}
  ingress:
  - ports: [{port: 80, endPort: 81}]`) + npPolicy("y", "range-udp", `  podSelector: {matchLabels: {pod: b}}
  ingress:
  - ports: [{protocol: UDP, port: 70, endPort: 80}]`),
			checks: []npCheck{
				npTCP(80, npSame9("... .X. ...")), npTCP(81, npSame9("... .X. ...")),
				npUDP(80, npSame9("X.. ... ...")), npUDP(81, npSame9("X.. .X. ...")),
			},
		}}},
		{name: "UDP-only policy does not allow TCP", steps: []npStep{{
			apply: npPolicy("x", "udp-81", `  podSelector: {matchLabels: {pod: a}}
  ingress:
  - ports: [{protocol: UDP, port: 81}]`),
			checks: []npCheck{npTCP(81, npSame9("X.. ... ...")), npUDP(81, npEverything), npUDP(80, npSame9("X.. ... ..."))},
		}}},
		{name: "any port on one protocol", steps: []npStep{{
			apply: npPolicy("x", "any-tcp", `  podSelector: {matchLabels: {pod: a}}
  ingress:
  - ports: [{protocol: TCP}]`),
			checks: []npCheck{npTCP(80, npEverything), npTCP(81, npEverything), npUDP(80, npSame9("X.. ... ..."))},
		}}},
		{name: "SCTP-only policy isolates and does not allow TCP", steps: []npStep{{
			apply: npPolicy("x", "sctp-81", `  podSelector: {matchLabels: {pod: a}}
  ingress:
  - ports: [{protocol: SCTP, port: 81}]`),
			checks: []npCheck{npTCP(81, npSame9("X.. ... ...")), npUDP(81, npSame9("X.. ... ..."))},
		}}},
		{name: "egress to one pod by namespace and pod selector", steps: []npStep{{
			apply: npPolicy("x", "to-y-b", `  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {matchLabels: {ns: "y"}}, podSelector: {matchLabels: {pod: b}}}]`),
			checks: []npCheck{
				npTCP(80, npGrid("XXX X.X XXX", npAll, npAll, npAll, npAll, npAll, npAll, npAll, npAll)),
				npUDP(81, npGrid("XXX X.X XXX", npAll, npAll, npAll, npAll, npAll, npAll, npAll, npAll)),
			},
		}}},
		{name: "egress to one pod on port 80 only (policyTypes defaulted)", steps: []npStep{{
			apply: npPolicy("x", "to-y-b-80", `  podSelector: {matchLabels: {pod: a}}
  egress:
  - to: [{namespaceSelector: {matchLabels: {ns: "y"}}, podSelector: {matchLabels: {pod: b}}}]
    ports: [{port: 80}]`),
			checks: []npCheck{
				npTCP(80, npGrid("XXX X.X XXX", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...")),
				npTCP(81, npGrid("XXX XXX XXX", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...")),
				npUDP(80, npGrid("XXX XXX XXX", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...")),
			},
		}}},
		{name: "egress named port", steps: []npStep{{
			apply: npPolicy("x", "to-named-udp", `  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress:
  - ports: [{port: serve-80-udp, protocol: UDP}]`),
			checks: []npCheck{
				npUDP(80, npEverything),
				npTCP(80, npGrid("XXX XXX XXX", npAll, npAll, npAll, npAll, npAll, npAll, npAll, npAll)),
				npUDP(81, npGrid("XXX XXX XXX", npAll, npAll, npAll, npAll, npAll, npAll, npAll, npAll)),
			},
		}}},
		{name: "egress to a pod's /32 ipBlock (matched after Service DNAT)", steps: []npStep{{
			apply: npPolicy("x", "to-cidr", `  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: $IP(y/b)/32}}]`),
			checks: []npCheck{npTCP(80, npGrid("XXX X.X XXX", npAll, npAll, npAll, npAll, npAll, npAll, npAll, npAll))},
		}}},
		{name: "egress ipBlock except, then the excepted IP allowed by another policy", steps: []npStep{
			{
				apply: npPolicy("x", "cidr-except", `  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: `+npPodCIDR+`, except: [$IP(x/b)/32]}}]`),
				checks: []npCheck{npTCP(80, npGrid(".X. ... ...", npAll, npAll, npAll, npAll, npAll, npAll, npAll, npAll))},
			},
			{
				apply: npPolicy("x", "cidr-b", `  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: $IP(x/b)/32}}]`),
				checks: []npCheck{npTCP(80, npEverything)},
			},
		}},
		{name: "ingress ipBlock with two excepts", steps: []npStep{{
			apply: npPolicy("x", "from-cidr", `  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{ipBlock: {cidr: `+npPodCIDR+`, except: [$IP(y/a)/32, $IP(z/c)/32]}}]`),
			checks: []npCheck{
				npTCP(80, npGrid(npAll, npAll, npAll, "X.. ... ...", npAll, npAll, npAll, npAll, "X.. ... ...")),
				npUDP(81, npGrid(npAll, npAll, npAll, "X.. ... ...", npAll, npAll, npAll, npAll, "X.. ... ...")),
			},
		}}},
		{name: "egress ipBlock 0.0.0.0/0 except the pod CIDR", steps: []npStep{{
			apply: npPolicy("x", "outside-only", `  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: 0.0.0.0/0, except: [`+npPodCIDR+`]}}]`),
			checks: []npCheck{npTCP(80, npGrid("XXX XXX XXX", npAll, npAll, npAll, npAll, npAll, npAll, npAll, npAll))},
		}}},
		{name: "multiple policies on one pod add up", steps: []npStep{{
			apply: npPolicy("x", "from-b", `  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{podSelector: {matchLabels: {pod: b}}}]`) + npPolicy("x", "from-z", `  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {ns: "z"}}}]`),
			checks: []npCheck{npTCP(80, npGrid("X.. ... ...", npAll, "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", npAll, npAll, npAll))},
		}}},
		{name: "ingress allow-all rule takes precedence", steps: []npStep{
			{
				apply: npPolicy("x", "port-80", `  podSelector: {}
  ingress:
  - ports: [{port: 80}]`),
				checks: []npCheck{npTCP(81, npSame9("XXX ... ..."))},
			},
			{
				apply:  npPolicy("x", "allow-all", "  podSelector: {}\n  ingress:\n  - {}"),
				checks: []npCheck{npTCP(81, npEverything), npUDP(81, npEverything)},
			},
		}},
		{name: "egress allow-all rule takes precedence", steps: []npStep{
			{
				apply: npPolicy("x", "egress-80", `  podSelector: {}
  policyTypes: [Egress]
  egress:
  - ports: [{port: 80}]`),
				checks: []npCheck{npTCP(81, npGrid("XXX XXX XXX", "XXX XXX XXX", "XXX XXX XXX", npAll, npAll, npAll, npAll, npAll, npAll))},
			},
			{
				apply:  npPolicy("x", "egress-all", "  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n  - {}"),
				checks: []npCheck{npTCP(81, npEverything)},
			},
		}},
		{name: "policyTypes Ingress and Egress with only ingress rules", steps: []npStep{{
			apply: npPolicy("x", "both-ingress-only", `  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{podSelector: {matchLabels: {pod: b}}}]`),
			checks: []npCheck{npTCP(80, npGrid("XXX XXX XXX", npAll, "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ..."))},
		}}},
		{name: "policyTypes Egress ignores ingress rules", steps: []npStep{{
			apply: npPolicy("x", "egress-only", `  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  ingress:
  - from: [{podSelector: {matchLabels: {pod: b}}}]
  egress:
  - to: [{namespaceSelector: {matchLabels: {ns: "x"}}}]`),
			checks: []npCheck{npTCP(80, npGrid("... XXX XXX", npAll, npAll, npAll, npAll, npAll, npAll, npAll, npAll))},
		}}},
		{name: "ingress and egress rules together", steps: []npStep{{
			apply: npPolicy("x", "in-and-out", `  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{podSelector: {matchLabels: {pod: b}}}]
  egress:
  - to: [{namespaceSelector: {matchLabels: {ns: "y"}}}]`),
			checks: []npCheck{npTCP(80, npGrid("XXX ... XXX", npAll, "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ..."))},
		}}},
		{name: "client egress deny wins over the server's ingress allow", steps: []npStep{{
			apply: npPolicy("x", "a-no-egress", "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]") +
				npPolicy("y", "b-from-x-a", `  podSelector: {matchLabels: {pod: b}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {ns: "x"}}, podSelector: {matchLabels: {pod: a}}}]`),
			checks: []npCheck{npTCP(80, npGrid("XXX XXX XXX", "... .X. ...", "... .X. ...", "... .X. ...", "... .X. ...", "... .X. ...", "... .X. ...", "... .X. ...", "... .X. ..."))},
		}}},
		{name: "ingress and egress controlled independently", steps: []npStep{
			{
				apply:  npPolicy("x", "a-egress-all", "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]\n  egress:\n  - {}"),
				checks: []npCheck{npTCP(80, npEverything)},
			},
			{
				apply:  npPolicy("x", "a-deny-ingress", "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Ingress]"),
				checks: []npCheck{npTCP(80, npSame9("X.. ... ..."))},
			},
		}},
		{name: "a policy selecting no pod changes nothing", steps: []npStep{{
			apply:  npPolicy("x", "nobody", "  podSelector: {matchLabels: {pod: nobody}}\n  policyTypes: [Ingress, Egress]"),
			checks: []npCheck{npTCP(80, npEverything)},
		}}},
		{name: "namespace label change", steps: []npStep{
			{
				apply: npPolicy("x", "from-team-blue", `  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: blue}}}]`),
				checks: []npCheck{npTCP(80, npSame9("X.. ... ..."))},
			},
			{
				do:     npLabel("namespace", "", "y", "team=blue"),
				checks: []npCheck{npTCP(80, npGrid("X.. ... ...", "X.. ... ...", "X.. ... ...", npAll, npAll, npAll, "X.. ... ...", "X.. ... ...", "X.. ... ..."))},
			},
			{
				do:     npLabel("namespace", "", "y", "team-"),
				checks: []npCheck{npTCP(80, npSame9("X.. ... ..."))},
			},
		}},
		{name: "client pod label change", steps: []npStep{
			{
				apply: npPolicy("x", "from-clients", `  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{namespaceSelector: {}, podSelector: {matchLabels: {role: client}}}]`),
				checks: []npCheck{npTCP(80, npSame9("X.. ... ..."))},
			},
			{
				do:     npLabel("pod", "z", "b", "role=client"),
				checks: []npCheck{npTCP(80, npGrid("X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", "X.. ... ...", npAll, "X.. ... ..."))},
			},
			{
				do:     npLabel("pod", "z", "b", "role-"),
				checks: []npCheck{npTCP(80, npSame9("X.. ... ..."))},
			},
		}},
		{name: "server pod label change joins a deny policy", steps: []npStep{
			{
				apply:  npPolicy("y", "deny-servers", "  podSelector: {matchLabels: {role: server}}\n  policyTypes: [Ingress]"),
				checks: []npCheck{npTCP(80, npEverything)},
			},
			{
				do:     npLabel("pod", "y", "c", "role=server"),
				checks: []npCheck{npTCP(80, npSame9("... ..X ...")), npUDP(81, npSame9("... ..X ..."))},
			},
			{
				do:     npLabel("pod", "y", "c", "role-"),
				checks: []npCheck{npTCP(80, npEverything)},
			},
		}},
		{name: "deleting a policy restores traffic", steps: []npStep{
			{
				apply: denyAllX,
				checks: []npCheck{npTCP(80, npGrid("XXX XXX XXX", "XXX XXX XXX", "XXX XXX XXX",
					"XXX ... ...", "XXX ... ...", "XXX ... ...", "XXX ... ...", "XXX ... ...", "XXX ... ..."))},
			},
			{
				delete: [2]string{"x", "deny-all"},
				checks: []npCheck{npTCP(80, npEverything), npUDP(80, npEverything)},
			},
		}},
	}
}

// TestNetworkPolicyConformance runs hand-written upstream-style cases, then random policies
// against the policy package's evaluator, all on one 3-node lab with real traffic.
func TestNetworkPolicyConformance(t *testing.T) {
	needRoot(t)
	start := time.Now()
	e := setupNetpolLab(t)
	t.Logf("lab %s up with 9 pods in %v", e.lab, time.Since(start).Round(time.Millisecond))

	// Without policies everything reaches everything, every pod itself included (hairpin).
	// Services and endpoints may still be settling: give it a few rounds.
	deadline := time.Now().Add(20 * time.Second)
	for {
		bad := 0
		var last string
		for _, r := range e.verify([]npCheck{npTCP(80, npEverything), npTCP(81, npEverything), npUDP(80, npEverything), npUDP(81, npEverything)}) {
			if msg, ok := e.report(r, nil); !ok {
				bad++
				last = msg
			}
		}
		if bad == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("without policies: %s", last)
		}
		time.Sleep(500 * time.Millisecond)
	}

	t.Run("cases", func(t *testing.T) {
		cstart := time.Now()
		for _, c := range npConformanceCases() {
			t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
				cs := time.Now()
				t.Cleanup(func() {
					e.deleteAllPolicies(t)
					for _, s := range c.steps {
						if s.do != nil { // labels a failed step may have left behind
							podnet("label", "--lab", e.lab, "namespace", "y", "team-", "--wait")
							podnet("label", "--lab", e.lab, "pod", "-n", "z", "b", "role-", "--wait")
							podnet("label", "--lab", e.lab, "pod", "-n", "y", "c", "role-", "--wait")
							break
						}
					}
				})
				for i, s := range c.steps {
					what := fmt.Sprintf("step %d", i+1)
					if s.apply != "" {
						applyYAML(t, e.lab, e.expand(s.apply), "--wait")
						what += " (applied " + npPolicyNames(s.apply) + ")"
					}
					if s.delete[1] != "" {
						mustPodnet(t, "delete", "networkpolicy", s.delete[1], "--lab", e.lab, "-n", s.delete[0], "--wait")
						what += " (deleted " + s.delete[0] + "/" + s.delete[1] + ")"
					}
					if s.do != nil {
						s.do(t, e)
					}
					if !e.expect(t, what, s.checks...) {
						t.Logf("policies of this case:\n%s", e.expand(npCaseYAML(c)))
					}
				}
				t.Logf("took %v", time.Since(cs).Round(time.Millisecond))
			})
		}
		t.Logf("%d cases in %v", len(npConformanceCases()), time.Since(cstart).Round(time.Millisecond))
	})

	t.Run("differential", func(t *testing.T) {
		runNetpolDifferential(t, e)
	})
}

func npPolicyNames(yaml string) string {
	var names []string
	for _, l := range strings.Split(yaml, "\n") {
		if strings.HasPrefix(l, "metadata: {name: ") {
			f := strings.TrimSuffix(strings.TrimPrefix(l, "metadata: {name: "), "}")
			parts := strings.SplitN(f, ", namespace: ", 2)
			if len(parts) == 2 {
				names = append(names, strings.Trim(parts[1], `"`)+"/"+parts[0])
			}
		}
	}
	return strings.Join(names, ", ")
}

func npCaseYAML(c npCase) string {
	var b strings.Builder
	for _, s := range c.steps {
		b.WriteString(s.apply)
	}
	return b.String()
}

// npSnapshot reads pods and namespaces back from the lab, as the oracle's input.
func (e *npEnv) snapshot(t *testing.T) ([]*corev1.Pod, []*corev1.Namespace) {
	t.Helper()
	var pods struct{ Items []corev1.Pod }
	out := mustPodnet(t, "get", "pods", "--lab", e.lab, "-A", "-o", "json")
	if err := json.Unmarshal([]byte(out), &pods); err != nil {
		t.Fatalf("decode pods: %v", err)
	}
	var nss struct{ Items []corev1.Namespace }
	out = mustPodnet(t, "get", "namespaces", "--lab", e.lab, "-o", "json")
	if err := json.Unmarshal([]byte(out), &nss); err != nil {
		t.Fatalf("decode namespaces: %v", err)
	}
	var ps []*corev1.Pod
	for i := range pods.Items {
		ps = append(ps, &pods.Items[i])
	}
	var ns []*corev1.Namespace
	for i := range nss.Items {
		ns = append(ns, &nss.Items[i])
	}
	return ps, ns
}

// npGen generates random NetworkPolicies over the conformance layout.
type npGen struct {
	r         *rand.Rand
	e         *npEnv
	nodeCIDRs map[string]string // node name -> podCIDR
}

func (g *npGen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }
func (g *npGen) chance(p float64) bool    { return g.r.Float64() < p }

// subset returns 1..len(xs)-1 distinct elements of xs.
func (g *npGen) subset(xs ...string) []string {
	p := g.r.Perm(len(xs))
	n := 1 + g.r.IntN(len(xs)-1)
	var out []string
	for _, i := range p[:n] {
		out = append(out, xs[i])
	}
	sort.Strings(out)
	return out
}

func (g *npGen) podSelector() *metav1.LabelSelector {
	switch g.r.IntN(9) {
	case 0:
		return &metav1.LabelSelector{}
	case 1, 2:
		return &metav1.LabelSelector{MatchLabels: map[string]string{"pod": g.pick(npPodNames...)}}
	case 3:
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "pod", Operator: metav1.LabelSelectorOpIn, Values: g.subset(npPodNames...)}}}
	case 4:
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "pod", Operator: metav1.LabelSelectorOpNotIn, Values: []string{g.pick(npPodNames...)}}}}
	case 5:
		return &metav1.LabelSelector{MatchLabels: map[string]string{"team": g.pick("red", "blue")}}
	case 6:
		op := metav1.LabelSelectorOpExists
		if g.chance(0.5) {
			op = metav1.LabelSelectorOpDoesNotExist
		}
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: op}}}
	case 7:
		return &metav1.LabelSelector{MatchLabels: map[string]string{"pod": g.pick(npPodNames...), "team": g.pick("red", "blue")}}
	default:
		return &metav1.LabelSelector{
			MatchLabels:      map[string]string{"pod": g.pick(npPodNames...)},
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: metav1.LabelSelectorOpDoesNotExist}},
		}
	}
}

func (g *npGen) nsSelector() *metav1.LabelSelector {
	switch g.r.IntN(7) {
	case 0:
		return &metav1.LabelSelector{}
	case 1, 2:
		return &metav1.LabelSelector{MatchLabels: map[string]string{"ns": g.pick(npNamespaces...)}}
	case 3:
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpIn, Values: g.subset(npNamespaces...)}}}
	case 4:
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{g.pick(npNamespaces...)}}}}
	case 5:
		return &metav1.LabelSelector{MatchLabels: map[string]string{"team": g.pick("red", "blue")}}
	default:
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: metav1.LabelSelectorOpExists}}}
	}
}

func (g *npGen) podIP() netip.Addr {
	return netip.MustParseAddr(g.e.ip[g.e.refs[g.r.IntN(len(g.e.refs))]])
}

func (g *npGen) ipBlock() *networkingv1.IPBlock {
	host := func(a netip.Addr) string { return netip.PrefixFrom(a, 32).String() }
	excepts := func(cidr netip.Prefix, n int) []string {
		seen := map[string]bool{}
		var out []string
		for i := 0; i < n; i++ {
			a := g.podIP()
			if cidr.Contains(a) && cidr.Bits() < 32 && !seen[host(a)] {
				seen[host(a)] = true
				out = append(out, host(a))
			}
		}
		return out
	}
	switch g.r.IntN(7) {
	case 0, 1:
		return &networkingv1.IPBlock{CIDR: host(g.podIP())}
	case 2:
		cidr := netip.MustParsePrefix(npPodCIDR)
		return &networkingv1.IPBlock{CIDR: cidr.String(), Except: excepts(cidr, 1+g.r.IntN(3))}
	case 3:
		nodes := make([]string, 0, len(g.nodeCIDRs))
		for n := range g.nodeCIDRs {
			nodes = append(nodes, n)
		}
		sort.Strings(nodes)
		cidr := netip.MustParsePrefix(g.nodeCIDRs[g.pick(nodes...)])
		return &networkingv1.IPBlock{CIDR: cidr.String(), Except: excepts(cidr, g.r.IntN(4))}
	case 4:
		b := &networkingv1.IPBlock{CIDR: "0.0.0.0/0"}
		switch g.r.IntN(3) {
		case 0:
			b.Except = []string{npPodCIDR}
		case 1:
			b.Except = excepts(netip.MustParsePrefix("0.0.0.0/0"), 2)
		}
		return b
	case 5:
		a := g.podIP()
		cidr := netip.PrefixFrom(a, 30).Masked()
		b := &networkingv1.IPBlock{CIDR: cidr.String()}
		if g.chance(0.5) {
			b.Except = []string{host(a)}
		}
		return b
	default:
		return &networkingv1.IPBlock{CIDR: "192.168.0.0/16"} // no pod
	}
}

func (g *npGen) peer() networkingv1.NetworkPolicyPeer {
	switch g.r.IntN(10) {
	case 0, 1, 2:
		return networkingv1.NetworkPolicyPeer{PodSelector: g.podSelector()}
	case 3, 4:
		return networkingv1.NetworkPolicyPeer{NamespaceSelector: g.nsSelector()}
	case 5, 6:
		return networkingv1.NetworkPolicyPeer{PodSelector: g.podSelector(), NamespaceSelector: g.nsSelector()}
	default:
		return networkingv1.NetworkPolicyPeer{IPBlock: g.ipBlock()}
	}
}

func (g *npGen) protocol() *corev1.Protocol {
	var p corev1.Protocol
	switch g.r.IntN(5) {
	case 0, 1:
		return nil // defaults to TCP
	case 2:
		p = corev1.ProtocolTCP
	default:
		p = corev1.ProtocolUDP
	}
	return &p
}

func (g *npGen) port() networkingv1.NetworkPolicyPort {
	var pp networkingv1.NetworkPolicyPort
	switch g.r.IntN(20) {
	case 0, 1, 2, 3, 4, 5:
		port := intstr.FromInt32(int32([]int{80, 81, 80, 81, 8080}[g.r.IntN(5)]))
		pp.Port, pp.Protocol = &port, g.protocol()
	case 6, 7, 8, 9:
		rg := [][2]int32{{80, 81}, {81, 81}, {70, 80}, {81, 90}, {1, 79}, {1, 65535}}[g.r.IntN(6)]
		port := intstr.FromInt32(rg[0])
		pp.Port, pp.EndPort, pp.Protocol = &port, &rg[1], g.protocol()
	case 10, 11, 12, 13, 14, 15:
		name := g.pick("serve-80-tcp", "serve-81-tcp", "serve-80-udp", "serve-81-udp", "serve-80-tcp", "serve-81-udp", "no-such-port")
		port := intstr.FromString(name)
		pp.Port = &port
		if g.chance(0.75) { // mostly the port's own protocol, sometimes not
			if strings.HasSuffix(name, "-udp") {
				p := corev1.ProtocolUDP
				pp.Protocol = &p
			} else if g.chance(0.5) {
				p := corev1.ProtocolTCP
				pp.Protocol = &p
			}
		} else {
			pp.Protocol = g.protocol()
		}
	case 16, 17, 18:
		p := corev1.Protocol(g.pick("TCP", "UDP"))
		pp.Protocol = &p
	default:
		port := intstr.FromInt32(int32(80 + g.r.IntN(2)))
		p := corev1.ProtocolSCTP
		pp.Port, pp.Protocol = &port, &p
	}
	return pp
}

func (g *npGen) rule() ([]networkingv1.NetworkPolicyPeer, []networkingv1.NetworkPolicyPort) {
	var peers []networkingv1.NetworkPolicyPeer
	var ports []networkingv1.NetworkPolicyPort
	if !g.chance(0.2) {
		for n := 1 + g.r.IntN(3); n > 0; n-- {
			peers = append(peers, g.peer())
		}
	}
	if !g.chance(0.4) {
		for n := 1 + g.r.IntN(2); n > 0; n-- {
			ports = append(ports, g.port())
		}
	}
	return peers, ports
}

func (g *npGen) policy(name string) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: g.pick(npNamespaces...)},
	}
	if g.chance(0.3) {
		np.Spec.PodSelector = metav1.LabelSelector{}
	} else {
		np.Spec.PodSelector = *g.podSelector()
	}
	in, eg := networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress
	switch g.r.IntN(6) {
	case 0, 1: // defaulted by the API server
	case 2:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{in}
	case 3:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{eg}
	case 4:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{in, eg}
	default:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{eg, in}
	}
	for n := g.r.IntN(3); n > 0; n-- {
		peers, ports := g.rule()
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: peers, Ports: ports})
	}
	nEg := g.r.IntN(3)
	if np.Spec.PolicyTypes == nil && g.chance(0.4) {
		nEg = 0 // keep plain ingress policies common
	}
	for ; nEg > 0; nEg-- {
		peers, ports := g.rule()
		np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: peers, Ports: ports})
	}
	return np
}

// runNetpolDifferential applies random policies and requires the real reachability to equal
// the one policy.Compile + Model.Matrix predict from the same objects.
func runNetpolDifferential(t *testing.T, e *npEnv) {
	seed := time.Now().UnixNano()
	if s := os.Getenv("PODNET_NETPOL_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("PODNET_NETPOL_SEED: %v", err)
		}
		seed = v
	}
	cases := 50
	if s := os.Getenv("PODNET_NETPOL_CASES"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("PODNET_NETPOL_CASES: %v", err)
		}
		cases = v
	}
	// By default each case probes one random (protocol, port); PODNET_NETPOL_ALLPORTS=1 probes
	// all four of them (concurrently: about the same time, four times the cells).
	allPorts := os.Getenv("PODNET_NETPOL_ALLPORTS") == "1"
	t.Logf("seed %d (reproduce with PODNET_NETPOL_SEED=%d), %d cases, all ports: %v", seed, seed, cases, allPorts)
	g := &npGen{r: rand.New(rand.NewPCG(uint64(seed), 0x6e6574706f6c)), e: e, nodeCIDRs: map[string]string{}}

	var nodes struct{ Items []corev1.Node }
	out := mustPodnet(t, "get", "nodes", "--lab", e.lab, "-o", "json")
	if err := json.Unmarshal([]byte(out), &nodes); err != nil {
		t.Fatalf("decode nodes: %v", err)
	}
	for _, n := range nodes.Items {
		if n.Spec.PodCIDR != "" {
			g.nodeCIDRs[n.Name] = n.Spec.PodCIDR
		}
	}
	if len(g.nodeCIDRs) == 0 {
		t.Fatalf("no node has a podCIDR:\n%s", out)
	}

	e.deleteAllPolicies(t)
	labels := map[string]string{} // "pod x/a" or "namespace y" -> value of label team
	t.Cleanup(func() {
		for target := range labels {
			kind, name, _ := strings.Cut(target, " ")
			if kind == "pod" {
				ns, pod, _ := strings.Cut(name, "/")
				podnet("label", "--lab", e.lab, "pod", "-n", ns, pod, "team-", "--wait")
			} else {
				podnet("label", "--lab", e.lab, "namespace", name, "team-", "--wait")
			}
		}
	})

	start := time.Now()
	failures, allowed, denied := 0, 0, 0
	var prev []*networkingv1.NetworkPolicy // policies the previous case left in place
	for i := 0; i < cases && failures < 5; i++ {
		// Sometimes move the extra label "team" around pods and namespaces first.
		if g.chance(0.35) {
			for n := 1 + g.r.IntN(2); n > 0; n-- {
				var target string
				var args []string
				if g.chance(0.6) {
					ref := e.refs[g.r.IntN(len(e.refs))]
					target = "pod " + ref.String()
					args = []string{"pod", "-n", ref.Namespace, ref.Name}
				} else {
					ns := g.pick(npNamespaces...)
					target = "namespace " + ns
					args = []string{"namespace", ns}
				}
				kv := "team=" + g.pick("red", "blue")
				if _, set := labels[target]; set && g.chance(0.4) {
					kv = "team-"
					delete(labels, target)
				} else {
					labels[target] = strings.TrimPrefix(kv, "team=")
				}
				mustPodnet(t, append(append([]string{"label", "--lab", e.lab}, args...), kv, "--overwrite", "--wait")...)
			}
		}

		// Policies are named rnd-0..rnd-3. When the previous case left its policies in place,
		// those of the same namespace and name are updated in place and the rest deleted, so
		// updates and deletions are exercised as well as creations.
		var pols []*networkingv1.NetworkPolicy
		var objs []any
		for j, n := 0, 1+g.r.IntN(4); j < n; j++ {
			p := g.policy(fmt.Sprintf("rnd-%d", j))
			if j < len(prev) && g.chance(0.5) {
				p.Namespace = prev[j].Namespace
			}
			pols = append(pols, p)
			objs = append(objs, p)
		}
		pps := []npProto{npAllProtos[g.r.IntN(len(npAllProtos))]}
		if allPorts {
			pps = npAllProtos
		}
		file := npListFile(t, objs)
		mustPodnet(t, "apply", "--lab", e.lab, "-f", file, "--wait")
		updated, stale := 0, []any{}
		for _, old := range prev {
			kept := false
			for _, p := range pols {
				kept = kept || (p.Namespace == old.Namespace && p.Name == old.Name)
			}
			if kept {
				updated++
			} else {
				stale = append(stale, old)
			}
		}
		if len(stale) > 0 {
			mustPodnet(t, "delete", "--lab", e.lab, "-f", npListFile(t, stale), "--wait")
		}

		pods, nss := e.snapshot(t)
		model := policy.Compile(pols, pods, nss)
		var checks []npCheck
		for _, pp := range pps {
			want := model.Matrix(e.refs, pp.proto, uint16(pp.port))
			caseDenied := 0
			for _, row := range want {
				for _, ok := range row {
					if ok {
						allowed++
					} else {
						denied++
						caseDenied++
					}
				}
			}
			t.Logf("case %d: %d policies (%d updated, %d deleted), %v: %d of 81 cells expected denied",
				i, len(pols), updated, len(stale), pp, caseDenied)
			checks = append(checks, npCheck{pp, want})
		}
		explain := func(from, to policy.PodRef, pp npProto) string {
			src, dst := netip.MustParseAddr(e.ip[from]), netip.MustParseAddr(e.ip[to])
			return model.Evaluate(src, dst, pp.proto, uint16(pp.port)).Explain()
		}
		for _, r := range e.verify(checks) {
			msg, ok := e.report(r, explain)
			if ok {
				if msg != "" {
					t.Logf("case %d: %s", i, msg)
				}
				continue
			}
			failures++
			var b strings.Builder
			for _, p := range pols {
				y, _ := sigsyaml.Marshal(p)
				b.WriteString("---\n")
				b.Write(y)
			}
			var ls []string
			for k, v := range labels {
				ls = append(ls, k+" team="+v)
			}
			sort.Strings(ls)
			t.Errorf("seed %d case %d: %s\nextra labels: %v\npolicies:\n%s", seed, i, msg, ls, b.String())
		}
		prev = nil
		if g.chance(0.5) || i == cases-1 {
			mustPodnet(t, "delete", "--lab", e.lab, "-f", file, "--wait")
		} else {
			prev = pols
		}
	}
	e.deleteAllPolicies(t)
	t.Logf("seed %d: %d cases in %v; expected cells %d allowed, %d denied", seed, cases,
		time.Since(start).Round(time.Millisecond), allowed, denied)
}
