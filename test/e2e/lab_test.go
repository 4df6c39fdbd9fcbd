package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/podnet/podnet/internal/cni"
)

// TestBadInput: every kind of bad input gets one clear error naming the problem, a non-zero exit,
// and leaves nothing behind.
func TestBadInput(t *testing.T) {
	needRoot(t)
	name := "bad" + randHex(3)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"lab", "up", "--name", name, "--pod-cidr", "10.96.0.0/12"}, "overlaps"},
		{[]string{"lab", "up", "--name", name, "--pod-cidr", "10.244.0.0/33"}, "--pod-cidr"},
		{[]string{"lab", "up", "--name", name, "--nodes", "5", "--pod-cidr", "10.244.0.0/23"}, "--node-cidr-size"},
		{[]string{"lab", "up", "--name", name, "--backend", "ipip"}, "--backend"},
		{[]string{"lab", "up", "--name", "Bad.Name"}, "--name"},
		{[]string{"lab", "down", "--name", name}, "does not exist"},
		{[]string{"get", "pods", "--lab", name}, "does not exist"},
	} {
		out, stderr, err := podnet(tc.args...)
		if err == nil {
			t.Errorf("podnet %v succeeded: %s", tc.args, out)
			continue
		}
		if !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 2 {
			t.Errorf("podnet %v: error %q should be one clear line mentioning %q", tc.args, stderr, tc.want)
		}
		if _, err := os.Stat(filepath.Join(os.Getenv("PODNET_STATE_ROOT"), name)); err == nil {
			t.Errorf("podnet %v left state behind", tc.args)
		}
		if left := netnsWithPrefix(name + "."); len(left) > 0 {
			t.Errorf("podnet %v left namespaces: %v", tc.args, left)
		}
	}
}

// TestLab covers the lab's contract on one small lab: a taken name, bad manifests applied all or
// nothing, a pod running its own command, Deployments scaling, delete --wait, anti-spoofing.
func TestLab(t *testing.T) {
	needRoot(t)
	lab := upLab(t, "e2el", "--nodes", "2", "--backend", "host-gw")
	if _, stderr, err := podnet("lab", "up", "--name", lab); err == nil || !strings.Contains(stderr, "exists") {
		t.Fatalf("a second lab up with the same name: err=%v %s", err, stderr)
	}

	t.Run("bad manifests apply nothing", func(t *testing.T) {
		dir := t.TempDir()
		for _, tc := range []struct{ yaml, want string }{
			{"apiVersion: v1\nkind: Pod\nmetadata: {name: ok1}\nspec: {containers: [{name: c}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containres: []\n", `unknown field "spec.containres"`},
			{"apiVersion: v1\nkind: Pod\nmetadata: {name: ok1}\nspec: {containers: [{name: c}]}\n---\napiVersion: v1\nkind: Gizmo\nmetadata: {name: x}\n", "Gizmo"},
			{"apiVersion: v1\nkind: Pod\nmetadata: {name: ok1\nspec: [\n", "malformed YAML"},
			{"apiVersion: v1\nkind: Pod\nmetadata: {name: ok1}\nspec: {containers: [{name: c, ports: [{containerPort: 70000}]}]}\n", "containerPort"},
			{"apiVersion: v1\nkind: Pod\nmetadata: {name: ok1}\nspec: {nodeName: node-9, containers: [{name: c}]}\n", "node-9"},
			{"apiVersion: v1\nkind: Pod\nmetadata: {name: ok1, namespace: nowhere}\nspec: {containers: [{name: c}]}\n", "nowhere"},
		} {
			f := filepath.Join(dir, "bad.yaml")
			os.WriteFile(f, []byte(tc.yaml), 0o644)
			_, stderr, err := podnet("apply", "--lab", lab, "-f", f)
			if err == nil || !strings.Contains(stderr, tc.want) {
				t.Errorf("apply %q: err=%v stderr=%q, want an error mentioning %q", tc.yaml, err, stderr, tc.want)
			}
		}
		if out := mustPodnet(t, "get", "pods", "--lab", lab, "-n", "default"); !strings.Contains(out, "No resources") {
			t.Errorf("a failed apply left objects:\n%s", out)
		}
	})

	t.Run("command pods, deployments and delete", func(t *testing.T) {
		applyYAML(t, lab, `apiVersion: v1
kind: Pod
metadata: {name: py, labels: {app: py}}
spec:
  nodeName: node-2
  containers:
  - name: http
    image: python
    command: ["python3", "-m", "http.server", "8000", "--bind", "0.0.0.0"]
    ports: [{containerPort: 8000}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        ports: [{containerPort: 8080}]
`, "--wait")
		pods := getPods(t, lab, "default")
		var py, client string
		webs := 0
		nodes := map[string]bool{}
		for _, p := range pods {
			if p.Name == "py" {
				py = p.Status.PodIP
			} else if strings.HasPrefix(p.Name, "web-") {
				webs++
				client = p.Name
				nodes[p.Spec.NodeName] = true
			}
		}
		if webs != 3 || len(nodes) != 2 {
			t.Fatalf("deployment web: %d pods on nodes %v, want 3 pods spread over both nodes", webs, nodes)
		}
		out, stderr, err := podnet("exec", "--lab", lab, client, "--", "python3", "-c",
			"import urllib.request,sys; sys.stdout.write(str(urllib.request.urlopen('http://"+py+":8000/').status))")
		if err != nil || out != "200" {
			t.Fatalf("python http.server in pod py not reachable from %s: %q %v %s", client, out, err, stderr)
		}
		// A command's exit code comes back through podnet exec.
		if _, _, err := podnet("exec", "--lab", lab, client, "--", "sh", "-c", "exit 7"); err == nil || !strings.Contains(err.Error(), "exit status 7") {
			t.Errorf("exec exit code: %v", err)
		}
		// Scale down; the deleted pods' namespaces go away.
		applyYAML(t, lab, `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        ports: [{containerPort: 8080}]
`, "--wait")
		deadline := time.Now().Add(15 * time.Second)
		for len(netnsWithPrefix(lab+".pod.default.web-")) != 1 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if n := len(netnsWithPrefix(lab + ".pod.default.web-")); n != 1 {
			t.Errorf("after scaling to 1: %d web pod namespaces", n)
		}
		mustPodnet(t, "delete", "--lab", lab, "pod", "py", "--wait")
		if left := netnsWithPrefix(lab + ".pod.default.py"); len(left) > 0 {
			t.Errorf("deleted pod's namespace is left: %v", left)
		}
	})

	t.Run("bandwidth annotations reach the bandwidth plugin", func(t *testing.T) {
		applyYAML(t, lab, `apiVersion: v1
kind: Pod
metadata:
  name: shaped
  annotations: {kubernetes.io/ingress-bandwidth: 10M, kubernetes.io/egress-bandwidth: 20M}
spec: {nodeName: node-1, containers: [{name: c, ports: [{containerPort: 8080}]}]}
`, "--wait")
		var uid string
		for _, p := range getPods(t, lab, "default") {
			if p.Name == "shaped" {
				uid = string(p.UID)
			}
		}
		nsh, err := netns.GetFromName(lab + ".node-1")
		if err != nil {
			t.Fatal(err)
		}
		defer nsh.Close()
		h, err := netlink.NewHandleAt(nsh)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		rates := map[string]uint64{}
		links, _ := h.LinkList()
		for _, l := range links {
			qs, _ := h.QdiscList(l)
			for _, q := range qs {
				if tbf, ok := q.(*netlink.Tbf); ok {
					rates[l.Type()+":"+l.Attrs().Name] = tbf.Rate
				}
			}
		}
		veth := cni.HostVethName(uid, "eth0")
		if got := rates["veth:"+veth]; got != 10_000_000/8 {
			t.Errorf("ingress: tbf on %s = %d bytes/s, want %d (10M); all tbf: %v", veth, got, 10_000_000/8, rates)
		}
		egress := false
		for k, v := range rates {
			egress = egress || (strings.HasPrefix(k, "ifb:") && v == 20_000_000/8)
		}
		if !egress {
			t.Errorf("egress: no ifb device shaped to 20M; all tbf: %v", rates)
		}
	})

	t.Run("anti-spoofing across nodes", func(t *testing.T) {
		applyYAML(t, lab, `apiVersion: v1
kind: Pod
metadata: {name: spoofer}
spec: {nodeName: node-1, containers: [{name: c}]}
---
apiVersion: v1
kind: Pod
metadata: {name: victim}
spec: {nodeName: node-2, containers: [{name: c}]}
`, "--wait")
		var spoofer, victim string
		for _, p := range getPods(t, lab, "default") {
			switch p.Name {
			case "spoofer":
				spoofer = p.Status.PodIP
			case "victim":
				victim = p.Status.PodIP
			}
		}
		// A listener in the victim's namespace.
		var pc net.PacketConn
		if err := ns.WithNetNSPath("/var/run/netns/"+lab+".pod.default.victim", func(ns.NetNS) error {
			var err error
			pc, err = net.ListenPacket("udp4", ":7777")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		fake := net.ParseIP(spoofer).To4()
		fake[3] += 100
		send := func(src net.IP) {
			err := ns.WithNetNSPath("/var/run/netns/"+lab+".pod.default.spoofer", func(ns.NetNS) error {
				if !src.Equal(net.ParseIP(spoofer)) {
					l, err := netlink.LinkByName("eth0")
					if err != nil {
						return err
					}
					if err := netlink.AddrReplace(l, &netlink.Addr{IPNet: &net.IPNet{IP: src, Mask: net.CIDRMask(32, 32)}}); err != nil {
						return err
					}
				}
				c, err := net.DialUDP("udp4", &net.UDPAddr{IP: src}, &net.UDPAddr{IP: net.ParseIP(victim), Port: 7777})
				if err != nil {
					return err
				}
				defer c.Close()
				_, err = c.Write([]byte("from " + src.String()))
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		recv := func() string {
			buf := make([]byte, 100)
			pc.SetReadDeadline(time.Now().Add(time.Second))
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return ""
			}
			return from.(*net.UDPAddr).IP.String() + " " + string(buf[:n])
		}
		send(fake)
		if got := recv(); got != "" {
			t.Errorf("a datagram with a spoofed source crossed the network: %q", got)
		}
		send(net.ParseIP(spoofer))
		if got := recv(); !strings.HasPrefix(got, spoofer+" ") {
			t.Errorf("a datagram with the pod's own source did not arrive: %q", got)
		}
	})
}

// TestDaemonRestart kills the lab daemon outright; `podnet lab restart` finds the cluster in the
// state directory, adopts the running pods (same IPs, same processes) and traffic flows again.
func TestDaemonRestart(t *testing.T) {
	needRoot(t)
	lab := upLab(t, "e2er", "--nodes", "2")
	applyYAML(t, lab, sixPods2(), "--wait")
	before := getPods(t, lab, "net")
	pidFile := filepath.Join(os.Getenv("PODNET_STATE_ROOT"), lab, "daemon.pid")
	pid, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("kill", "-9", strings.TrimSpace(string(pid))).CombinedOutput(); err != nil {
		t.Fatalf("kill daemon: %v %s", err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, stderr, err := podnet("lab", "restart", "--name", lab)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lab restart: %v %s", err, stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
	after := getPods(t, lab, "net")
	if len(after) != len(before) {
		t.Fatalf("%d pods before, %d after", len(before), len(after))
	}
	ips := map[string]string{}
	for _, p := range before {
		ips[p.Name] = p.Status.PodIP
	}
	for _, p := range after {
		if ips[p.Name] != p.Status.PodIP || p.Status.Phase != "Running" {
			t.Errorf("pod %s: %s %s after restart, was %s", p.Name, p.Status.Phase, p.Status.PodIP, ips[p.Name])
		}
	}
	r, err := probe(lab, "net", after[0].Name, "tcp", net.JoinHostPort(after[len(after)-1].Status.PodIP, "8080"))
	if err != nil || r.Pod != after[len(after)-1].Name {
		t.Fatalf("after restart: %+v %v", r, err)
	}
	// The restarted daemon still runs the lab: a new pod gets its network.
	applyYAML(t, lab, "apiVersion: v1\nkind: Pod\nmetadata: {name: late, namespace: net}\nspec: {containers: [{name: c, ports: [{containerPort: 8080}]}]}\n", "--wait")
}

// sixPods2 is sixPods for a 2-node lab (pods on node-3 would never start).
func sixPods2() string {
	return strings.ReplaceAll(sixPods(), "node-3", "node-1")
}
