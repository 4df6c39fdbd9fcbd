// Package cni is podnet's CNI plugin (spec 1.1.0): it attaches a pod to the
// node's bridge with a veth pair, takes the pod's IP from the node's podCIDR
// (crash-safe store in internal/ipam), and keeps an nftables anti-spoofing
// set so a pod can only send with its own source address.
//
// The plugin runs in the node's network namespace; cmd/podnet-cni is a thin
// skel wrapper over Add, Del, Check, GC and Status.
package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/podnet/podnet/internal/ipam"
)

// DefaultBridge is the bridge name used when the config names none.
const DefaultBridge = "podnet0"

// MTU bounds accepted in the config.
const (
	MinMTU = 576
	MaxMTU = 65535
)

// NetConf is podnet-cni's plugin configuration (one entry of a conflist).
type NetConf struct {
	types.PluginConf

	// Bridge is the node bridge pods attach to (default podnet0).
	Bridge string `json:"bridge,omitempty"`
	// PodCIDR is this node's pod subnet, e.g. 10.244.1.0/24.
	PodCIDR string `json:"podCIDR"`
	// DataDir holds the IPAM state for PodCIDR.
	DataDir string `json:"dataDir"`
	// MTU of the pod interface and its host-side peer.
	MTU int `json:"mtu"`
	// HairpinMode lets a pod reach itself through the bridge (default true).
	HairpinMode *bool `json:"hairpinMode,omitempty"`

	// Subnet is PodCIDR parsed.
	Subnet *net.IPNet `json:"-"`
}

// Hairpin reports the effective hairpin mode.
func (c *NetConf) Hairpin() bool { return c.HairpinMode == nil || *c.HairpinMode }

// rawConf mirrors the fields ParseConfig validates, with pointers so that a
// missing field can be told from a zero one.
type rawConf struct {
	Bridge  *string `json:"bridge"`
	PodCIDR *string `json:"podCIDR"`
	DataDir *string `json:"dataDir"`
	MTU     *int    `json:"mtu"`
	Hairpin *bool   `json:"hairpinMode"`
}

// ParseConfig decodes and validates the plugin configuration from stdin. Its
// errors are *types.Error (code 6 for undecodable JSON, 7 for an invalid
// field) whose message names the offending field.
func ParseConfig(data []byte) (*NetConf, error) {
	var raw rawConf
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, decodeError(err)
	}
	conf := &NetConf{}
	if err := json.Unmarshal(data, conf); err != nil {
		return nil, decodeError(err)
	}
	if conf.CNIVersion == "" {
		return nil, invalidConf("cniVersion: missing")
	}
	if conf.Name == "" {
		return nil, invalidConf("name: missing")
	}
	if raw.Bridge == nil {
		conf.Bridge = DefaultBridge
	} else if err := validIfName(*raw.Bridge); err != nil {
		return nil, invalidConf("bridge %q: %v", *raw.Bridge, err)
	}
	if raw.PodCIDR == nil || *raw.PodCIDR == "" {
		return nil, invalidConf("podCIDR: missing (this node's pod subnet, e.g. 10.244.1.0/24)")
	}
	ip, subnet, err := net.ParseCIDR(*raw.PodCIDR)
	if err != nil {
		return nil, invalidConf("podCIDR %q: not a CIDR", *raw.PodCIDR)
	}
	if ip.To4() == nil {
		return nil, invalidConf("podCIDR %q: not IPv4", *raw.PodCIDR)
	}
	if !ip.Equal(subnet.IP) {
		return nil, invalidConf("podCIDR %q: host bits set (did you mean %s?)", *raw.PodCIDR, subnet)
	}
	if ones, _ := subnet.Mask.Size(); ones > 30 {
		return nil, invalidConf("podCIDR %q: too small, need at least a /30", *raw.PodCIDR)
	}
	subnet.IP = subnet.IP.To4()
	conf.Subnet = subnet
	if raw.DataDir == nil || *raw.DataDir == "" {
		return nil, invalidConf("dataDir: missing (directory for this node's IPAM state)")
	}
	if !filepath.IsAbs(*raw.DataDir) {
		return nil, invalidConf("dataDir %q: not an absolute path", *raw.DataDir)
	}
	if raw.MTU == nil {
		return nil, invalidConf("mtu: missing (%d..%d)", MinMTU, MaxMTU)
	}
	if *raw.MTU < MinMTU || *raw.MTU > MaxMTU {
		return nil, invalidConf("mtu %d: out of range %d..%d", *raw.MTU, MinMTU, MaxMTU)
	}
	if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "prevResult: "+err.Error(), "")
	}
	return conf, nil
}

func invalidConf(format string, args ...any) error {
	return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf(format, args...), "")
}

// decodeError turns a JSON error into one that names the field.
func decodeError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "config"
		}
		return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("%s: must be a %s, not a JSON %s", field, jsonKind(te.Type.Kind().String()), te.Value), "")
	}
	return types.NewError(types.ErrDecodingFailure, "network config: "+err.Error(), "")
}

func jsonKind(goKind string) string {
	switch {
	case strings.HasPrefix(goKind, "int"), strings.HasPrefix(goKind, "uint"), strings.HasPrefix(goKind, "float"):
		return "number"
	case goKind == "bool":
		return "boolean"
	case goKind == "string":
		return "string"
	case goKind == "slice":
		return "list"
	default:
		return "object"
	}
}

// validIfName applies the kernel's rules for interface names.
func validIfName(name string) error {
	switch {
	case name == "":
		return errors.New("empty interface name")
	case len(name) > 15:
		return fmt.Errorf("longer than 15 characters")
	case name == "." || name == "..":
		return errors.New("not a valid interface name")
	case strings.ContainsAny(name, "/: \t\n\x00"):
		return errors.New("contains '/', ':' or whitespace")
	}
	return nil
}

// openStore parses the network configuration and opens its IPAM store, the first step of every
// command that touches an attachment.
func openStore(stdin []byte) (*NetConf, *ipam.Store, error) {
	conf, err := ParseConfig(stdin)
	if err != nil {
		return nil, nil, err
	}
	store, err := ipam.Open(conf.DataDir, conf.Subnet)
	if err != nil {
		return nil, nil, types.NewError(types.ErrIOFailure, err.Error(), "")
	}
	return conf, store, nil
}
