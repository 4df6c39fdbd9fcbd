package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podnet/podnet/internal/check"
	"github.com/podnet/podnet/internal/lab"
)

func newExplainCmd() *cobra.Command {
	var labName, kubeconfig, from, to, proto, output string
	c := &cobra.Command{
		Use:   "explain --from NS/POD|IP --to NS/POD|IP[:PORT]",
		Short: "Say whether NetworkPolicies allow a connection, and which policy and rule decided",
		Long: "explain judges a new connection the way every node's policy table does, from the same compiled\n" +
			"model: egress at the source pod, ingress at the destination pod, after Service DNAT. It prints\n" +
			"ALLOW or DENY for each direction with the policies that isolate the pod and the rule (by its index\n" +
			"in spec.ingress / spec.egress) that allowed the connection, or, for a denial, what each rule of\n" +
			"each isolating policy did not match.\n\n" +
			"--to may be a Service's cluster IP with its port: every ready endpoint behind it is judged. Without\n" +
			"a port, a destination pod is judged on each port it declares.",
		Example: "  podnet explain --from demo/client --to demo/web-1:8080\n" +
			"  podnet explain --from demo/client --to 10.96.0.20:80 --protocol TCP\n" +
			"  podnet explain --from 192.0.2.1 --to demo/web-1 -o json\n" +
			"  podnet explain --kubeconfig ~/.kube/config --from default/a --to default/b:443",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || to == "" {
				return fmt.Errorf("--from and --to are required")
			}
			if output != "text" && output != "json" {
				return fmt.Errorf("-o %q: want text or json", output)
			}
			var cfg *rest.Config
			var err error
			if kubeconfig != "" {
				if cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig); err != nil {
					return fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
				}
			} else if cfg, err = lab.RestConfig(labName); err != nil {
				return fmt.Errorf("--lab %s: %w", labName, err)
			}
			client, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return err
			}
			snap, err := check.Load(cmd.Context(), client)
			if err != nil {
				return err
			}
			res, err := check.Explain(snap, from, to, corev1.Protocol(strings.ToUpper(proto)))
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			fmt.Fprint(cmd.OutOrStdout(), res.Format())
			return nil
		},
	}
	labFlag(c, &labName)
	fl := c.Flags()
	fl.StringVar(&kubeconfig, "kubeconfig", "", "explain for the cluster of this kubeconfig instead of a lab")
	fl.StringVar(&from, "from", "", "the client: NAMESPACE/POD or an IP address")
	fl.StringVar(&to, "to", "", "the server: NAMESPACE/POD[:PORT], IP[:PORT] or a Service's CLUSTER-IP:PORT")
	fl.StringVar(&proto, "protocol", "", "TCP, UDP or SCTP (default TCP; without a port: every declared protocol)")
	fl.StringVarP(&output, "output", "o", "text", "text or json")
	return c
}
