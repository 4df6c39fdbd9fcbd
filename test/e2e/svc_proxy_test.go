package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/podnet/podnet/internal/netnsutil"
)

// servicesYAML: web (3 pods, one per node) behind every Service type; local-1 alone on node-1
// behind externalTrafficPolicy Local Services; a Service with no endpoints; one with affinity.
const servicesYAML = `apiVersion: v1
kind: Namespace
metadata: {name: svc}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: svc, labels: {app: web}}
spec:
  nodeName: node-1
  containers:
  - {name: w, image: podnet/workload, ports: [{name: http, containerPort: 8080}, {name: echo, containerPort: 9000, protocol: UDP}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, namespace: svc, labels: {app: web}}
spec:
  nodeName: node-2
  containers:
  - {name: w, image: podnet/workload, ports: [{name: http, containerPort: 8080}, {name: echo, containerPort: 9000, protocol: UDP}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-3, namespace: svc, labels: {app: web}}
spec:
  nodeName: node-3
  containers:
  - {name: w, image: podnet/workload, ports: [{name: http, containerPort: 8080}, {name: echo, containerPort: 9000, protocol: UDP}]}
---
apiVersion: v1
kind: Pod
metadata: {name: local-1, namespace: svc, labels: {app: local}}
spec:
  nodeName: node-1
  containers:
  - {name: w, image: podnet/workload, ports: [{name: http, containerPort: 8080}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client-3, namespace: svc, labels: {app: client}}
spec:
  nodeName: node-3
  containers:
  - {name: w, image: podnet/workload, ports: [{containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: svc}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: dns, port: 53, targetPort: echo, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {name: web-np, namespace: svc}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-lb, namespace: svc}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: local, namespace: svc}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: local}
  ports: [{port: 80, targetPort: 8080, nodePort: 30081}]
---
apiVersion: v1
kind: Service
metadata: {name: sticky, namespace: svc}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: nobody, namespace: svc}
spec:
  selector: {app: nobody}
  ports: [{name: t, port: 80, targetPort: 8080}, {name: u, port: 53, protocol: UDP}]
`

func podNetns(lab, ns, pod string) string { return "/var/run/netns/" + lab + ".pod." + ns + "." + pod }
func externalNetns(lab string) string     { return "/var/run/netns/" + lab + ".external" }

// httpAsk makes one new TCP connection from inside netnsPath and asks the workload server.
func httpAsk(netnsPath, addr string) (reply, error) {
	var r reply
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		return netnsutil.DialContext(ctx, netnsPath, network, a)
	}}
	c := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		return r, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&r)
	return r, err
}

type svcInfo struct {
	clusterIP string
	lbIP      string
}

func getService(t *testing.T, lab, name string) svcInfo {
	t.Helper()
	var s corev1.Service
	out := mustPodnet(t, "get", "service", name, "--lab", lab, "-n", "svc", "-o", "json")
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("decode service %s: %v\n%s", name, err, out)
	}
	info := svcInfo{clusterIP: s.Spec.ClusterIP}
	if len(s.Status.LoadBalancer.Ingress) > 0 {
		info.lbIP = s.Status.LoadBalancer.Ingress[0].IP
	}
	return info
}

// waitFor retries f until it succeeds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestServices drives every Service type of the lab with real connections.
func TestServices(t *testing.T) {
	needRoot(t)
	lab := upLab(t, "e2es", "--nodes", "3")
	applyYAML(t, lab, servicesYAML, "--wait")
	pods := map[string]corev1.Pod{}
	for _, p := range getPods(t, lab, "svc") {
		pods[p.Name] = p
	}
	web := getService(t, lab, "web")
	nodeIP := map[string]string{"node-1": "172.30.0.11", "node-2": "172.30.0.12", "node-3": "172.30.0.13"}
	ext := externalNetns(lab)

	t.Run("ClusterIP spread from every node", func(t *testing.T) {
		for _, from := range []string{"web-1", "web-2", "client-3"} {
			seen := map[string]int{}
			for i := 0; i < 90; i++ {
				r, err := httpAsk(podNetns(lab, "svc", from), web.clusterIP+":80")
				if err != nil {
					t.Fatalf("%s -> %s:80: %v", from, web.clusterIP, err)
				}
				if r.Pod != from && r.ClientIP != pods[from].Status.PodIP {
					t.Fatalf("%s -> %s: backend saw %s, not the client pod's IP (SNAT?)", from, r.Pod, r.ClientIP)
				}
				seen[r.Pod]++
			}
			for _, w := range []string{"web-1", "web-2", "web-3"} {
				if seen[w] < 15 {
					t.Errorf("from %s, 90 connections spread %v: %s got %d (want about 30)", from, seen, w, seen[w])
				}
			}
			t.Logf("from %s: %v", from, seen)
		}
	})

	t.Run("hairpin", func(t *testing.T) {
		self := 0
		for i := 0; i < 30; i++ {
			r, err := httpAsk(podNetns(lab, "svc", "web-1"), web.clusterIP+":80")
			if err != nil {
				t.Fatalf("web-1 -> own Service: %v", err)
			}
			if r.Pod == "web-1" {
				self++
			}
		}
		if self == 0 {
			t.Fatal("web-1 never reached itself through its Service in 30 tries")
		}
	})

	t.Run("NodePort from outside via every node", func(t *testing.T) {
		for node, ip := range nodeIP {
			seen := map[string]bool{}
			for i := 0; i < 30; i++ {
				r, err := httpAsk(ext, ip+":30080")
				if err != nil {
					t.Fatalf("external -> %s (%s):30080: %v", node, ip, err)
				}
				seen[r.Pod] = true
			}
			if len(seen) < 2 {
				t.Errorf("via %s NodePort reached only %v", node, seen)
			}
		}
	})

	t.Run("LoadBalancer IP from outside", func(t *testing.T) {
		var lb svcInfo
		waitFor(t, "web-lb ingress IP", 10*time.Second, func() error {
			lb = getService(t, lab, "web-lb")
			if lb.lbIP == "" {
				return fmt.Errorf("no status.loadBalancer.ingress")
			}
			return nil
		})
		waitFor(t, "external -> LB "+lb.lbIP, 5*time.Second, func() error {
			_, err := httpAsk(ext, lb.lbIP+":80")
			return err
		})
	})

	t.Run("Local policy keeps the client IP and never crosses nodes", func(t *testing.T) {
		extIP := ""
		r, err := httpAsk(ext, nodeIP["node-1"]+":30081")
		if err != nil || r.Pod != "local-1" {
			t.Fatalf("external -> node-1:30081: %+v %v", r, err)
		}
		extIP = r.ClientIP
		if !strings.HasPrefix(extIP, "172.30.0.") || extIP == nodeIP["node-1"] {
			t.Fatalf("Local policy: backend saw %s, want the external client's own address", extIP)
		}
		for _, n := range []string{"node-2", "node-3"} {
			if r, err := httpAsk(ext, nodeIP[n]+":30081"); err == nil {
				t.Fatalf("external -> %s:30081 (no local endpoint) was served by %s: traffic crossed nodes", n, r.Pod)
			}
		}
		// A pod on a node without a local endpoint still reaches a Local Service's NodePort.
		if r, err := httpAsk(podNetns(lab, "svc", "client-3"), nodeIP["node-3"]+":30081"); err != nil || r.Pod != "local-1" {
			t.Fatalf("pod on node-3 -> node-3:30081: %+v %v", r, err)
		}
		lb := getService(t, lab, "local")
		if lb.lbIP != "" {
			waitFor(t, "external -> Local LB", 5*time.Second, func() error {
				r, err := httpAsk(ext, lb.lbIP+":80")
				if err == nil && r.ClientIP != extIP {
					return fmt.Errorf("backend saw %s, want %s", r.ClientIP, extIP)
				}
				return err
			})
		}
	})

	t.Run("healthCheckNodePort answers like kube-proxy", func(t *testing.T) {
		var s corev1.Service
		out := mustPodnet(t, "get", "service", "local", "--lab", lab, "-n", "svc", "-o", "json")
		if err := json.Unmarshal([]byte(out), &s); err != nil || s.Spec.HealthCheckNodePort == 0 {
			t.Fatalf("no healthCheckNodePort: %v\n%s", err, out)
		}
		for node, want := range map[string]int{"node-1": 200, "node-2": 503} {
			addr := fmt.Sprintf("%s:%d", nodeIP[node], s.Spec.HealthCheckNodePort)
			var code int
			var body struct {
				LocalEndpoints int `json:"localEndpoints"`
			}
			waitFor(t, "health check "+node, 5*time.Second, func() error {
				tr := &http.Transport{DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
					return netnsutil.DialContext(ctx, ext, network, a)
				}}
				resp, err := (&http.Client{Transport: tr, Timeout: 2 * time.Second}).Get("http://" + addr + "/")
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				code = resp.StatusCode
				return json.NewDecoder(resp.Body).Decode(&body)
			})
			if code != want || (want == 200) != (body.LocalEndpoints == 1) {
				t.Errorf("%s health check: %d %+v, want %d", node, code, body, want)
			}
		}
	})

	t.Run("proxy trace explains the kernel's table", func(t *testing.T) {
		out := mustPodnet(t, "proxy", "trace", "--lab", lab, "--node", "node-3", "--from", pods["client-3"].Status.PodIP, web.clusterIP+":80")
		for _, w := range []string{"web-1", "web-2", "web-3"} {
			if want := "accept dnat " + pods[w].Status.PodIP + ":8080  (p=0.3333)"; !strings.Contains(out, want) {
				t.Errorf("trace lacks %q:\n%s", want, out)
			}
		}
		nobody := getService(t, lab, "nobody")
		out = mustPodnet(t, "proxy", "trace", "--lab", lab, "--node", "node-3", "--from", pods["client-3"].Status.PodIP, nobody.clusterIP+":53/udp")
		if !strings.Contains(out, "reject icmp port-unreachable  (p=1)") {
			t.Errorf("trace of a Service without endpoints:\n%s", out)
		}
		if out, _, err := podnet("proxy", "show", "--lab", lab, "--node", "node-2"); err != nil || !strings.Contains(out, web.clusterIP+" . tcp . 80 : goto pick-v0-n3-masqoff") {
			t.Errorf("proxy show: %v\n%s", err, out)
		}
	})

	t.Run("metrics on the node", func(t *testing.T) {
		tr := &http.Transport{DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			return netnsutil.DialContext(ctx, "/var/run/netns/"+lab+".node-1", network, a)
		}}
		resp, err := (&http.Client{Transport: tr, Timeout: 2 * time.Second}).Get("http://" + nodeIP["node-1"] + ":10249/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b := new(strings.Builder)
		io.Copy(b, resp.Body)
		for _, m := range []string{"kubeproxy_sync_proxy_rules_duration_seconds_count", "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
			"podnet_proxy_nftables_elements"} {
			if !strings.Contains(b.String(), m) {
				t.Errorf("metrics lack %s", m)
			}
		}
	})

	t.Run("affinity sticks", func(t *testing.T) {
		sticky := getService(t, lab, "sticky")
		first := ""
		for i := 0; i < 20; i++ {
			r, err := httpAsk(podNetns(lab, "svc", "client-3"), sticky.clusterIP+":80")
			if err != nil {
				t.Fatal(err)
			}
			if first == "" {
				first = r.Pod
			} else if r.Pod != first {
				t.Fatalf("ClientIP affinity: connection %d went to %s, earlier ones to %s", i, r.Pod, first)
			}
		}
	})

	t.Run("no endpoints: refused fast", func(t *testing.T) {
		nobody := getService(t, lab, "nobody")
		start := time.Now()
		_, err := netnsutil.Dial(podNetns(lab, "svc", "client-3"), "tcp", nobody.clusterIP+":80")
		if err == nil || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("want connection refused, got %v", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("refusal took %v", d)
		}
	})

	t.Run("UDP client moves on within 2s when its endpoint is deleted", func(t *testing.T) {
		conn, err := netnsutil.Dial(podNetns(lab, "svc", "client-3"), "udp", web.clusterIP+":53")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ask := func() (reply, error) {
			var r reply
			conn.SetDeadline(time.Now().Add(300 * time.Millisecond))
			if _, err := conn.Write([]byte("who")); err != nil {
				return r, err
			}
			b := make([]byte, 2000)
			n, err := conn.Read(b)
			if err != nil {
				return r, err
			}
			return r, json.Unmarshal(b[:n], &r)
		}
		r, err := ask()
		if err != nil {
			t.Fatalf("udp: %v", err)
		}
		victim := r.Pod
		// delete --wait returns once the pod is gone and every node has programmed that; the
		// client must have moved on long before.
		deleted := time.Now()
		done := make(chan error, 1)
		go func() {
			_, stderr, err := podnet("delete", "pod", victim, "--lab", lab, "-n", "svc", "--wait")
			if err != nil {
				err = fmt.Errorf("%v: %s", err, stderr)
			}
			done <- err
		}()
		for {
			r, err := ask()
			if err == nil && r.Pod != victim {
				t.Logf("UDP answered by %s %v after deleting %s", r.Pod, time.Since(deleted).Round(time.Millisecond), victim)
				break
			}
			if time.Since(deleted) > 2*time.Second {
				t.Fatalf("UDP client still stuck %v after deleting %s: %+v %v", time.Since(deleted), victim, r, err)
			}
		}
		if err := <-done; err != nil {
			t.Fatalf("delete --wait: %v", err)
		}
	})

	t.Run("agent restart keeps connections", func(t *testing.T) {
		conn, err := netnsutil.Dial(podNetns(lab, "svc", "client-3"), "tcp", web.clusterIP+":80")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		before, err := askOnConn(conn)
		if err != nil {
			t.Fatal(err)
		}
		out := mustPodnet(t, "lab", "restart-agents", "--lab", lab)
		t.Logf("restart-agents: %s", out)
		if strings.Count(out, "restarted, 0 kernel writes") != 3 {
			t.Errorf("a restarted agent rewrote the kernel instead of adopting it: %s", out)
		}
		after, err := askOnConn(conn)
		if err != nil || after.Pod != before.Pod {
			t.Fatalf("connection to %s broke across the agent restart: %+v %v", before.Pod, after, err)
		}
	})
}
