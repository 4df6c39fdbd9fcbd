package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/podnet/podnet/internal/lab"
	"github.com/podnet/podnet/internal/manifest"
)

// encodeObjects turns decoded objects back into one List for the daemon.
func encodeObjects(objs []runtime.Object) ([]byte, error) {
	list := struct {
		APIVersion string           `json:"apiVersion"`
		Kind       string           `json:"kind"`
		Items      []runtime.Object `json:"items"`
	}{"v1", "List", objs}
	return json.Marshal(list)
}

// readManifests reads, defaults and validates the files a user names, all or nothing, so every
// error names the file, the document and the line.
func readManifests(files []string) ([]runtime.Object, error) {
	if len(files) == 0 {
		return nil, fmt.Errorf("-f: give a file, a directory or - for standard input")
	}
	objs, err := manifest.Load(os.Stdin, files)
	if err != nil {
		return nil, err
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("no objects found in %s", strings.Join(files, ", "))
	}
	return objs, nil
}

func newApplyCmd() *cobra.Command {
	var labName string
	var files []string
	var wait bool
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "apply -f FILE|DIR|-",
		Short: "Create or update objects from Kubernetes YAML (Namespace, Pod, Deployment, StatefulSet, Service, NetworkPolicy)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			objs, err := readManifests(files)
			if err != nil {
				return err
			}
			body, err := encodeObjects(objs)
			if err != nil {
				return err
			}
			cl, err := lab.NewClient(labName)
			if err != nil {
				return err
			}
			q := url.Values{"source": {strings.Join(files, ",")}}
			if wait {
				q.Set("wait", timeout.String())
			}
			var res lab.Result
			if err := cl.Do(cmd.Context(), "POST", "/v1/apply", q, body, &res); err != nil {
				return err
			}
			for _, l := range res.Lines {
				fmt.Println(l)
			}
			return nil
		},
	}
	labFlag(c, &labName)
	c.Flags().StringArrayVarP(&files, "filename", "f", nil, "file, directory or - (repeatable)")
	c.Flags().BoolVar(&wait, "wait", false, "return when applied pods are Running and their network is programmed on every node")
	c.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long --wait waits")
	return c
}

func newDeleteCmd() *cobra.Command {
	var labName, ns string
	var files []string
	var wait bool
	c := &cobra.Command{
		Use:   "delete (-f FILE | KIND NAME)",
		Short: "Delete objects named in files, or one object by kind and name",
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := lab.NewClient(labName)
			if err != nil {
				return err
			}
			q := url.Values{}
			if wait {
				q.Set("wait", "1")
			}
			var body []byte
			switch {
			case len(files) > 0 && len(args) == 0:
				objs, err := readManifests(files)
				if err != nil {
					return err
				}
				if body, err = encodeObjects(objs); err != nil {
					return err
				}
			case len(files) == 0 && len(args) == 2:
				if _, err := lab.ResolveKind(args[0]); err != nil {
					return err
				}
				q.Set("kind", args[0])
				q.Set("name", args[1])
				q.Set("namespace", ns)
			default:
				return fmt.Errorf("usage: podnet delete -f FILE, or podnet delete KIND NAME [-n NAMESPACE]")
			}
			var res lab.Result
			err = cl.Do(cmd.Context(), "POST", "/v1/delete", q, body, &res)
			for _, l := range res.Lines {
				fmt.Println(l)
			}
			return err
		},
	}
	labFlag(c, &labName)
	c.Flags().StringArrayVarP(&files, "filename", "f", nil, "file, directory or -")
	c.Flags().StringVarP(&ns, "namespace", "n", "default", "namespace")
	c.Flags().BoolVar(&wait, "wait", false, "return when deleted pods are gone and every node has programmed it")
	return c
}

func newGetCmd() *cobra.Command {
	var labName, ns, output string
	var all bool
	c := &cobra.Command{
		Use:   "get KIND [NAME]",
		Short: "List objects: nodes, pods, services, endpointslices, networkpolicies, namespaces, deployments, statefulsets",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, err := lab.ResolveKind(args[0])
			if err != nil {
				return err
			}
			if output != "" && output != "wide" && output != "yaml" && output != "json" {
				return fmt.Errorf("-o %q: must be wide, yaml or json", output)
			}
			cl, err := lab.NewClient(labName)
			if err != nil {
				return err
			}
			q := url.Values{"kind": {kind}, "namespace": {ns}}
			if all {
				q.Set("namespace", "")
			}
			if len(args) == 2 {
				q.Set("name", args[1])
			}
			var raw json.RawMessage
			if err := cl.Do(cmd.Context(), "GET", "/v1/get", q, nil, &raw); err != nil {
				return err
			}
			if len(args) == 2 && (output == "json" || output == "yaml") {
				// One named object prints as itself, not as a List of one, as kubectl does.
				var list struct {
					Items []json.RawMessage `json:"items"`
				}
				if err := json.Unmarshal(raw, &list); err == nil && len(list.Items) == 1 {
					raw = list.Items[0]
				}
			}
			switch output {
			case "json":
				var v any
				_ = json.Unmarshal(raw, &v)
				b, _ := json.MarshalIndent(v, "", "    ")
				fmt.Println(string(b))
				return nil
			case "yaml":
				b, err := yaml.JSONToYAML(raw)
				if err != nil {
					return err
				}
				fmt.Print(string(b))
				return nil
			}
			return printTable(os.Stdout, kind, raw, output == "wide", all)
		},
	}
	labFlag(c, &labName)
	c.Flags().StringVarP(&ns, "namespace", "n", "default", "namespace")
	c.Flags().BoolVarP(&all, "all-namespaces", "A", false, "all namespaces")
	c.Flags().StringVarP(&output, "output", "o", "", "wide, yaml or json")
	return c
}

// splitPodArg accepts POD or NS/POD.
func splitPodArg(arg, ns string) (string, string) {
	if a, b, ok := strings.Cut(arg, "/"); ok {
		return a, b
	}
	return ns, arg
}

func podInfo(cmd *cobra.Command, labName, ns, name string) (*lab.PodInfo, error) {
	cl, err := lab.NewClient(labName)
	if err != nil {
		return nil, err
	}
	var pi lab.PodInfo
	if err := cl.Do(cmd.Context(), "GET", "/v1/pod", url.Values{"namespace": {ns}, "name": {name}}, nil, &pi); err != nil {
		return nil, err
	}
	return &pi, nil
}

func newExecCmd() *cobra.Command {
	var labName, ns string
	c := &cobra.Command{
		Use:   "exec [-n NS] POD -- CMD [ARGS...]",
		Short: "Run a command in a pod's network namespace, with the pod's resolv.conf and hosts",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return fmt.Errorf("usage: podnet exec [-n NS] POD -- CMD [ARGS...]")
			}
			pns, pod := splitPodArg(args[0], ns)
			pi, err := podInfo(cmd, labName, pns, pod)
			if err != nil {
				return err
			}
			if pi.Phase != "Running" {
				return fmt.Errorf("pod %s/%s is %s, not Running", pns, pod, pi.Phase)
			}
			x := exec.Command("ip", append([]string{"netns", "exec", pi.Netns}, args[1:]...)...)
			x.Stdin, x.Stdout, x.Stderr = os.Stdin, os.Stdout, os.Stderr
			return runExit(x)
		},
	}
	labFlag(c, &labName)
	c.Flags().StringVarP(&ns, "namespace", "n", "default", "namespace")
	return c
}

func newLogsCmd() *cobra.Command {
	var labName, ns string
	c := &cobra.Command{
		Use:   "logs [-n NS] POD",
		Short: "Print a pod's output",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pns, pod := splitPodArg(args[0], ns)
			pi, err := podInfo(cmd, labName, pns, pod)
			if err != nil {
				return err
			}
			f, err := os.Open(pi.Log)
			if os.IsNotExist(err) {
				return nil
			}
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(os.Stdout, f)
			return err
		},
	}
	labFlag(c, &labName)
	c.Flags().StringVarP(&ns, "namespace", "n", "default", "namespace")
	return c
}
