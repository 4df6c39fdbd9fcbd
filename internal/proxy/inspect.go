package proxy

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// ParsePickName reads a pick chain's parameters back from its name (see Pick.Name).
func ParsePickName(name string) (Pick, bool) {
	parts := strings.Split(name, "-")
	if len(parts) < 3 || parts[0] != "pick" || !strings.HasPrefix(parts[1], "v") || !strings.HasPrefix(parts[2], "n") {
		return Pick{}, false
	}
	v, err1 := strconv.ParseUint(parts[1][1:], 10, 32)
	n, err2 := strconv.Atoi(parts[2][1:])
	if err1 != nil || err2 != nil || n < 1 {
		return Pick{}, false
	}
	p := Pick{View: uint32(v), N: n}
	for _, s := range parts[3:] {
		switch {
		case s == "np":
			p.NodePort = true
		case s == "masqoff":
			p.Masq = MasqOffCluster
		case s == "masq":
			p.Masq = MasqAlways
		case strings.HasPrefix(s, "aff"):
			a, err := strconv.Atoi(s[3:])
			if err != nil || a < 1 {
				return Pick{}, false
			}
			p.Affinity = a
		default:
			return Pick{}, false
		}
	}
	return p, p.Name() == name
}

// ReadRuleset reads the programmed table back as a Ruleset that can be printed and walked.
// The kernel keeps elements exactly; chains are rebuilt from their names and the options, and
// each rebuilt rule's fingerprint (text and a hash of its bytecode) is checked against the one
// stored with the kernel's rule. Differences are returned as problems: a table programmed by
// another podnet version, or edited by hand. Remembered affinity choices are included.
func (k *Kernel) ReadRuleset(opt Options) (*Ruleset, []string, error) {
	cur, err := k.read()
	if err != nil {
		return nil, nil, err
	}
	if cur == nil {
		return nil, nil, fmt.Errorf("no %s table in this namespace", TableName)
	}
	rs := EmptyRuleset(opt)
	var problems []string
	known := map[string]*Chain{}
	for _, c := range rs.Chains {
		known[c.Name] = c
	}
	var names []string
	for name := range cur.chains {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		want := known[name]
		if want == nil {
			if p, ok := ParsePickName(name); ok {
				want = PickChain(p, opt)
				rs.Chains = append(rs.Chains, want)
			} else {
				problems = append(problems, "unknown chain "+name)
				continue
			}
		}
		var fps []string
		for _, r := range want.Rules {
			fps = append(fps, Fingerprint(r))
		}
		if !equalStrings(fps, cur.chains[name].rules) {
			problems = append(problems, fmt.Sprintf("chain %s: the kernel's rules differ from what this podnet renders (%d vs %d rules)",
				name, len(cur.chains[name].rules), len(fps)))
		}
	}
	for name := range known {
		if _, ok := cur.chains[name]; !ok {
			problems = append(problems, "missing chain "+name)
		}
	}
	for _, s := range rs.Sets {
		ks := cur.sets[s.Name]
		if ks == nil {
			problems = append(problems, "missing set "+s.Name)
			continue
		}
		for key, e := range ks.elements {
			s.Elements[key] = e
		}
	}
	if aff, err := k.AffinityEntries(); err == nil {
		s := rs.Set(SetAffinity)
		for _, a := range aff {
			s.Elements[string(a.Key)] = Element{Key: a.Key, Data: a.Data}
		}
	}
	sort.Strings(problems)
	return rs, problems, nil
}
