package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// stsYAML is a headless Service db and a StatefulSet db behind it, plus a client pod.
func stsYAML(replicas int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: data}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: data}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: pg, port: 5432}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: data}
spec:
  serviceName: db
  replicas: %d
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - {name: w, image: podnet/workload, ports: [{name: pg, containerPort: 5432}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: data}
spec:
  containers:
  - {name: w, image: podnet/workload, ports: [{containerPort: 8080}]}
`, replicas)
}

func podRunningReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// stsPodsByName lists the pods of StatefulSet db in namespace data.
func stsPodsByName(t *testing.T, lab string) map[string]corev1.Pod {
	t.Helper()
	out := map[string]corev1.Pod{}
	for _, p := range getPods(t, lab, "data") {
		if strings.HasPrefix(p.Name, "db-") {
			out[p.Name] = p
		}
	}
	return out
}

// TestSts: a StatefulSet behind a headless Service, as kube-controller-manager runs it: ordinal
// pods created in order, each with its own DNS name, recreated under the same name, scaled in
// from the top.
func TestSts(t *testing.T) {
	needRoot(t)
	lab := upLab(t, "e2es")
	applyYAML(t, lab, stsYAML(3))

	// OrderedReady: db-i exists only while db-0 … db-(i-1) are Running and Ready.
	var seen []string
	deadline := time.Now().Add(90 * time.Second)
	for {
		pods := stsPodsByName(t, lab)
		for i := 1; i < 3; i++ {
			if _, ok := pods[fmt.Sprintf("db-%d", i)]; !ok {
				continue
			}
			for j := 0; j < i; j++ {
				if p, ok := pods[fmt.Sprintf("db-%d", j)]; !ok || !podRunningReady(&p) {
					t.Fatalf("db-%d exists while db-%d is not Running and Ready", i, j)
				}
			}
		}
		for i := 0; i < 3; i++ {
			name := fmt.Sprintf("db-%d", i)
			if _, ok := pods[name]; ok && (len(seen) == 0 || !strings.Contains(strings.Join(seen, ","), name)) {
				seen = append(seen, name)
			}
		}
		if len(pods) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("StatefulSet pods: %v", seen)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := strings.Join(seen, ","); got != "db-0,db-1,db-2" {
		t.Errorf("pods appeared in the order %s", got)
	}
	applyYAML(t, lab, stsYAML(3), "--wait")
	pods := stsPodsByName(t, lab)
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("db-%d", i)
		p := pods[name]
		if !podRunningReady(&p) {
			t.Errorf("%s not Running and Ready after apply --wait: %s", name, p.Status.Phase)
		}
		if p.Spec.Hostname != name || p.Spec.Subdomain != "db" {
			t.Errorf("%s: hostname %q subdomain %q", name, p.Spec.Hostname, p.Spec.Subdomain)
		}
		if p.Labels["statefulset.kubernetes.io/pod-name"] != name || p.Labels["apps.kubernetes.io/pod-index"] != fmt.Sprint(i) {
			t.Errorf("%s: labels %v", name, p.Labels)
		}
		if len(p.OwnerReferences) != 1 || p.OwnerReferences[0].Kind != "StatefulSet" || p.OwnerReferences[0].Name != "db" {
			t.Errorf("%s: ownerReferences %v", name, p.OwnerReferences)
		}
	}
	out := mustPodnet(t, "get", "sts", "--lab", lab, "-n", "data")
	if !regexp.MustCompile(`(?m)^NAME\s+READY\s+AGE\n^db\s+3/3\s+\d+[smhd]$`).MatchString(strings.TrimSpace(out)) {
		t.Errorf("get sts:\n%s", out)
	}

	// Each pod has its own DNS name under the headless Service.
	waitFor(t, "db-1's DNS name", 20*time.Second, func() error {
		if got := dig(t, lab, "data", "client", "db-1.db.data.svc.cluster.local"); len(got) != 1 || got[0] != pods["db-1"].Status.PodIP {
			return fmt.Errorf("db-1.db.data.svc.cluster.local: %v, want %s", got, pods["db-1"].Status.PodIP)
		}
		return nil
	})

	// A deleted pod comes back under the same name, and DNS follows it.
	old := pods["db-1"]
	mustPodnet(t, "delete", "pod", "db-1", "--lab", lab, "-n", "data", "--wait")
	var fresh corev1.Pod
	waitFor(t, "db-1 recreated", 60*time.Second, func() error {
		p, ok := stsPodsByName(t, lab)["db-1"]
		if !ok || p.UID == old.UID || !podRunningReady(&p) || p.Status.PodIP == "" {
			return fmt.Errorf("db-1: present %v, same uid %v, phase %s", ok, p.UID == old.UID, p.Status.Phase)
		}
		fresh = p
		return nil
	})
	if fresh.Spec.Hostname != "db-1" || fresh.Spec.Subdomain != "db" {
		t.Errorf("recreated db-1: hostname %q subdomain %q", fresh.Spec.Hostname, fresh.Spec.Subdomain)
	}
	t.Logf("db-1: %s before, %s after recreation", old.Status.PodIP, fresh.Status.PodIP)
	waitFor(t, "DNS follows the recreated db-1", 20*time.Second, func() error {
		if got := dig(t, lab, "data", "client", "db-1.db.data.svc.cluster.local"); len(got) != 1 || got[0] != fresh.Status.PodIP {
			return fmt.Errorf("db-1.db.data.svc.cluster.local: %v, want %s", got, fresh.Status.PodIP)
		}
		return nil
	})

	// Scale in by re-applying: db-2 and db-1 go, db-0 stays.
	applyYAML(t, lab, stsYAML(1), "--wait")
	pods = stsPodsByName(t, lab)
	if len(pods) != 1 || pods["db-0"].Name == "" {
		names := []string{}
		for n := range pods {
			names = append(names, n)
		}
		t.Errorf("after scaling to 1: pods %v", names)
	}
	waitFor(t, "DNS after scale-in", 20*time.Second, func() error {
		if s := digStatus(t, lab, "data", "client", "db-2.db.data.svc.cluster.local"); s != "NXDOMAIN" {
			return fmt.Errorf("db-2 after scale-in: %s", s)
		}
		if got := dig(t, lab, "data", "client", "db.data.svc.cluster.local"); len(got) != 1 || got[0] != pods["db-0"].Status.PodIP {
			return fmt.Errorf("headless Service after scale-in: %v, want [%s]", got, pods["db-0"].Status.PodIP)
		}
		return nil
	})
	out = mustPodnet(t, "get", "statefulsets", "--lab", lab, "-n", "data")
	if !regexp.MustCompile(`(?m)^db\s+1/1\s`).MatchString(out) {
		t.Errorf("get statefulsets:\n%s", out)
	}

	// Deleting the StatefulSet deletes its pods.
	mustPodnet(t, "delete", "sts", "db", "--lab", lab, "-n", "data", "--wait")
	if left := stsPodsByName(t, lab); len(left) != 0 {
		t.Errorf("pods left after deleting the StatefulSet: %d", len(left))
	}
}
