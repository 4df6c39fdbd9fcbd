package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// The lab's Service control plane, end to end: what kube-apiserver allocates, what the
// EndpointSlice controller and a cloud load balancer do, and the external client's routes.

const svcObjects = `apiVersion: v1
kind: Namespace
metadata: {name: svc}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: svc}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: solo, namespace: svc, labels: {app: solo}}
spec:
  nodeName: node-2
  hostname: solo-0
  subdomain: headless
  containers: [{name: c, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: svc, labels: {tier: front}}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: fixed, namespace: svc}
spec:
  clusterIP: 10.96.0.50
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: np, namespace: svc}
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080, nodePort: 30080}
  - {name: dns, port: 53, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {name: lb, namespace: svc}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: lbreq, namespace: svc}
spec:
  type: LoadBalancer
  loadBalancerIP: 172.31.255.200
  allocateLoadBalancerNodePorts: false
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: lblocal, namespace: svc}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: solo}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: headless, namespace: svc}
spec:
  clusterIP: None
  selector: {app: solo}
  ports: [{port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: eip, namespace: svc}
spec:
  externalIPs: [192.0.2.77]
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: svc}
spec:
  type: ExternalName
  externalName: db.example.com
`

func getServices(t *testing.T, lab, ns string) map[string]corev1.Service {
	t.Helper()
	out := mustPodnet(t, "get", "services", "--lab", lab, "-n", ns, "-o", "json")
	var list struct{ Items []corev1.Service }
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("decode services: %v\n%s", err, out)
	}
	m := map[string]corev1.Service{}
	for _, s := range list.Items {
		m[s.Name] = s
	}
	return m
}

// getSlices returns the EndpointSlices of each Service.
func getSlices(t *testing.T, lab, ns string) map[string][]discoveryv1.EndpointSlice {
	t.Helper()
	out := mustPodnet(t, "get", "endpointslices", "--lab", lab, "-n", ns, "-o", "json")
	var list struct{ Items []discoveryv1.EndpointSlice }
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("decode endpointslices: %v\n%s", err, out)
	}
	m := map[string][]discoveryv1.EndpointSlice{}
	for _, s := range list.Items {
		m[s.Labels[discoveryv1.LabelServiceName]] = append(m[s.Labels[discoveryv1.LabelServiceName]], s)
	}
	return m
}

// sliceTargets lists "pod@ip r/s/t" for every endpoint of the slices, sorted.
func sliceTargets(slices []discoveryv1.EndpointSlice) []string {
	var out []string
	for _, s := range slices {
		for _, ep := range s.Endpoints {
			b := func(p *bool) int {
				if p != nil && *p {
					return 1
				}
				return 0
			}
			out = append(out, fmt.Sprintf("%s@%s %d%d%d", ep.TargetRef.Name, ep.Addresses[0],
				b(ep.Conditions.Ready), b(ep.Conditions.Serving), b(ep.Conditions.Terminating)))
		}
	}
	sort.Strings(out)
	return out
}

// externalRoutes reads the LAN router's routes (protocol 96) in LAB.external: destination → next hops.
func externalRoutes(t *testing.T, lab string) map[string][]string {
	t.Helper()
	h, err := netns.GetFromName(lab + ".external")
	if err != nil {
		t.Fatalf("external namespace: %v", err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	routes, err := nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: 96}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, r := range routes {
		var hops []string
		if r.Gw != nil {
			hops = append(hops, r.Gw.String())
		}
		for _, nh := range r.MultiPath {
			hops = append(hops, nh.Gw.String())
		}
		sort.Strings(hops)
		out[r.Dst.String()] = hops
	}
	return out
}

// applyErr applies YAML that must be refused and returns the error output.
func applyErr(t *testing.T, lab, yaml string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(f, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := podnet("apply", "--lab", lab, "-f", f)
	if err == nil {
		t.Fatalf("apply succeeded:\n%s\n%s", yaml, out)
	}
	return strings.TrimSpace(stderr)
}

func eventually(t *testing.T, timeout time.Duration, what string, ok func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		good, state := ok()
		if good {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s: %s", what, timeout, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestSvcControlPlane(t *testing.T) {
	needRoot(t)
	lab := upLab(t, "svcc", "--nodes", "2")
	const node1, node2 = "172.30.0.11", "172.30.0.12"

	st := mustPodnet(t, "lab", "status", "--lab", lab)
	for _, want := range []string{"load-balancer CIDR 172.31.255.0/24", lab + ".external", "172.30.0.254"} {
		if !strings.Contains(st, want) {
			t.Errorf("lab status does not show %q:\n%s", want, st)
		}
	}
	if len(netnsWithPrefix(lab+".external")) != 1 {
		t.Fatalf("no external namespace: %v", netnsWithPrefix(lab+"."))
	}

	applyYAML(t, lab, svcObjects, "--wait")
	svcs := getServices(t, lab, "svc")
	slices := getSlices(t, lab, "svc")
	routes := externalRoutes(t, lab) // --wait returned: the router has programmed it all

	t.Run("allocations", func(t *testing.T) {
		_, svcNet, _ := net.ParseCIDR("10.96.0.0/16")
		web := svcs["web"]
		if ip := net.ParseIP(web.Spec.ClusterIP); ip == nil || !svcNet.Contains(ip) || web.Spec.ClusterIP == "10.96.0.1" || web.Spec.ClusterIP == "10.96.0.10" {
			t.Errorf("web: clusterIP %q", web.Spec.ClusterIP)
		}
		if !reflect.DeepEqual(web.Spec.ClusterIPs, []string{web.Spec.ClusterIP}) {
			t.Errorf("web: clusterIPs %v do not mirror clusterIP %s", web.Spec.ClusterIPs, web.Spec.ClusterIP)
		}
		seen := map[string]string{}
		for name, s := range svcs {
			if ip := s.Spec.ClusterIP; ip != "" && ip != "None" {
				if other, dup := seen[ip]; dup {
					t.Errorf("services %s and %s share %s", name, other, ip)
				}
				seen[ip] = name
			}
		}
		if ip := svcs["fixed"].Spec.ClusterIP; ip != "10.96.0.50" {
			t.Errorf("fixed: clusterIP %s, want the requested 10.96.0.50", ip)
		}
		np := svcs["np"].Spec.Ports
		if np[0].NodePort != 30080 || np[1].NodePort < 30000 || np[1].NodePort > 32767 || np[1].NodePort == 30080 {
			t.Errorf("np: nodePorts %d %d", np[0].NodePort, np[1].NodePort)
		}
		if p := svcs["lb"].Spec.Ports[0].NodePort; p < 30000 || p > 32767 {
			t.Errorf("lb: nodePort %d", p)
		}
		if p := svcs["lbreq"].Spec.Ports[0].NodePort; p != 0 {
			t.Errorf("lbreq (allocateLoadBalancerNodePorts: false): nodePort %d", p)
		}
		if hc := svcs["lblocal"].Spec.HealthCheckNodePort; hc < 30000 || hc > 32767 {
			t.Errorf("lblocal: healthCheckNodePort %d", hc)
		}
		if hc := svcs["lb"].Spec.HealthCheckNodePort; hc != 0 {
			t.Errorf("lb (Cluster): healthCheckNodePort %d", hc)
		}
		if s := svcs["headless"]; s.Spec.ClusterIP != "None" {
			t.Errorf("headless: clusterIP %q", s.Spec.ClusterIP)
		}
		if s := svcs["ext"]; s.Spec.ClusterIP != "" {
			t.Errorf("ext: clusterIP %q", s.Spec.ClusterIP)
		}
		_, lbNet, _ := net.ParseCIDR("172.31.255.0/24")
		for _, name := range []string{"lb", "lblocal"} {
			in := svcs[name].Status.LoadBalancer.Ingress
			if len(in) != 1 || !lbNet.Contains(net.ParseIP(in[0].IP)) || in[0].IPMode == nil || *in[0].IPMode != corev1.LoadBalancerIPModeVIP {
				t.Errorf("%s: load-balancer ingress %+v", name, in)
			}
		}
		if in := svcs["lbreq"].Status.LoadBalancer.Ingress; len(in) != 1 || in[0].IP != "172.31.255.200" {
			t.Errorf("lbreq: ingress %+v, want the requested 172.31.255.200", in)
		}
		if a, b := svcs["lb"].Status.LoadBalancer.Ingress, svcs["lblocal"].Status.LoadBalancer.Ingress; len(a) == 1 && len(b) == 1 && a[0].IP == b[0].IP {
			t.Errorf("lb and lblocal share %s", a[0].IP)
		}
	})

	t.Run("get services", func(t *testing.T) {
		out := mustPodnet(t, "get", "svc", "--lab", lab, "-n", "svc")
		rows := map[string][]string{}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(l)
			rows[f[0]] = f
		}
		lbRow := strings.Join(svcs["lb"].Spec.ClusterIPs, "")
		for name, want := range map[string]string{
			"NAME":     "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE",
			"lb":       fmt.Sprintf("lb LoadBalancer %s %s 80:%d/TCP", lbRow, svcs["lb"].Status.LoadBalancer.Ingress[0].IP, svcs["lb"].Spec.Ports[0].NodePort),
			"np":       fmt.Sprintf("np NodePort %s <none> 80:30080/TCP,53:%d/UDP", svcs["np"].Spec.ClusterIP, svcs["np"].Spec.Ports[1].NodePort),
			"eip":      fmt.Sprintf("eip ClusterIP %s 192.0.2.77 80/TCP", svcs["eip"].Spec.ClusterIP),
			"ext":      "ext ExternalName <none> db.example.com <none>",
			"headless": "headless ClusterIP None <none> 8080/TCP",
		} {
			if got := strings.Join(rows[name], " "); !strings.HasPrefix(got, want) {
				t.Errorf("get svc row %q, want it to start %q\n%s", got, want, out)
			}
		}
		var one corev1.Service
		if err := json.Unmarshal([]byte(mustPodnet(t, "get", "service", "lb", "--lab", lab, "-n", "svc", "-o", "json")), &one); err != nil ||
			one.Kind != "Service" || one.Name != "lb" || len(one.Status.LoadBalancer.Ingress) != 1 {
			t.Errorf("get service lb -o json: want the object itself: %v %+v", err, one)
		}
		wide := mustPodnet(t, "get", "services", "--lab", lab, "-n", "svc", "-o", "wide")
		if !strings.Contains(wide, "SELECTOR") || !strings.Contains(wide, "app=solo") {
			t.Errorf("get svc -o wide:\n%s", wide)
		}
		es := mustPodnet(t, "get", "endpointslices", "--lab", lab, "-n", "svc")
		if !strings.Contains(es, "NAME") || !strings.Contains(es, "ADDRESSTYPE") || !strings.Contains(es, "IPv4") || !strings.Contains(es, "8080") {
			t.Errorf("get endpointslices:\n%s", es)
		}
	})

	t.Run("endpointslices", func(t *testing.T) {
		web := slices["web"]
		if len(web) != 1 {
			t.Fatalf("web: %d slices", len(web))
		}
		s := web[0]
		if !strings.HasPrefix(s.Name, "web-") || s.AddressType != discoveryv1.AddressTypeIPv4 ||
			s.Labels[discoveryv1.LabelManagedBy] != "endpointslice-controller.k8s.io" || s.Labels["tier"] != "front" {
			t.Errorf("web slice meta: %s %s %v", s.Name, s.AddressType, s.Labels)
		}
		if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Kind != "Service" || s.OwnerReferences[0].UID != svcs["web"].UID {
			t.Errorf("web slice ownerReferences %+v", s.OwnerReferences)
		}
		if len(s.Ports) != 1 || *s.Ports[0].Name != "http" || *s.Ports[0].Port != 8080 || *s.Ports[0].Protocol != corev1.ProtocolTCP {
			t.Errorf("web slice ports %+v", s.Ports)
		}
		targets := sliceTargets(web)
		if len(targets) != 2 {
			t.Fatalf("web endpoints %v, want the 2 pods", targets)
		}
		for _, tg := range targets {
			if !strings.HasPrefix(tg, "web-") || !strings.HasSuffix(tg, " 110") {
				t.Errorf("web endpoint %q: want a ready, serving, not terminating web pod", tg)
			}
		}
		for _, ep := range s.Endpoints {
			if ep.NodeName == nil || ep.TargetRef.Namespace != "svc" || ep.TargetRef.UID == "" {
				t.Errorf("web endpoint %+v", ep)
			}
		}
		h := slices["headless"]
		if len(h) != 1 || len(h[0].Endpoints) != 1 || h[0].Endpoints[0].Hostname == nil || *h[0].Endpoints[0].Hostname != "solo-0" {
			t.Errorf("headless slice: %+v", h)
		} else if _, ok := h[0].Labels[corev1.IsHeadlessService]; !ok {
			t.Errorf("headless slice labels %v", h[0].Labels)
		}
		if len(slices["ext"]) != 0 {
			t.Errorf("ExternalName service has slices: %+v", slices["ext"])
		}
	})

	lbIP := svcs["lb"].Status.LoadBalancer.Ingress[0].IP
	localIP := svcs["lblocal"].Status.LoadBalancer.Ingress[0].IP
	t.Run("external routes", func(t *testing.T) {
		want := map[string][]string{
			lbIP + "/32":        {node1, node2},
			"172.31.255.200/32": {node1, node2},
			localIP + "/32":     {node2}, // Local: only node-2 runs an endpoint (pod solo)
			"192.0.2.77/32":     {node1, node2},
		}
		if !reflect.DeepEqual(routes, want) {
			t.Errorf("routes in %s.external:\n %v\nwant\n %v", lab, routes, want)
		}
		out := mustPodnet(t, "lab", "exec-external", "--lab", lab, "--", "ip", "route")
		if !strings.Contains(out, lbIP+" proto 96") || !strings.Contains(out, "nexthop via "+node1) {
			t.Errorf("exec-external ip route:\n%s", out)
		}
		// The external client is on the nodes' LAN: a node answers it (with a TCP reset).
		for _, n := range []string{node1, node2} {
			out, stderr, err := podnet("lab", "exec-external", "--lab", lab, "--", "python3", "-c",
				"import socket,sys\ns=socket.socket(); s.settimeout(3)\ntry:\n s.connect(('"+n+"', 9))\nexcept ConnectionRefusedError:\n sys.stdout.write('refused')\n")
			if err != nil || (out != "refused" && out != "") {
				t.Errorf("external client to node %s: %q %v %s", n, out, err, stderr)
			}
		}
		if _, _, err := podnet("lab", "exec-external", "--lab", lab, "--", "sh", "-c", "exit 3"); err == nil || !strings.Contains(err.Error(), "exit status 3") {
			t.Errorf("exec-external exit code: %v", err)
		}
	})

	t.Run("bad services apply nothing", func(t *testing.T) {
		okObjs := "apiVersion: v1\nkind: Service\nmetadata: {name: okay, namespace: svc}\nspec: {selector: {app: web}, ports: [{port: 80}]}\n---\n" +
			"apiVersion: v1\nkind: Pod\nmetadata: {name: okpod, namespace: svc}\nspec: {containers: [{name: c}]}\n---\n"
		for _, tc := range []struct{ yaml, want string }{
			{"apiVersion: v1\nkind: Service\nmetadata: {name: bad, namespace: svc}\nspec: {clusterIP: 10.96.0.50, ports: [{port: 80}]}\n",
				`Service svc/bad: spec.clusterIP: Invalid value: "10.96.0.50": provided IP is already allocated`},
			{"apiVersion: v1\nkind: Service\nmetadata: {name: bad, namespace: svc}\nspec: {clusterIP: 10.97.0.1, ports: [{port: 80}]}\n",
				`spec.clusterIP: Invalid value: "10.97.0.1": provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/16`},
			{"apiVersion: v1\nkind: Service\nmetadata: {name: bad, namespace: svc}\nspec: {clusterIP: 10.96.255.255, ports: [{port: 80}]}\n",
				`spec.clusterIP: Invalid value: "10.96.255.255": provided IP is not in the valid range`},
			{"apiVersion: v1\nkind: Service\nmetadata: {name: bad, namespace: svc}\nspec: {type: NodePort, ports: [{port: 80, nodePort: 30080}]}\n",
				`Service svc/bad: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated`},
			{"apiVersion: v1\nkind: Service\nmetadata: {name: fixed, namespace: svc}\nspec: {clusterIP: 10.96.0.51, selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}\n",
				`Service svc/fixed: spec.clusterIP: Invalid value: "10.96.0.51": field is immutable`},
			// Two Services of one request asking for the same NodePort.
			{"apiVersion: v1\nkind: Service\nmetadata: {name: bad1, namespace: svc}\nspec: {type: NodePort, ports: [{port: 80, nodePort: 31999}]}\n---\n" +
				"apiVersion: v1\nkind: Service\nmetadata: {name: bad2, namespace: svc}\nspec: {type: NodePort, ports: [{port: 80, nodePort: 31999}]}\n",
				`Service svc/bad2: spec.ports[0].nodePort: Invalid value: 31999: provided port is already allocated`},
		} {
			stderr := applyErr(t, lab, okObjs+tc.yaml)
			if !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") > 0 {
				t.Errorf("apply:\n%s\nerror %q, want one line containing %q", tc.yaml, stderr, tc.want)
			}
		}
		after := getServices(t, lab, "svc")
		for _, name := range []string{"okay", "bad", "bad1", "bad2"} {
			if _, ok := after[name]; ok {
				t.Errorf("a refused apply created service %s", name)
			}
		}
		if after["fixed"].Spec.ClusterIP != "10.96.0.50" {
			t.Errorf("fixed changed: %s", after["fixed"].Spec.ClusterIP)
		}
		for _, p := range getPods(t, lab, "svc") {
			if p.Name == "okpod" {
				t.Errorf("a refused apply created pod okpod")
			}
		}
		// Re-applying the same objects changes nothing: allocations are kept.
		out := applyYAML(t, lab, svcObjects, "--wait")
		if strings.Contains(out, "configured") {
			t.Errorf("re-apply reconfigured:\n%s", out)
		}
		again := getServices(t, lab, "svc")
		for name, s := range svcs {
			if !reflect.DeepEqual(s.Spec, again[name].Spec) || !reflect.DeepEqual(s.Status, again[name].Status) {
				t.Errorf("%s changed on re-apply:\n %+v\n %+v", name, s.Spec, again[name].Spec)
			}
		}
	})

	t.Run("slices follow pods", func(t *testing.T) {
		scaled := strings.Replace(svcObjects, "replicas: 2", "replicas: 3", 1)
		applyYAML(t, lab, scaled, "--wait")
		if n := len(sliceTargets(getSlices(t, lab, "svc")["web"])); n != 3 {
			t.Fatalf("after scaling to 3: %d web endpoints", n)
		}
		var victim string
		for _, p := range getPods(t, lab, "svc") {
			if strings.HasPrefix(p.Name, "web-") {
				victim = p.Name
			}
		}
		mustPodnet(t, "delete", "--lab", lab, "-n", "svc", "pod", victim, "--wait")
		for _, tg := range sliceTargets(getSlices(t, lab, "svc")["web"]) {
			if strings.HasPrefix(tg, victim+"@") {
				t.Errorf("deleted pod %s still an endpoint: %s", victim, tg)
			}
		}
		// The Deployment brings a third pod back; the slice lists it.
		eventually(t, 30*time.Second, "a replacement endpoint", func() (bool, string) {
			tg := sliceTargets(getSlices(t, lab, "svc")["web"])
			ready := 0
			for _, x := range tg {
				if strings.HasSuffix(x, " 110") {
					ready++
				}
			}
			return ready == 3, strings.Join(tg, ", ")
		})
		// Without pods the Local Service's address is routed nowhere; the empty slice stays.
		mustPodnet(t, "delete", "--lab", lab, "-n", "svc", "pod", "solo", "--wait")
		if got := externalRoutes(t, lab); got[localIP+"/32"] != nil {
			t.Errorf("lblocal without endpoints still routed: %v", got[localIP+"/32"])
		}
		ls := getSlices(t, lab, "svc")["lblocal"]
		if len(ls) != 1 || len(ls[0].Endpoints) != 0 {
			t.Errorf("lblocal slices without pods: %+v", ls)
		}
	})

	t.Run("delete and type changes", func(t *testing.T) {
		mustPodnet(t, "delete", "--lab", lab, "-n", "svc", "service", "lb", "--wait")
		if got := externalRoutes(t, lab); got[lbIP+"/32"] != nil {
			t.Errorf("deleted lb still routed: %v", got)
		}
		if s := getSlices(t, lab, "svc")["lb"]; len(s) != 0 {
			t.Errorf("deleted lb still has slices: %d", len(s))
		}
		// lbreq becomes a ClusterIP Service: it keeps its ClusterIP, loses its address and route.
		applyYAML(t, lab, "apiVersion: v1\nkind: Service\nmetadata: {name: lbreq, namespace: svc}\nspec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}\n", "--wait")
		s := getServices(t, lab, "svc")["lbreq"]
		if s.Spec.ClusterIP != svcs["lbreq"].Spec.ClusterIP || len(s.Status.LoadBalancer.Ingress) != 0 {
			t.Errorf("lbreq as ClusterIP: %s %+v", s.Spec.ClusterIP, s.Status.LoadBalancer.Ingress)
		}
		if got := externalRoutes(t, lab); got["172.31.255.200/32"] != nil {
			t.Errorf("a ClusterIP Service's old address still routed: %v", got)
		}
		// A new LoadBalancer gets the freed address first (the lowest free one).
		applyYAML(t, lab, "apiVersion: v1\nkind: Service\nmetadata: {name: lb2, namespace: svc}\nspec: {type: LoadBalancer, selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}\n", "--wait")
		if in := getServices(t, lab, "svc")["lb2"].Status.LoadBalancer.Ingress; len(in) != 1 || in[0].IP != lbIP {
			t.Errorf("lb2: ingress %+v, want the freed %s", in, lbIP)
		}
		// A taken loadBalancerIP leaves the Service pending, and --wait says why.
		f := filepath.Join(t.TempDir(), "taken.yaml")
		os.WriteFile(f, []byte("apiVersion: v1\nkind: Service\nmetadata: {name: lb3, namespace: svc}\nspec: {type: LoadBalancer, loadBalancerIP: "+lbIP+", ports: [{port: 80}]}\n"), 0o644)
		_, stderr, err := podnet("apply", "--lab", lab, "-f", f, "--wait", "--timeout", "20s")
		if err == nil || !strings.Contains(stderr, "already used by service svc/lb2") {
			t.Errorf("lb3 with a taken loadBalancerIP: %v %s", err, stderr)
		}
		if out := mustPodnet(t, "get", "svc", "lb3", "--lab", lab, "-n", "svc"); !strings.Contains(out, "<pending>") {
			t.Errorf("lb3 not pending:\n%s", out)
		}
	})

	t.Run("many services at once", func(t *testing.T) {
		var b strings.Builder
		for i := 0; i < 200; i++ {
			fmt.Fprintf(&b, "apiVersion: v1\nkind: Service\nmetadata: {name: bulk-%d, namespace: svc}\nspec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}\n---\n", i)
		}
		applyYAML(t, lab, b.String(), "--wait")
		all := getSlices(t, lab, "svc")
		for i := 0; i < 200; i++ {
			if n := len(sliceTargets(all[fmt.Sprintf("bulk-%d", i)])); n != 3 {
				t.Fatalf("bulk-%d: %d endpoints", i, n)
			}
		}
		mustPodnet(t, "lab", "status", "--lab", lab) // the daemon is alive
	})

	t.Run("terminating endpoints", func(t *testing.T) {
		applyYAML(t, lab, `apiVersion: v1
kind: Pod
metadata: {name: slow, namespace: svc, labels: {app: slow}}
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - name: c
    command: ["sh", "-c", "trap '' TERM; exec python3 -c 'import socket,time; s=socket.socket(); s.bind((\"\", 8080)); s.listen(); time.sleep(600)'"]
    ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: slow, namespace: svc}
spec: {selector: {app: slow}, ports: [{port: 80, targetPort: http}]}
`, "--wait")
		if tg := sliceTargets(getSlices(t, lab, "svc")["slow"]); len(tg) != 1 || !strings.HasSuffix(tg[0], " 110") {
			t.Fatalf("slow before deletion: %v", tg)
		}
		start := time.Now()
		done := make(chan error, 1)
		go func() {
			_, stderr, err := podnet("delete", "--lab", lab, "-n", "svc", "pod", "slow", "--wait")
			if err != nil {
				err = fmt.Errorf("%v: %s", err, stderr)
			}
			done <- err
		}()
		// While the pod ignores SIGTERM it is terminating but still serving, as in kube.
		eventually(t, 3*time.Second, "a terminating, serving endpoint", func() (bool, string) {
			tg := sliceTargets(getSlices(t, lab, "svc")["slow"])
			return len(tg) == 1 && strings.HasSuffix(tg[0], " 011"), strings.Join(tg, ",")
		})
		if out := mustPodnet(t, "get", "pods", "--lab", lab, "-n", "svc"); !strings.Contains(out, "Terminating") {
			t.Errorf("get pods during the grace period:\n%s", out)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el < 2*time.Second {
			t.Errorf("pod ignoring SIGTERM gone after %s, before its 3s grace period", el)
		}
		if tg := sliceTargets(getSlices(t, lab, "svc")["slow"]); len(tg) != 0 {
			t.Errorf("slow after deletion: %v", tg)
		}
	})

	t.Run("daemon restart adopts", func(t *testing.T) {
		before, beforeSvcs := externalRoutes(t, lab), getServices(t, lab, "svc")
		dir := filepath.Join(os.Getenv("PODNET_STATE_ROOT"), lab)
		pid, err := os.ReadFile(filepath.Join(dir, "daemon.pid"))
		if err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("kill", "-9", strings.TrimSpace(string(pid))).CombinedOutput(); err != nil {
			t.Fatalf("kill daemon: %v %s", err, out)
		}
		// A lab saved before lbCIDR existed loads with the default.
		cfgPath := filepath.Join(dir, "config.json")
		raw, _ := os.ReadFile(cfgPath)
		var cfg map[string]any
		json.Unmarshal(raw, &cfg)
		delete(cfg, "lbCIDR")
		raw, _ = json.Marshal(cfg)
		os.WriteFile(cfgPath, raw, 0o644)
		eventually(t, 15*time.Second, "lab restart", func() (bool, string) {
			_, stderr, err := podnet("lab", "restart", "--name", lab)
			return err == nil, stderr
		})
		if after := externalRoutes(t, lab); !reflect.DeepEqual(after, before) {
			t.Errorf("routes after restart %v, before %v", after, before)
		}
		afterSvcs := getServices(t, lab, "svc")
		for name, s := range beforeSvcs {
			if !reflect.DeepEqual(s.Spec, afterSvcs[name].Spec) || !reflect.DeepEqual(s.Status, afterSvcs[name].Status) {
				t.Errorf("%s changed across the restart", name)
			}
		}
		if st := mustPodnet(t, "lab", "status", "--lab", lab); !strings.Contains(st, "load-balancer CIDR 172.31.255.0/24") {
			t.Errorf("status after restart:\n%s", st)
		}
		applyYAML(t, lab, "apiVersion: v1\nkind: Service\nmetadata: {name: lb4, namespace: svc}\nspec: {type: LoadBalancer, selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}\n", "--wait")
		in := getServices(t, lab, "svc")["lb4"].Status.LoadBalancer.Ingress
		if len(in) != 1 || externalRoutes(t, lab)[in[0].IP+"/32"] == nil {
			t.Errorf("lb4 after restart: %+v, routes %v", in, externalRoutes(t, lab))
		}
	})
}

// TestSvcBadLBCIDR: a load-balancer range that overlaps the lab's others is refused up front.
func TestSvcBadLBCIDR(t *testing.T) {
	needRoot(t)
	name := "svcb" + randHex(3)
	for _, tc := range []struct{ cidr, want string }{
		{"172.30.0.128/25", "--lb-cidr 172.30.0.128/25 overlaps --underlay-cidr 172.30.0.0/24"},
		{"10.96.7.0/24", "overlaps --service-cidr"},
		{"nope", "--lb-cidr"},
	} {
		_, stderr, err := podnet("lab", "up", "--name", name, "--lb-cidr", tc.cidr)
		if err == nil || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
			t.Errorf("lab up --lb-cidr %s: %v %q, want one line mentioning %q", tc.cidr, err, stderr, tc.want)
		}
		if left := netnsWithPrefix(name + "."); len(left) > 0 {
			t.Errorf("left namespaces: %v", left)
		}
		if _, err := os.Stat(filepath.Join(os.Getenv("PODNET_STATE_ROOT"), name)); err == nil {
			t.Errorf("left state behind")
		}
	}
}
