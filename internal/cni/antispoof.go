package cni

import (
	"bytes"
	"fmt"
	"net"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
)

// AntiSpoofTable is the nftables table (family bridge) in the node namespace
// that drops frames a pod sends with a source IP other than its own.
const AntiSpoofTable = "podnet-antispoof"

// Names inside AntiSpoofTable.
const (
	AntiSpoofChain = "prerouting"
	AntiSpoofSet   = "pod_sources"
)

const (
	ifNameSize = 16 // IFNAMSIZ: an ifname set key is NUL-padded to this

	ruleCommentIP  = "podnet: drop IPv4 from a pod port with a source that is not the pod's"
	ruleCommentARP = "podnet: drop ARP from a pod port with a sender IP that is not the pod's"
)

// antiSpoof programs AntiSpoofTable through one netlink connection in the
// current (node) network namespace.
type antiSpoof struct {
	conn  *nftables.Conn
	table *nftables.Table
	chain *nftables.Chain
	set   *nftables.Set
}

func newAntiSpoof() (*antiSpoof, error) {
	conn, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	table := &nftables.Table{Name: AntiSpoofTable, Family: nftables.TableFamilyBridge}
	policy := nftables.ChainPolicyAccept
	return &antiSpoof{
		conn:  conn,
		table: table,
		chain: &nftables.Chain{
			Name:     AntiSpoofChain,
			Table:    table,
			Type:     nftables.ChainTypeFilter,
			Hooknum:  nftables.ChainHookPrerouting,
			Priority: nftables.ChainPriorityRef(-200),
			Policy:   &policy,
		},
		set: &nftables.Set{
			Table:         table,
			Name:          AntiSpoofSet,
			KeyType:       nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIPAddr),
			Concatenation: true,
		},
	}, nil
}

func (a *antiSpoof) close() { _ = a.conn.CloseLasting() }

// ready reports whether both drop rules exist, in which case the table,
// chain and set exist too (the rules reference them). It only reads.
func (a *antiSpoof) ready() bool {
	rules, err := a.conn.GetRules(a.table, a.chain)
	if err != nil {
		return false
	}
	have := ruleComments(rules)
	return have[ruleCommentIP] && have[ruleCommentARP]
}

func ruleComments(rules []*nftables.Rule) map[string]bool {
	have := map[string]bool{}
	for _, r := range rules {
		if c, ok := userdata.GetString(r.UserData, userdata.TypeComment); ok {
			have[c] = true
		}
	}
	return have
}

// queueEnsure adds to the pending batch whatever of the table, chain, set and
// the two drop rules is missing. It never flushes or duplicates anything; the
// caller holds the IPAM lock so concurrent plugins do not both add a rule.
func (a *antiSpoof) queueEnsure() error {
	rules, err := a.conn.GetRules(a.table, a.chain)
	if err != nil {
		// GetRules fails when the table or chain does not exist yet; any
		// other failure must not make us add rules a second time.
		exists, lerr := a.tableExists()
		if lerr != nil {
			return fmt.Errorf("nftables: list tables: %w", lerr)
		}
		if exists {
			if _, cerr := a.conn.ListChain(a.table, a.chain.Name); cerr == nil {
				return fmt.Errorf("nftables: list rules of %s: %w", AntiSpoofTable, err)
			}
		}
		rules = nil
	}
	have := ruleComments(rules)
	if have[ruleCommentIP] && have[ruleCommentARP] {
		return nil
	}
	a.conn.AddTable(a.table)
	a.conn.AddChain(a.chain)
	if err := a.conn.AddSet(a.set, nil); err != nil {
		return fmt.Errorf("nftables: set %s: %w", AntiSpoofSet, err)
	}
	if !have[ruleCommentIP] {
		// meta protocol ip iifname . ip saddr != @pod_sources counter drop
		a.conn.AddRule(a.rule(0x0800, 12, ruleCommentIP))
	}
	if !have[ruleCommentARP] {
		// meta protocol arp iifname . arp saddr ip != @pod_sources counter drop
		a.conn.AddRule(a.rule(0x0806, 14, ruleCommentARP))
	}
	return nil
}

// rule matches frames of the given ethertype whose (input port, IPv4 address
// at network-header offset addrOffset) is not in the set, and drops them.
func (a *antiSpoof) rule(ethertype uint16, addrOffset uint32, comment string) *nftables.Rule {
	return &nftables.Rule{
		Table: a.table,
		Chain: a.chain,
		Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(ethertype >> 8), byte(ethertype)}},
			// The concatenated key: 16 bytes of ifname in 32-bit registers
			// 8..11, the 4-byte address in register 12.
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 8},
			&expr.Payload{DestRegister: 12, Base: expr.PayloadBaseNetworkHeader, Offset: addrOffset, Len: 4},
			&expr.Lookup{SourceRegister: 8, SetName: a.set.Name, SetID: a.set.ID, Invert: true},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictDrop},
		},
		UserData: userdata.AppendString(nil, userdata.TypeComment, comment),
	}
}

func (a *antiSpoof) tableExists() (bool, error) {
	tables, err := a.conn.ListTablesOfFamily(nftables.TableFamilyBridge)
	if err != nil {
		return false, err
	}
	for _, t := range tables {
		if t.Name == AntiSpoofTable {
			return true, nil
		}
	}
	return false, nil
}

// allow lets hostVeth send from ip. With ensure it first creates whatever
// of the table is missing; the caller then holds the IPAM lock.
func (a *antiSpoof) allow(hostVeth string, ip net.IP, ensure bool) error {
	if ensure {
		if err := a.queueEnsure(); err != nil {
			return err
		}
	}
	if err := a.conn.SetAddElements(a.set, []nftables.SetElement{{Key: elementKey(hostVeth, ip)}}); err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if err := a.conn.Flush(); err != nil {
		return fmt.Errorf("nftables: allow %s . %s in %s: %w", hostVeth, ip, AntiSpoofTable, err)
	}
	return nil
}

// sourceElement is one (port, source IP) pair of the set.
type sourceElement struct {
	IfName string
	IP     net.IP
}

// elements lists the set; a missing table lists as empty.
func (a *antiSpoof) elements() ([]sourceElement, error) {
	raw, err := a.conn.GetSetElements(a.set)
	if err != nil {
		exists, lerr := a.tableExists()
		if lerr == nil && !exists {
			return nil, nil
		}
		return nil, fmt.Errorf("nftables: list %s: %w", AntiSpoofSet, err)
	}
	out := make([]sourceElement, 0, len(raw))
	for _, e := range raw {
		if len(e.Key) < ifNameSize+4 {
			continue
		}
		name := string(bytes.TrimRight(e.Key[:ifNameSize], "\x00"))
		out = append(out, sourceElement{IfName: name, IP: net.IP(append([]byte(nil), e.Key[ifNameSize:ifNameSize+4]...))})
	}
	return out, nil
}

// removeWhere deletes every element for which drop returns true.
func (a *antiSpoof) removeWhere(drop func(sourceElement) bool) error {
	elems, err := a.elements()
	if err != nil {
		return err
	}
	var del []nftables.SetElement
	for _, e := range elems {
		if drop(e) {
			del = append(del, nftables.SetElement{Key: elementKey(e.IfName, e.IP)})
		}
	}
	if len(del) == 0 {
		return nil
	}
	if err := a.conn.SetDeleteElements(a.set, del); err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if err := a.conn.Flush(); err != nil {
		return fmt.Errorf("nftables: delete from %s: %w", AntiSpoofSet, err)
	}
	return nil
}

// has reports whether hostVeth may send from ip.
func (a *antiSpoof) has(hostVeth string, ip net.IP) (bool, error) {
	elems, err := a.elements()
	if err != nil {
		return false, err
	}
	for _, e := range elems {
		if e.IfName == hostVeth && e.IP.Equal(ip) {
			return true, nil
		}
	}
	return false, nil
}

// elementKey is the set key ifname . ipv4_addr: the name NUL-padded to
// IFNAMSIZ, then the address.
func elementKey(ifName string, ip net.IP) []byte {
	key := make([]byte, ifNameSize+4)
	copy(key, ifName)
	copy(key[ifNameSize:], ip.To4())
	return key
}
