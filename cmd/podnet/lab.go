package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/podnet/podnet/internal/lab"
)

func newLabCmd() *cobra.Command {
	c := &cobra.Command{Use: "lab", Short: "A whole multi-node cluster network on this host, built from network namespaces"}
	c.AddCommand(newLabUpCmd(), newLabRestartCmd(), newLabDownCmd(), newLabStatusCmd(), newLabDaemonCmd(), newLabRestartAgentsCmd(),
		newLabExecExternalCmd())
	return c
}

// cniBinDirs are where the lab looks for podnet-cni and the reference plugins it chains.
func cniBinDirs(exe string) []string {
	dirs := []string{filepath.Dir(exe)}
	if p := os.Getenv("CNI_PATH"); p != "" {
		dirs = append(dirs, filepath.SplitList(p)...)
	}
	return append(dirs, "/usr/lib/cni", "/opt/cni/bin")
}

func checkCNIPlugin(exe string) error {
	for _, d := range cniBinDirs(exe) {
		if _, err := os.Stat(filepath.Join(d, "podnet-cni")); err == nil {
			return nil
		}
	}
	return fmt.Errorf("podnet-cni not found next to %s nor in $CNI_PATH, /usr/lib/cni, /opt/cni/bin; build it with `make build`", exe)
}

func newLabUpCmd() *cobra.Command {
	cfg := lab.DefaultConfig()
	var foreground bool
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "up",
		Short: "Create a lab: N nodes on an underlay switch, each with a node agent; returns when every node is Ready",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
			if foreground {
				ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
				defer stop()
				return lab.RunForeground(ctx, cfg, lab.DaemonOptions{SelfExe: exe, CNIBinDirs: cniBinDirs(exe),
					Log: slog.New(slog.NewTextHandler(os.Stderr, nil))}, func() {
					fmt.Fprintf(os.Stderr, "lab %s is up (%d nodes, %s); Ctrl-C removes it\n", cfg.Name, cfg.Nodes, cfg.Backend)
				})
			}
			st, err := lab.Up(cmd.Context(), cfg, lab.UpOptions{SelfExe: exe, Timeout: timeout})
			if err != nil {
				return err
			}
			fmt.Printf("lab %s is up: %d nodes, backend %s, pod CIDR %s, service CIDR %s, load-balancer CIDR %s\n",
				cfg.Name, cfg.Nodes, cfg.Backend, cfg.PodCIDR, cfg.ServiceCIDR, cfg.LBCIDR)
			printNodes(st)
			printExternal(st)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.Name, "name", cfg.Name, "lab name (also the prefix of every namespace it creates)")
	f.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "number of nodes")
	f.StringVar(&cfg.Backend, "backend", cfg.Backend, "cross-node routing: vxlan or host-gw")
	f.StringVar(&cfg.PodCIDR, "pod-cidr", cfg.PodCIDR, "cluster CIDR, split into per-node podCIDRs")
	f.IntVar(&cfg.NodeCIDRSize, "node-cidr-size", cfg.NodeCIDRSize, "prefix length of each node's podCIDR")
	f.StringVar(&cfg.ServiceCIDR, "service-cidr", cfg.ServiceCIDR, "Service ClusterIP range")
	f.StringVar(&cfg.UnderlayCIDR, "underlay-cidr", cfg.UnderlayCIDR, "the nodes' own network (node i is host .10+i)")
	f.StringVar(&cfg.Domain, "cluster-domain", cfg.Domain, "cluster DNS domain")
	f.StringVar(&cfg.LBCIDR, "lb-cidr", cfg.LBCIDR, "LoadBalancer Service addresses, routed to the nodes by the external namespace")
	f.BoolVar(&foreground, "foreground", false, "run the lab daemon in this process; Ctrl-C removes the lab")
	f.DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for the nodes to be Ready")
	return c
}

func printNodes(st *lab.Status) {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
	fmt.Fprintln(w, "NODE\tSTATUS\tINTERNAL-IP\tPOD-CIDR\tNETNS\tPODS")
	for _, n := range st.Nodes {
		s := "NotReady"
		if n.Ready {
			s = "Ready"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\n", n.Name, s, n.InternalIP, n.PodCIDR, n.Netns, n.Pods)
	}
	w.Flush()
}

func printExternal(st *lab.Status) {
	if st.External.Netns != "" {
		fmt.Printf("external client %s at %s routes LoadBalancer IPs and externalIPs to the nodes (podnet lab exec-external -- CMD)\n",
			st.External.Netns, st.External.Address)
	}
}

func newLabDownCmd() *cobra.Command {
	name := os.Getenv("PODNET_LAB")
	if name == "" {
		name = lab.DefaultName
	}
	c := &cobra.Command{
		Use:   "down",
		Short: "Remove a lab and everything it created (namespaces, links, processes, state)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := lab.Down(cmd.Context(), name); err != nil {
				return err
			}
			fmt.Printf("lab %s removed\n", name)
			return nil
		},
	}
	c.Flags().StringVar(&name, "name", name, "lab name")
	return c
}

func newLabStatusCmd() *cobra.Command {
	var name string
	c := &cobra.Command{
		Use:   "status",
		Short: "Show a lab's configuration, nodes and agents",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := lab.NewClient(name)
			if err != nil {
				return err
			}
			var st lab.Status
			if err := cl.Do(cmd.Context(), "GET", "/v1/status", nil, nil, &st); err != nil {
				return err
			}
			c := st.Config
			fmt.Printf("lab %s (daemon pid %d): %d nodes, backend %s, pod CIDR %s (/%d per node), service CIDR %s, underlay %s, load-balancer CIDR %s, %d pods\n",
				c.Name, st.PID, c.Nodes, c.Backend, c.PodCIDR, c.NodeCIDRSize, c.ServiceCIDR, c.UnderlayCIDR, c.LBCIDR, st.Pods)
			printNodes(&st)
			printExternal(&st)
			return nil
		},
	}
	labFlag(c, &name)
	c.Flags().StringVar(&name, "name", name, "lab name (same as --lab)")
	return c
}

func newLabDaemonCmd() *cobra.Command {
	var name string
	c := &cobra.Command{
		Use:    "daemon",
		Short:  "Run a prepared lab's daemon (started by `lab up`)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := lab.LoadConfig(name)
			if err != nil {
				return err
			}
			exe, err := selfExe()
			if err != nil {
				return err
			}
			d, err := lab.NewDaemon(cfg, lab.DaemonOptions{SelfExe: exe, CNIBinDirs: cniBinDirs(exe),
				Log: slog.New(slog.NewTextHandler(os.Stderr, nil))})
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return d.Run(ctx)
		},
	}
	c.Flags().StringVar(&name, "name", lab.DefaultName, "lab name")
	return c
}

func newLabRestartAgentsCmd() *cobra.Command {
	var name string
	c := &cobra.Command{
		Use:   "restart-agents [NODE...]",
		Short: "Stop and start node agents (all by default), as a crash and restart would; existing connections keep working",
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := lab.NewClient(name)
			if err != nil {
				return err
			}
			q := map[string][]string{}
			if len(args) > 0 {
				q["nodes"] = []string{strings.Join(args, ",")}
			}
			var stats []map[string]any
			if err := cl.Do(cmd.Context(), "POST", "/v1/restart-agents", q, nil, &stats); err != nil {
				return err
			}
			for _, s := range stats {
				fmt.Printf("%v: restarted, %v kernel writes since start\n", s["node"], s["kernelWrites"])
			}
			return nil
		},
	}
	labFlag(c, &name)
	return c
}

func newLabRestartCmd() *cobra.Command {
	name := os.Getenv("PODNET_LAB")
	if name == "" {
		name = lab.DefaultName
	}
	c := &cobra.Command{
		Use:   "restart",
		Short: "Start a new daemon for a lab whose daemon died; it finds its cluster and adopts what runs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exe, err := selfExe()
			if err != nil {
				return err
			}
			st, err := lab.Restart(cmd.Context(), name, lab.UpOptions{SelfExe: exe})
			if err != nil {
				return err
			}
			fmt.Printf("lab %s restarted (%d pods)\n", name, st.Pods)
			printNodes(st)
			return nil
		},
	}
	c.Flags().StringVar(&name, "name", name, "lab name")
	return c
}

func newLabExecExternalCmd() *cobra.Command {
	var name string
	c := &cobra.Command{
		Use:   "exec-external [--lab LAB] -- CMD [ARGS...]",
		Short: "Run a command in the lab's external client namespace, a host on the nodes' LAN outside the cluster",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 0 {
				return fmt.Errorf("usage: podnet lab exec-external [--lab LAB] -- CMD [ARGS...]")
			}
			if _, err := lab.LoadConfig(name); err != nil {
				return err
			}
			netns := lab.ExternalNetns(name)
			if _, err := os.Stat(lab.NetnsPath(netns)); err != nil {
				return fmt.Errorf("lab %q has no external namespace %s (a lab made by an older podnet gets it when its daemon starts again)", name, netns)
			}
			x := exec.Command("ip", append([]string{"netns", "exec", netns}, args...)...)
			x.Stdin, x.Stdout, x.Stderr = os.Stdin, os.Stdout, os.Stderr
			return runExit(x)
		},
	}
	labFlag(c, &name)
	return c
}
