package main

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/spf13/cobra"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/podnet/podnet/internal/lab"
	"github.com/podnet/podnet/internal/proxy"
)

func newProxyCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "proxy",
		Short: "Show a node's Service table, or trace a packet through it",
		Long: "The Service proxy programs one nftables table per node (ip podnet-proxy). nft cannot print its\n" +
			"concatenated-key maps, so podnet reads the table back from the node's kernel itself.",
	}
	c.AddCommand(newProxyShowCmd(), newProxyTraceCmd())
	return c
}

// nodeTable reads a lab node's proxy table from its kernel.
func nodeTable(labName, node string) (*proxy.Ruleset, []string, netns.NsHandle, error) {
	cfg, err := lab.LoadConfig(labName)
	if err != nil {
		return nil, nil, 0, err
	}
	h, err := netns.GetFromPath(lab.NetnsPath(lab.NodeNetns(labName, node)))
	if err != nil {
		return nil, nil, 0, fmt.Errorf("--node %q: no such node in lab %s", node, labName)
	}
	k, err := proxy.NewKernel(int(h))
	if err != nil {
		h.Close()
		return nil, nil, 0, err
	}
	defer k.Close()
	pfx, err := netip.ParsePrefix(cfg.PodCIDR)
	if err != nil {
		h.Close()
		return nil, nil, 0, err
	}
	rs, problems, err := k.ReadRuleset(proxy.Options{ClusterCIDR: pfx})
	if err != nil {
		h.Close()
		return nil, nil, 0, err
	}
	return rs, problems, h, nil
}

func newProxyShowCmd() *cobra.Command {
	var labName, node string
	var bytecode bool
	c := &cobra.Command{
		Use:   "show --node NODE",
		Short: "Print the node's Service table as the kernel has it",
		Example: "  podnet proxy show --node node-1\n" +
			"  podnet proxy show --node node-2 --bytecode",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rs, problems, h, err := nodeTable(labName, node)
			if err != nil {
				return err
			}
			h.Close()
			fmt.Fprint(cmd.OutOrStdout(), rs.Text(bytecode))
			for _, p := range problems {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", p)
			}
			return nil
		},
	}
	labFlag(c, &labName)
	c.Flags().StringVar(&node, "node", "node-1", "lab node whose table to show")
	c.Flags().BoolVar(&bytecode, "bytecode", false, "show each rule's expressions as sent to the kernel")
	return c
}

func newProxyTraceCmd() *cobra.Command {
	var labName, node, from string
	var local bool
	c := &cobra.Command{
		Use:   "trace --node NODE --from SRC DST:PORT[/tcp|udp|sctp]",
		Short: "Walk a new connection's first packet through the node's Service table",
		Long: "trace evaluates the table read back from the node's kernel, rule by rule, for the first packet of a\n" +
			"connection from SRC to DST:PORT, and prints every possible outcome with its probability: which\n" +
			"endpoint it is DNATed to, whether it is masqueraded, or why it is rejected or dropped.",
		Example: "  podnet proxy trace --node node-1 --from 10.244.0.5 10.96.0.20:80\n" +
			"  podnet proxy trace --node node-2 --from 172.30.0.254 172.30.0.12:30080/tcp",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, err := netip.ParseAddr(from)
			if err != nil || !src.Is4() {
				return fmt.Errorf("--from %q: want an IPv4 address", from)
			}
			dst, port, proto, err := parseTraceDst(args[0])
			if err != nil {
				return err
			}
			rs, problems, h, err := nodeTable(labName, node)
			if err != nil {
				return err
			}
			defer h.Close()
			for _, p := range problems {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", p)
			}
			info, err := nodeAddrs(h)
			if err != nil {
				return err
			}
			outs, err := proxy.Walk(rs, info, proxy.Packet{Src: src, Dst: dst, Proto: proto, SrcPort: 40000, DstPort: port, Local: local})
			if err != nil {
				return err
			}
			for i, o := range outs {
				if i > 0 {
					fmt.Fprintln(cmd.OutOrStdout())
				}
				fmt.Fprint(cmd.OutOrStdout(), o.Explain())
			}
			return nil
		},
	}
	labFlag(c, &labName)
	c.Flags().StringVar(&node, "node", "node-1", "lab node whose table to walk")
	c.Flags().StringVar(&from, "from", "", "source address (a pod IP, a node IP, the external client's IP)")
	c.Flags().BoolVar(&local, "local", false, "the packet is sent by the node itself (output path)")
	return c
}

func parseTraceDst(s string) (netip.Addr, uint16, uint8, error) {
	proto := proxy.ProtoTCP
	if i := strings.LastIndex(s, "/"); i >= 0 {
		switch strings.ToLower(s[i+1:]) {
		case "tcp":
		case "udp":
			proto = proxy.ProtoUDP
		case "sctp":
			proto = proxy.ProtoSCTP
		default:
			return netip.Addr{}, 0, 0, fmt.Errorf("%q: protocol must be tcp, udp or sctp", s)
		}
		s = s[:i]
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || !ap.Addr().Is4() {
		return netip.Addr{}, 0, 0, fmt.Errorf("%q: want IPv4:PORT[/tcp|udp|sctp]", s)
	}
	if ap.Port() == 0 {
		return netip.Addr{}, 0, 0, fmt.Errorf("%q: port must be 1-65535", s)
	}
	return ap.Addr(), ap.Port(), proto, nil
}

// nodeAddrs lists the node's own addresses (what `fib daddr type local` matches).
func nodeAddrs(h netns.NsHandle) (proxy.NodeInfo, error) {
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return proxy.NodeInfo{}, err
	}
	defer nl.Close()
	addrs, err := nl.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return proxy.NodeInfo{}, err
	}
	var info proxy.NodeInfo
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok {
			info.LocalAddrs = append(info.LocalAddrs, ip)
		}
	}
	return info, nil
}
