package e2e

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

const dnsYAML = `apiVersion: v1
kind: Namespace
metadata: {name: prod}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: prod}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: w, image: podnet/workload, ports: [{name: http, containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: prod}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: prod}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: pg, port: 5432}]
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: prod, labels: {app: db}}
spec:
  hostname: db-0
  subdomain: db
  containers:
  - {name: w, image: podnet/workload, ports: [{name: pg, containerPort: 5432}]}
---
apiVersion: v1
kind: Service
metadata: {name: search, namespace: prod}
spec:
  type: ExternalName
  externalName: web.prod.svc.cluster.local
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: prod}
spec:
  containers:
  - {name: w, image: podnet/workload, ports: [{containerPort: 8080}]}
`

// dig runs dig inside a pod and returns its +short answer lines, sorted.
func dig(t *testing.T, lab, ns, pod string, args ...string) []string {
	t.Helper()
	out := mustPodnet(t, append([]string{"exec", "--lab", lab, "-n", ns, pod, "--", "dig", "+short", "+time=2", "+tries=2"}, args...)...)
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	sort.Strings(lines)
	return lines
}

func digStatus(t *testing.T, lab, ns, pod string, args ...string) string {
	t.Helper()
	out := mustPodnet(t, append([]string{"exec", "--lab", lab, "-n", ns, pod, "--", "dig", "+time=2", "+tries=2"}, args...)...)
	for _, l := range strings.Split(out, "\n") {
		if i := strings.Index(l, "status: "); i >= 0 {
			return strings.TrimRight(strings.Fields(l[i+8:])[0], ",")
		}
	}
	return "no status in: " + out
}

// TestDNS: cluster DNS from a pod with real clients (dig, the libc resolver through the search
// path), answered by podnet dns running as two pods behind kube-dns.
func TestDNS(t *testing.T) {
	needRoot(t)
	lab := upLab(t, "e2ed")
	applyYAML(t, lab, dnsYAML, "--wait")
	web := getServiceIn(t, lab, "prod", "web")
	waitFor(t, "cluster DNS answers", 20*time.Second, func() error {
		if got := dig(t, lab, "prod", "client", "web.prod.svc.cluster.local"); len(got) != 1 || got[0] != web {
			return fmt.Errorf("web.prod.svc.cluster.local: %v, want %s", got, web)
		}
		return nil
	})
	// the libc resolver, through the search path and ndots:5
	out := mustPodnet(t, "exec", "--lab", lab, "-n", "prod", "client", "--", "getent", "hosts", "web")
	if !strings.HasPrefix(out, web+" ") {
		t.Errorf("getent hosts web: %q, want %s", out, web)
	}
	if got := dig(t, lab, "prod", "client", "SRV", "_http._tcp.web.prod.svc.cluster.local"); len(got) != 1 || got[0] != "0 100 80 web.prod.svc.cluster.local." {
		t.Errorf("SRV: %v", got)
	}
	if got := dig(t, lab, "prod", "client", "TXT", "dns-version.cluster.local"); len(got) != 1 || got[0] != `"1.1.0"` {
		t.Errorf("dns-version: %v", got)
	}
	if got := dig(t, lab, "prod", "client", "-x", web); len(got) != 1 || got[0] != "web.prod.svc.cluster.local." {
		t.Errorf("PTR of %s: %v", web, got)
	}
	if got := dig(t, lab, "prod", "client", "+tcp", "search.prod.svc.cluster.local"); len(got) != 2 || got[0] != web || got[1] != "web.prod.svc.cluster.local." {
		t.Errorf("ExternalName over TCP: %v", got)
	}
	if s := digStatus(t, lab, "prod", "client", "nothere.prod.svc.cluster.local"); s != "NXDOMAIN" {
		t.Errorf("missing Service: %s", s)
	}
	if s := digStatus(t, lab, "prod", "client", "AAAA", "web.prod.svc.cluster.local"); s != "NOERROR" {
		t.Errorf("AAAA of an IPv4 Service (NODATA): %s", s)
	}
	// headless: the pod's own record, and endpoints following pods
	pods := map[string]string{}
	for _, p := range getPods(t, lab, "prod") {
		pods[p.Name] = p.Status.PodIP
	}
	if got := dig(t, lab, "prod", "client", "db-0.db.prod.svc.cluster.local"); len(got) != 1 || got[0] != pods["db-0"] {
		t.Errorf("headless pod hostname: %v, want %s", got, pods["db-0"])
	}
	applyYAML(t, lab, `apiVersion: v1
kind: Pod
metadata: {name: db-1, namespace: prod, labels: {app: db}}
spec:
  hostname: db-1
  subdomain: db
  containers:
  - {name: w, image: podnet/workload, ports: [{name: pg, containerPort: 5432}]}
`, "--wait")
	for _, p := range getPods(t, lab, "prod") {
		pods[p.Name] = p.Status.PodIP
	}
	want := []string{pods["db-0"], pods["db-1"]}
	sort.Strings(want)
	waitFor(t, "headless Service lists both pods", 5*time.Second, func() error {
		if got := dig(t, lab, "prod", "client", "db.prod.svc.cluster.local"); strings.Join(got, ",") != strings.Join(want, ",") {
			return fmt.Errorf("db: %v, want %v", got, want)
		}
		return nil
	})
	mustPodnet(t, "delete", "pod", "db-0", "--lab", lab, "-n", "prod", "--wait")
	waitFor(t, "deleted pod leaves the headless Service", 5*time.Second, func() error {
		if got := dig(t, lab, "prod", "client", "db.prod.svc.cluster.local"); len(got) != 1 || got[0] != pods["db-1"] {
			return fmt.Errorf("db: %v, want [%s]", got, pods["db-1"])
		}
		return nil
	})
	// relabelling a pod out of the Service's selector takes it out of the headless answer
	if _, stderr, err := podnet("label", "--lab", lab, "pod", "-n", "prod", "db-1", "app=other"); err == nil || !strings.Contains(stderr, "--overwrite") {
		t.Errorf("label without --overwrite: %v %s", err, stderr)
	}
	if out := mustPodnet(t, "label", "--lab", lab, "pod", "-n", "prod", "db-1", "app=other", "--overwrite", "--wait"); !strings.Contains(out, "pod/db-1 labeled") {
		t.Errorf("label: %q", out)
	}
	if s := digStatus(t, lab, "prod", "client", "db.prod.svc.cluster.local"); s != "NXDOMAIN" {
		t.Errorf("headless Service whose only pod was relabelled away: %s", s)
	}
	mustPodnet(t, "label", "--lab", lab, "pod", "-n", "prod", "db-1", "app=db", "--overwrite", "--wait")
	if got := dig(t, lab, "prod", "client", "db.prod.svc.cluster.local"); len(got) != 1 || got[0] != pods["db-1"] {
		t.Errorf("relabelled back: %v, want [%s]", got, pods["db-1"])
	}
	mustPodnet(t, "label", "--lab", lab, "namespace", "prod", "team=blue")
	if out := mustPodnet(t, "get", "namespace", "prod", "--lab", lab, "-o", "json"); !strings.Contains(out, `"team": "blue"`) {
		t.Errorf("namespace label: %s", out)
	}
}

func getServiceIn(t *testing.T, lab, ns, name string) string {
	t.Helper()
	var svc corev1.Service
	out := mustPodnet(t, "get", "service", name, "--lab", lab, "-n", ns, "-o", "json")
	if err := json.Unmarshal([]byte(out), &svc); err != nil {
		t.Fatalf("decode service %s: %v", name, err)
	}
	return svc.Spec.ClusterIP
}
