package main

import (
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/podnet/podnet/internal/lab"
)

func newLabelCmd() *cobra.Command {
	var labName, ns string
	var overwrite, wait bool
	c := &cobra.Command{
		Use:   "label pod|namespace NAME KEY=VALUE... KEY-...",
		Short: "Set or remove labels of a pod or namespace, as kubectl label does",
		Long: "label changes what selectors match: a relabelled pod joins or leaves Services (their EndpointSlices,\n" +
			"the proxy and DNS follow) and the NetworkPolicies that select it. --wait returns once every node\n" +
			"has programmed the change.",
		Example: "  podnet label pod -n demo client role=frontend\n" +
			"  podnet label namespace demo team=blue --overwrite\n" +
			"  podnet label pod -n demo client role- --wait",
		Args: cobra.MinimumNArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, err := lab.ResolveKind(args[0])
			if err != nil {
				return err
			}
			if kind != "Pod" && kind != "Namespace" {
				return fmt.Errorf("%q: podnet label works on pods and namespaces", args[0])
			}
			set, remove, err := lab.ParseLabelArgs(args[2:])
			if err != nil {
				return err
			}
			req := lab.LabelRequest{Kind: kind, Name: args[1], Set: set, Remove: remove, Overwrite: overwrite}
			if kind == "Pod" {
				req.Namespace = ns
			}
			body, _ := json.Marshal(req)
			cl, err := lab.NewClient(labName)
			if err != nil {
				return err
			}
			q := url.Values{}
			if wait {
				q.Set("wait", "1")
			}
			var out map[string]string
			if err := cl.Do(cmd.Context(), "POST", "/v1/label", q, body, &out); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), out["message"])
			return nil
		},
	}
	labFlag(c, &labName)
	c.Flags().StringVarP(&ns, "namespace", "n", "default", "namespace of the pod")
	c.Flags().BoolVar(&overwrite, "overwrite", false, "replace a label that already has a different value")
	c.Flags().BoolVar(&wait, "wait", false, "return once every node has programmed the change")
	return c
}
