package cni

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// NodeExec is an invoke.Exec for libcni that runs every plugin inside a
// node's network namespace, as a container runtime on that node would: the
// plugin is started under `nsenter --net=<netns> --`. NetNS is a name under
// /var/run/netns (as made by `ip netns add`) or an absolute path.
type NodeExec struct {
	NetNS string
}

// NetNSPath is the path of the node namespace.
func (e NodeExec) NetNSPath() string {
	if filepath.IsAbs(e.NetNS) {
		return e.NetNS
	}
	return filepath.Join("/var/run/netns", e.NetNS)
}

// ExecPlugin runs the plugin in the node namespace with stdinData on stdin
// and environ as its whole environment. A failing plugin's JSON error result
// is returned as *types.Error.
func (e NodeExec) ExecPlugin(ctx context.Context, pluginPath string, stdinData []byte, environ []string) ([]byte, error) {
	if e.NetNS == "" {
		return nil, fmt.Errorf("NodeExec: NetNS is empty")
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "nsenter", "--net="+e.NetNSPath(), "--", pluginPath)
	cmd.Env = environ
	cmd.Stdin = bytes.NewReader(stdinData)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, pluginError(err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

func pluginError(err error, stdout, stderr []byte) error {
	var perr types.Error
	if len(bytes.TrimSpace(stdout)) > 0 && json.Unmarshal(stdout, &perr) == nil && (perr.Code != 0 || perr.Msg != "") {
		return &perr
	}
	msg := strings.TrimSpace(string(stderr))
	if msg == "" {
		msg = strings.TrimSpace(string(stdout))
	}
	if msg == "" {
		return &types.Error{Code: types.ErrInternal, Msg: fmt.Sprintf("netplugin failed with no error message: %v", err)}
	}
	return &types.Error{Code: types.ErrInternal, Msg: fmt.Sprintf("netplugin failed: %q: %v", msg, err)}
}

// FindInPath returns the first regular file named plugin in paths, as
// invoke.FindInPath does. (NodeExec does not import pkg/invoke so that the
// plugin binary, which links this package, stays small and starts fast.)
func (e NodeExec) FindInPath(plugin string, paths []string) (string, error) {
	if plugin == "" {
		return "", fmt.Errorf("no plugin name provided")
	}
	if strings.ContainsRune(plugin, os.PathSeparator) {
		return "", fmt.Errorf("invalid plugin name: %s", plugin)
	}
	if len(paths) == 0 {
		return "", fmt.Errorf("no paths provided")
	}
	for _, dir := range paths {
		full := filepath.Join(dir, plugin)
		if fi, err := os.Stat(full); err == nil && fi.Mode().IsRegular() {
			return full, nil
		}
	}
	return "", fmt.Errorf("failed to find plugin %q in path %s", plugin, paths)
}

// Decode parses a plugin's VERSION output.
func (e NodeExec) Decode(jsonBytes []byte) (version.PluginInfo, error) {
	return (&version.PluginDecoder{}).Decode(jsonBytes)
}
