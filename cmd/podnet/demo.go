package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/podnet/podnet/examples"
	"github.com/podnet/podnet/internal/check"
	"github.com/podnet/podnet/internal/flows"
	"github.com/podnet/podnet/internal/lab"
	"github.com/podnet/podnet/internal/workload"
)

func newDemoCmd() *cobra.Command {
	cfg := lab.DefaultConfig()
	cfg.Name = "demo"
	var keep bool
	c := &cobra.Command{
		Use:   "demo",
		Short: "Bring up a lab, run a small app across two nodes, show which pod reached which, and clean up",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), cfg, keep)
		},
	}
	c.Flags().StringVar(&cfg.Name, "name", cfg.Name, "lab name")
	c.Flags().IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "number of nodes")
	c.Flags().StringVar(&cfg.Backend, "backend", cfg.Backend, "vxlan or host-gw")
	c.Flags().BoolVar(&keep, "keep", false, "keep the lab afterwards (remove it with `podnet lab down --name NAME`)")
	return c
}

type demoPod struct{ name, node, ip, netns string }

func runDemo(ctx context.Context, cfg lab.Config, keep bool) (err error) {
	exe, err := selfExe()
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := checkCNIPlugin(exe); err != nil {
		return err
	}
	fmt.Printf("==> podnet lab up --name %s --nodes %d --backend %s\n", cfg.Name, cfg.Nodes, cfg.Backend)
	st, err := lab.Up(ctx, cfg, lab.UpOptions{SelfExe: exe})
	if err != nil {
		return err
	}
	printNodes(st)
	if !keep {
		defer func() {
			fmt.Printf("\n==> podnet lab down --name %s\n", cfg.Name)
			if derr := lab.Down(context.Background(), cfg.Name); derr != nil && err == nil {
				err = derr
			}
		}()
	}
	cl, err := lab.NewClient(cfg.Name)
	if err != nil {
		return err
	}
	fmt.Printf("\n==> podnet apply --wait -f examples/demo.yaml\n")
	var res lab.Result
	if err := cl.Do(ctx, "POST", "/v1/apply", url.Values{"wait": {"2m"}, "source": {"examples/demo.yaml"}}, examples.Demo, &res); err != nil {
		return err
	}
	for _, l := range res.Lines {
		fmt.Println(l)
	}
	var list struct{ Items []corev1.Pod }
	if err := cl.Do(ctx, "GET", "/v1/get", url.Values{"kind": {"Pod"}, "namespace": {"demo"}}, nil, &list); err != nil {
		return err
	}
	var pods []demoPod
	fmt.Printf("\n==> podnet get pods -n demo -o wide\n")
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
	fmt.Fprintln(w, "NAME\tSTATUS\tIP\tNODE")
	for _, p := range list.Items {
		pods = append(pods, demoPod{p.Name, p.Spec.NodeName, p.Status.PodIP, lab.PodNetns(cfg.Name, p.Namespace, p.Name)})
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", p.Name, p.Status.Phase, p.Status.PodIP, p.Spec.NodeName)
	}
	w.Flush()

	fmt.Printf("\n==> every pod asks every other pod who it is (TCP :8080 HTTP, UDP :9000), from inside its own namespace\n")
	w = tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "FROM\tFROM-NODE\tTO\tTO-NODE\tPATH\tTCP\tUDP\tSOURCE IP SEEN\tNO NAT")
	failures := 0
	for _, from := range pods {
		for _, to := range pods {
			if from.name == to.name {
				continue
			}
			path := "same node"
			if from.node != to.node {
				path = "cross node (" + cfg.Backend + ")"
			}
			tcp, terr := probeFrom(ctx, exe, from.netns, "tcp", net.JoinHostPort(to.ip, "8080"))
			udp, uerr := probeFrom(ctx, exe, from.netns, "udp", net.JoinHostPort(to.ip, "9000"))
			ok := func(r workload.Reply, err error) string {
				if err != nil {
					failures++
					return "FAIL"
				}
				if r.Pod != to.name {
					failures++
					return "WRONG POD " + r.Pod
				}
				return "ok"
			}
			seen, nonat := "-", "-"
			if terr == nil {
				seen = tcp.ClientIP
				nonat = strconv.FormatBool(tcp.ClientIP == from.ip)
				if tcp.ClientIP != from.ip {
					failures++
				}
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", from.name, from.node, to.name, to.node, path,
				ok(tcp, terr), ok(udp, uerr), seen, nonat)
		}
	}
	w.Flush()
	if failures > 0 {
		return fmt.Errorf("%d probes failed", failures)
	}
	fmt.Printf("\nevery pod reached every other pod by its IP, on its node and across nodes, and each server saw the client's own pod IP.\n")
	if err := demoService(ctx, cl, exe, cfg, pods); err != nil {
		return err
	}
	if err := demoPolicy(ctx, cl, exe, cfg, pods); err != nil {
		return err
	}
	if keep {
		fmt.Printf("the lab is kept: try `podnet get pods -A -o wide --lab %s`, `podnet exec --lab %s -n demo client -- ip route`; remove it with `podnet lab down --name %s`\n", cfg.Name, cfg.Name, cfg.Name)
	}
	return nil
}

// demoService reaches the Service web through its ClusterIP from the client pod and through its
// LoadBalancer IP from the lab's external client, and shows which pods answered.
func demoService(ctx context.Context, cl *lab.Client, exe string, cfg lab.Config, pods []demoPod) error {
	var list struct{ Items []corev1.Service }
	if err := cl.Do(ctx, "GET", "/v1/get", url.Values{"kind": {"Service"}, "namespace": {"demo"}}, nil, &list); err != nil {
		return err
	}
	if len(list.Items) == 0 {
		return fmt.Errorf("the demo Service is missing")
	}
	svc := list.Items[0]
	lbIP := ""
	if len(svc.Status.LoadBalancer.Ingress) > 0 {
		lbIP = svc.Status.LoadBalancer.Ingress[0].IP
	}
	clientIP, clientNetns := "", ""
	for _, p := range pods {
		if p.name == "client" {
			clientIP, clientNetns = p.ip, p.netns
		}
	}
	// cluster DNS: the client's resolver finds the Service through the search path
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", clientNetns, "getent", "hosts", "web").Output()
	if err != nil || !strings.HasPrefix(string(out), svc.Spec.ClusterIP+" ") {
		return fmt.Errorf("client: getent hosts web: %q %v (want %s from cluster DNS)", out, err, svc.Spec.ClusterIP)
	}
	fmt.Printf("\n==> client: getent hosts web   (cluster DNS, through the search path)\n%s", out)
	fmt.Printf("\n==> Service demo/web: ClusterIP %s, LoadBalancer %s; 10 new connections each\n", svc.Spec.ClusterIP, lbIP)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "FROM\tTO\tANSWERED BY\tSOURCE IP SEEN")
	type row struct{ from, netns, proto, addr, want string }
	rows := []row{
		{"client", clientNetns, "tcp", net.JoinHostPort(svc.Spec.ClusterIP, "80"), clientIP},
		{"client", clientNetns, "udp", net.JoinHostPort(svc.Spec.ClusterIP, "53"), clientIP},
	}
	if lbIP != "" {
		ext := lab.ExternalAddress(mustParseCIDR(cfg.UnderlayCIDR)).IP.String()
		rows = append(rows, row{"external " + ext, lab.ExternalNetns(cfg.Name), "tcp", net.JoinHostPort(lbIP, "80"), ""})
	}
	failures := 0
	for _, r := range rows {
		count := map[string]int{}
		seen := map[string]bool{}
		for i := 0; i < 10; i++ {
			rep, err := probeFrom(ctx, exe, r.netns, r.proto, r.addr)
			if err != nil {
				failures++
				count["FAIL"]++
				continue
			}
			count[rep.Pod]++
			seen[rep.ClientIP] = true
		}
		var by, ips []string
		for p, n := range count {
			by = append(by, fmt.Sprintf("%s ×%d", p, n))
		}
		for ip := range seen {
			ips = append(ips, ip)
		}
		sort.Strings(by)
		sort.Strings(ips)
		fmt.Fprintf(w, "%s\t%s/%s\t%s\t%s\n", r.from, r.addr, r.proto, strings.Join(by, ", "), strings.Join(ips, ","))
	}
	w.Flush()
	if failures > 0 {
		return fmt.Errorf("%d Service probes failed", failures)
	}
	fmt.Printf("\neach new connection went to one of the Service's pods at random; external traffic is masqueraded (policy Cluster).\nsee a node's Service table with `podnet proxy show --node node-1 --lab %s`.\n", cfg.Name)
	return nil
}

func mustParseCIDR(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

// probeFrom runs `podnet probe` inside a pod's namespace and decodes the server's reply.
func probeFrom(ctx context.Context, exe, netns, proto, addr string) (workload.Reply, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", netns, exe, "probe", proto, addr).Output()
	var r workload.Reply
	if err != nil {
		return r, fmt.Errorf("probe %s %s from %s: %w", proto, addr, netns, err)
	}
	err = json.Unmarshal(out, &r)
	return r, err
}

// demoPolicy applies a NetworkPolicy that the client does not satisfy, shows its connection
// dropped, explained and logged, then labels the client and shows it allowed.
func demoPolicy(ctx context.Context, cl *lab.Client, exe string, cfg lab.Config, pods []demoPod) error {
	var client, web demoPod
	for _, p := range pods {
		if p.name == "client" {
			client = p
		} else if web.name == "" && p.node != "node-1" {
			web = p
		}
	}
	if web.name == "" {
		for _, p := range pods {
			if p.name != "client" {
				web = p
			}
		}
	}
	fmt.Printf("\n==> podnet apply --wait -f examples/demo-policy.yaml   (web takes HTTP only from role=frontend)\n")
	var res lab.Result
	if err := cl.Do(ctx, "POST", "/v1/apply", url.Values{"wait": {"1m"}, "source": {"examples/demo-policy.yaml"}}, examples.DemoPolicy, &res); err != nil {
		return err
	}
	for _, l := range res.Lines {
		fmt.Println(l)
	}
	target := net.JoinHostPort(web.ip, "8080")
	fmt.Printf("\n==> client -> %s %s: ", web.name, target)
	if r, err := probeFrom(ctx, exe, client.netns, "tcp", target); err == nil {
		return fmt.Errorf("the policy should drop the client's connection, but %s answered", r.Pod)
	}
	fmt.Printf("no answer (dropped)\n")

	rc, err := lab.RestConfig(cfg.Name)
	if err != nil {
		return err
	}
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	explain := func() (*check.Result, error) {
		snap, err := check.Load(ctx, kc)
		if err != nil {
			return nil, err
		}
		return check.Explain(snap, "demo/client", "demo/"+web.name+":8080", "")
	}
	ex, err := explain()
	if err != nil {
		return err
	}
	fmt.Printf("\n==> podnet explain --from demo/client --to demo/%s:8080\n%s", web.name, ex.Format())
	if ex.Allowed() {
		return fmt.Errorf("explain allows what the kernel dropped")
	}

	var recs []flows.Record
	deadline := time.Now().Add(3 * time.Second)
	for len(recs) == 0 && time.Now().Before(deadline) {
		if err := cl.Do(ctx, "GET", "/v1/flows", url.Values{"verdict": {flows.Denied}, "pod": {"demo/client"}}, nil, &recs); err != nil {
			return err
		}
		if len(recs) == 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if len(recs) == 0 {
		return fmt.Errorf("the verdict log has no record of the dropped connection")
	}
	fmt.Printf("\n==> podnet flows --denied --pod demo/client\n")
	for _, r := range recs {
		fmt.Println(r.String())
	}

	fmt.Printf("\n==> podnet label pod -n demo client role=frontend --wait\n")
	body, _ := json.Marshal(lab.LabelRequest{Kind: "Pod", Namespace: "demo", Name: "client", Set: map[string]string{"role": "frontend"}})
	var out map[string]string
	if err := cl.Do(ctx, "POST", "/v1/label", url.Values{"wait": {"1"}}, body, &out); err != nil {
		return err
	}
	fmt.Println(out["message"])
	r, err := probeFrom(ctx, exe, client.netns, "tcp", target)
	if err != nil {
		return fmt.Errorf("the client, now role=frontend, should reach %s: %w", web.name, err)
	}
	fmt.Printf("\n==> client -> %s %s: answered by %s\n", web.name, target, r.Pod)
	if ex, err = explain(); err != nil {
		return err
	}
	fmt.Printf("\n==> podnet explain --from demo/client --to demo/%s:8080\n%s", web.name, ex.Format())
	fmt.Printf("\nthe policy dropped the client until its label matched; explain named the policy and rule each time.\n")
	return nil
}
