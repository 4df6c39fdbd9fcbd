package proxy

import (
	"fmt"
	"sort"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
)

// Desired is the proxy's table built port by port, so that a change to one Service is rendered
// and applied on its own: each element and pick chain counts the ports that use it.
type Desired struct {
	opt   Options
	ports map[ServicePortName]PortRender
	sets  map[string]map[string]*counted
	picks map[Pick]int
	// touched since the last Take: element keys per set, and picks
	touchedKeys  map[string]map[string]bool
	touchedPicks map[Pick]bool
}

type counted struct {
	el Element
	n  int
}

// NewDesired starts an empty desired table.
func NewDesired(opt Options) *Desired {
	d := &Desired{opt: opt.normal(), ports: map[ServicePortName]PortRender{}, sets: map[string]map[string]*counted{},
		picks: map[Pick]int{}, touchedKeys: map[string]map[string]bool{}, touchedPicks: map[Pick]bool{}}
	for _, s := range EmptyRuleset(opt).Sets {
		d.sets[s.Name] = map[string]*counted{}
	}
	return d
}

func (d *Desired) touch(set, key string) {
	if d.touchedKeys[set] == nil {
		d.touchedKeys[set] = map[string]bool{}
	}
	d.touchedKeys[set][key] = true
}

// SetPort replaces (or, with pr nil, removes) what one port contributes.
func (d *Desired) SetPort(name ServicePortName, pr *PortRender) {
	if old, ok := d.ports[name]; ok {
		for _, e := range old.Elements {
			k := string(e.Element.Key)
			if c := d.sets[e.Set][k]; c != nil {
				if c.n--; c.n <= 0 {
					delete(d.sets[e.Set], k)
				}
				d.touch(e.Set, k)
			}
		}
		for _, p := range old.Picks {
			if d.picks[p]--; d.picks[p] <= 0 {
				delete(d.picks, p)
			}
			d.touchedPicks[p] = true
		}
		delete(d.ports, name)
	}
	if pr == nil {
		return
	}
	d.ports[name] = *pr
	for _, e := range pr.Elements {
		k := string(e.Element.Key)
		if c := d.sets[e.Set][k]; c != nil {
			c.n++
			c.el = e.Element // the newest writer wins a (misconfigured) shared entry
		} else {
			d.sets[e.Set][k] = &counted{el: e.Element, n: 1}
		}
		d.touch(e.Set, k)
	}
	for _, p := range pr.Picks {
		d.picks[p]++
		d.touchedPicks[p] = true
	}
}

// Ports lists the ports the table holds.
func (d *Desired) Ports() map[ServicePortName]PortRender { return d.ports }

// Ruleset materialises the whole table (for a full sync).
func (d *Desired) Ruleset() *Ruleset {
	rs := EmptyRuleset(d.opt)
	for _, s := range rs.Sets {
		for k, c := range d.sets[s.Name] {
			s.Elements[k] = c.el
		}
	}
	var picks []Pick
	for p := range d.picks {
		picks = append(picks, p)
	}
	sort.Slice(picks, func(i, j int) bool { return picks[i].Name() < picks[j].Name() })
	for _, p := range picks {
		rs.Chains = append(rs.Chains, PickChain(p, d.opt))
	}
	d.touchedKeys, d.touchedPicks = map[string]map[string]bool{}, map[Pick]bool{}
	return rs
}

// Delta is what changed since the last Ruleset or Delta call.
type Delta struct {
	Set    map[string]map[string]*Element // set → key → wanted element (nil: absent)
	Chains map[string]*Chain              // pick chain name → wanted chain (nil: absent)
}

// Delta returns the touched elements and chains with their wanted state, and resets the record.
func (d *Desired) Delta() Delta {
	out := Delta{Set: map[string]map[string]*Element{}, Chains: map[string]*Chain{}}
	for set, keys := range d.touchedKeys {
		m := map[string]*Element{}
		for k := range keys {
			if c := d.sets[set][k]; c != nil {
				el := c.el
				m[k] = &el
			} else {
				m[k] = nil
			}
		}
		out.Set[set] = m
	}
	for p := range d.touchedPicks {
		if d.picks[p] > 0 {
			out.Chains[p.Name()] = PickChain(p, d.opt)
		} else {
			out.Chains[p.Name()] = nil
		}
	}
	d.touchedKeys, d.touchedPicks = map[string]map[string]bool{}, map[Pick]bool{}
	return out
}

// ApplyDelta programs only the given elements and pick chains, comparing each with what is
// programmed, in one transaction. It needs a table programmed by Apply first.
func (k *Kernel) ApplyDelta(d Delta) (ApplyStats, error) {
	var st ApplyStats
	if k.cur == nil {
		return st, fmt.Errorf("ApplyDelta before Apply")
	}
	c := k.conn
	type op struct {
		set      string
		del, add []Element
	}
	var ops []op
	for set, keys := range d.Set {
		ss := k.cur.sets[set]
		if ss == nil {
			return st, fmt.Errorf("set %s is not programmed", set)
		}
		o := op{set: set}
		for key, want := range keys {
			have, ok := ss.elements[key]
			switch {
			case want == nil && ok:
				o.del = append(o.del, have)
			case want != nil && !ok:
				o.add = append(o.add, *want)
			case want != nil && ok && !have.same(*want):
				o.del = append(o.del, have)
				o.add = append(o.add, *want)
			}
		}
		if len(o.del)+len(o.add) > 0 {
			ops = append(ops, o)
		}
	}
	var addChains []*Chain
	var delChains []string
	for name, ch := range d.Chains {
		_, have := k.cur.chains[name]
		if ch != nil && !have {
			addChains = append(addChains, ch)
		} else if ch == nil && have {
			delChains = append(delChains, name)
		}
	}
	if len(ops) == 0 && len(addChains) == 0 && len(delChains) == 0 {
		return st, nil
	}
	sort.Slice(addChains, func(i, j int) bool { return addChains[i].Name < addChains[j].Name })
	sort.Strings(delChains)
	fps := map[string][]string{}
	for _, ch := range addChains {
		nc := c.AddChain(&nftables.Chain{Name: ch.Name, Table: k.table})
		for _, r := range ch.Rules {
			fp := Fingerprint(r)
			fps[ch.Name] = append(fps[ch.Name], fp)
			c.AddRule(&nftables.Rule{Table: k.table, Chain: nc, Exprs: r.Exprs, UserData: userdata.AppendString(nil, userdata.TypeComment, fp)})
		}
		st.ChainsAdded++
	}
	for _, o := range ops {
		def := setDefs[o.set]
		ns := nftSet(def, k.table, k.AffinitySize)
		if len(o.del) > 0 {
			var els []nftables.SetElement
			for _, e := range o.del {
				els = append(els, nftElement(def, e))
			}
			if err := k.queueElements(ns, els, true); err != nil {
				return st, err
			}
			st.ElementsRemoved += len(els)
		}
	}
	for _, o := range ops {
		def := setDefs[o.set]
		ns := nftSet(def, k.table, k.AffinitySize)
		if len(o.add) > 0 {
			var els []nftables.SetElement
			for _, e := range o.add {
				els = append(els, nftElement(def, e))
			}
			if err := k.queueElements(ns, els, false); err != nil {
				return st, err
			}
			st.ElementsAdded += len(els)
		}
	}
	for _, name := range delChains {
		nc := &nftables.Chain{Name: name, Table: k.table}
		c.FlushChain(nc)
		c.DelChain(nc)
		st.ChainsRemoved++
	}
	start := time.Now()
	if err := c.Flush(); err != nil {
		k.cur = nil
		return st, fmt.Errorf("nftables transaction (%s): %w", time.Since(start).Round(time.Millisecond), err)
	}
	// Record the new state. The maps may be shared with a Ruleset given to Apply; copy them
	// on first write so the caller's Ruleset is never changed behind its back.
	for _, o := range ops {
		ss := k.cur.sets[o.set]
		if !ss.owned {
			m := make(map[string]Element, len(ss.elements)+len(o.add))
			for key, e := range ss.elements {
				m[key] = e
			}
			ss.elements, ss.owned = m, true
		}
		for _, e := range o.del {
			delete(ss.elements, string(e.Key))
		}
		for _, e := range o.add {
			ss.elements[string(e.Key)] = e
		}
	}
	for _, ch := range addChains {
		k.cur.chains[ch.Name] = chainState{rules: fps[ch.Name]}
	}
	for _, name := range delChains {
		delete(k.cur.chains, name)
	}
	return st, nil
}
