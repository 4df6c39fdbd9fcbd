// Command podnet-cni is podnet's CNI plugin (spec 1.1.0). A container runtime
// runs it in the node's network namespace; see internal/cni for what each
// command does.
package main

import (
	"runtime/debug"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/podnet/podnet/internal/cni"
)

func main() {
	// A plugin run lives for a few milliseconds: garbage collection would
	// only cost time.
	debug.SetGCPercent(-1)
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    cni.Add,
		Del:    cni.Del,
		Check:  cni.Check,
		GC:     cni.GC,
		Status: cni.Status,
	}, version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"),
		"podnet-cni: podnet's bridge+veth CNI plugin with crash-safe IPAM and anti-spoofing")
}
