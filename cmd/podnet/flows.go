package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/podnet/podnet/internal/flows"
	"github.com/podnet/podnet/internal/lab"
)

func newFlowsCmd() *cobra.Command {
	var labName, output string
	var q lab.FlowQuery
	var denied bool
	c := &cobra.Command{
		Use:   "flows [--denied] [--node NODE] [--pod NS/POD] [-f]",
		Short: "Show the verdict log: connections NetworkPolicy denied, with the policies that decided",
		Long: "flows prints what the nodes' policy tables logged: every new connection a NetworkPolicy dropped\n" +
			"(at most 200 a second per node and direction), with source and destination pod and address, protocol,\n" +
			"port, the direction that dropped it (egress at the source's node, ingress at the destination's) and\n" +
			"the policies isolating the pod in that direction. Direction \"pending\" is a pod whose policies were\n" +
			"not programmed yet (podnet fails closed). The same drops are counted per policy in\n" +
			"podnet_policy_denied_packets_total on each node's metrics port (10249).",
		Example: "  podnet flows --denied\n" +
			"  podnet flows --denied --pod demo/web-1 -f\n" +
			"  podnet flows --node node-2 --since 5m -o json",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("-o %q: want text or json", output)
			}
			if denied {
				q.Verdict = flows.Denied
			}
			cl, err := lab.NewClient(labName)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			show := func(r flows.Record) {
				if output == "json" {
					b, _ := json.Marshal(r)
					fmt.Fprintln(out, string(b))
					return
				}
				fmt.Fprintln(out, r.String())
			}
			if q.Follow {
				return cl.Stream(cmd.Context(), "/v1/flows", q.Values(), func(line []byte) error {
					var r flows.Record
					if err := json.Unmarshal(line, &r); err != nil {
						return fmt.Errorf("bad record from the lab: %w", err)
					}
					show(r)
					return nil
				})
			}
			var recs []flows.Record
			if err := cl.Do(cmd.Context(), "GET", "/v1/flows", q.Values(), nil, &recs); err != nil {
				return err
			}
			for _, r := range recs {
				show(r)
			}
			return nil
		},
	}
	labFlag(c, &labName)
	fl := c.Flags()
	fl.BoolVar(&denied, "denied", false, "only denied connections (today the log holds nothing else)")
	fl.StringVar(&q.Node, "node", "", "only what this node logged")
	fl.StringVar(&q.Pod, "pod", "", "only connections from or to this pod (NAMESPACE/NAME)")
	fl.DurationVar(&q.Since, "since", 0, "only records newer than this (e.g. 5m)")
	fl.IntVar(&q.Limit, "limit", 0, "only the newest N records")
	fl.BoolVarP(&q.Follow, "follow", "f", false, "keep printing new records as they come")
	fl.StringVarP(&output, "output", "o", "text", "text, or json (one record per line)")
	return c
}
