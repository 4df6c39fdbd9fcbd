// Command podnet is the Kubernetes network in one binary: the lab, the node agent and the CLI.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"

	"github.com/spf13/cobra"
)

func main() {
	root := newRoot()
	if err := root.Execute(); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// exitError carries a command's exit code (podnet exec) without printing anything more.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "podnet",
		Short:         "The Kubernetes network in one binary",
		Long:          "podnet gives every pod its own IP on one flat network, routes between nodes (host-gw or VXLAN),\nand runs a whole multi-node cluster network on this host with `podnet lab`.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newLabCmd(), newApplyCmd(), newDeleteCmd(), newGetCmd(), newExecCmd(), newLogsCmd(),
		newDemoCmd(), newWorkloadCmd(), newProbeCmd(), newProxyCmd(), newDNSCmd(), newLabelCmd(), newExplainCmd(), newFlowsCmd())
	return root
}

// labFlag adds --lab (default $PODNET_LAB or "podnet") to a command.
func labFlag(c *cobra.Command, p *string) {
	def := os.Getenv("PODNET_LAB")
	if def == "" {
		def = "podnet"
	}
	c.Flags().StringVar(p, "lab", def, "lab to talk to (default $PODNET_LAB or podnet)")
}

func selfExe() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	return exe, nil
}

// runExit runs a command and turns its exit status into ours.
func runExit(cmd *exec.Cmd) error {
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return &exitError{code: ee.ExitCode()}
	}
	return err
}
