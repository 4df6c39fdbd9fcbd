package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/podnet/podnet/internal/workload"
)

func newWorkloadCmd() *cobra.Command {
	var cfg workload.Config
	var ports string
	c := &cobra.Command{
		Use:    "workload",
		Short:  "The built-in workload server a lab pod runs when its container has no command",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cfg.Ports, err = workload.ParsePorts(ports); err != nil {
				return fmt.Errorf("--ports: %w", err)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return workload.Serve(ctx, cfg, func() {
				fmt.Fprintf(os.Stderr, "workload server for %s/%s on %s serving %s\n", cfg.Namespace, cfg.Pod, cfg.Node, ports)
			})
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.Pod, "pod", "", "pod name")
	f.StringVar(&cfg.Namespace, "namespace", "default", "pod namespace")
	f.StringVar(&cfg.Node, "node", "", "node name")
	f.StringVar(&cfg.PodIP, "pod-ip", "", "pod IP")
	f.StringVar(&ports, "ports", "", "ports to serve, e.g. tcp:80,udp:53")
	return c
}

func newProbeCmd() *cobra.Command {
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "probe tcp|udp HOST:PORT",
		Short: "Ask a workload server who it is and whom it saw (prints its JSON reply); used from inside pods",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			var r workload.Reply
			var err error
			switch strings.ToLower(args[0]) {
			case "tcp":
				r, err = workload.ProbeTCP(ctx, args[1])
			case "udp":
				r, err = workload.ProbeUDP(ctx, args[1])
			default:
				return fmt.Errorf("protocol %q: must be tcp or udp", args[0])
			}
			if err != nil {
				return err
			}
			return json.NewEncoder(os.Stdout).Encode(r)
		},
	}
	c.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "give up after")
	return c
}
