package manifest

import (
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// This file finds fields in the YAML node tree of a document, to put line numbers on
// problems that are found in the decoded object.

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// mapValue returns the value of key in mapping node n, or nil.
func mapValue(n *yaml.Node, key string) *yaml.Node {
	if k := mapKey(n, key); k != nil {
		return k.value
	}
	return nil
}

type keyValue struct{ key, value *yaml.Node }

func mapKey(n *yaml.Node, key string) *keyValue {
	n = resolve(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return &keyValue{n.Content[i], resolve(n.Content[i+1])}
		}
	}
	return nil
}

// shiftLines adds delta to the line of every node under n.
func shiftLines(n *yaml.Node, delta int) {
	if n == nil || delta == 0 {
		return
	}
	n.Line += delta
	for _, c := range n.Content {
		shiftLines(c, delta)
	}
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		return "a scalar (" + strconv.Quote(n.Value) + ")"
	}
	return "something else"
}

// jsonKind names the JSON type a YAML node stands for, as encoding/json names them in
// type errors.
func jsonKind(n *yaml.Node) string {
	n = resolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "object"
	case yaml.SequenceNode:
		return "array"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!int", "!!float":
			return "number"
		case "!!bool":
			return "bool"
		case "!!null":
			return "null"
		}
		return "string"
	}
	return ""
}

// childPath appends key to a field path: "a.b", or "a[k.e/y]" for keys that are not
// plain identifiers (label keys, for example).
func childPath(path, key string) string {
	if key == "" || strings.ContainsAny(key, ".[]/ ") {
		return path + "[" + key + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

type dupField struct {
	path        string
	line, first int
}

// duplicates finds keys given twice in one mapping, anywhere under n.
func duplicates(n *yaml.Node, path string) []dupField {
	var out []dupField
	switch n.Kind {
	case yaml.MappingNode:
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.ShortTag() == "!!merge" {
				continue
			}
			p := childPath(path, k.Value)
			if first, ok := seen[k.Value]; ok {
				out = append(out, dupField{path: p, line: k.Line, first: first})
			} else {
				seen[k.Value] = k.Line
			}
			out = append(out, duplicates(v, p)...)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			out = append(out, duplicates(c, path+"["+strconv.Itoa(i)+"]")...)
		}
	}
	return out
}

type pathSeg struct {
	name    string
	bracket bool // [name]: an index into a list or a key into a map
}

// parsePath splits a field path such as `spec.containers[0].ports[1].name` or
// `metadata.labels[app.kubernetes.io/name]` into segments.
func parsePath(path string) []pathSeg {
	var segs []pathSeg
	for i := 0; i < len(path); {
		switch path[i] {
		case '.':
			i++
		case '[':
			j := strings.IndexByte(path[i:], ']')
			if j < 0 {
				segs = append(segs, pathSeg{name: path[i+1:], bracket: true})
				return segs
			}
			segs = append(segs, pathSeg{name: path[i+1 : i+j], bracket: true})
			i += j + 1
		default:
			j := strings.IndexAny(path[i:], ".[")
			if j < 0 {
				j = len(path) - i
			}
			segs = append(segs, pathSeg{name: path[i : i+j]})
			i += j
		}
	}
	return segs
}

// lineOf returns the line of the field at path under n, or of its closest enclosing
// field present; 0 when n is nil.
func lineOf(n *yaml.Node, path string) int {
	n = resolve(n)
	if n == nil {
		return 0
	}
	line := n.Line
	for _, seg := range parsePath(path) {
		n = resolve(n)
		switch n.Kind {
		case yaml.MappingNode:
			kv := mapKey(n, seg.name)
			if kv == nil {
				return line
			}
			line, n = kv.key.Line, kv.value
		case yaml.SequenceNode:
			i, err := strconv.Atoi(seg.name)
			if !seg.bracket || err != nil || i < 0 || i >= len(n.Content) {
				return line
			}
			n = resolve(n.Content[i])
			line = n.Line
		default:
			return line
		}
	}
	return line
}

// findTyped finds the node of a type error: names is the dotted field path of
// encoding/json (without list indices), got the JSON type of the offending value. It
// returns the first node along that path, through any list index, whose type is got,
// and its path with indices. If none has that type, it returns the first node along
// the path (or nil).
func findTyped(root *yaml.Node, names []string, got string) (*yaml.Node, string) {
	var (
		first     *yaml.Node
		firstPath string
	)
	var walk func(n *yaml.Node, i int, path string) (*yaml.Node, string)
	walk = func(n *yaml.Node, i int, path string) (*yaml.Node, string) {
		n = resolve(n)
		if n == nil {
			return nil, ""
		}
		if i == len(names) {
			if first == nil {
				first, firstPath = n, path
			}
			if jsonKind(n) == got {
				return n, path
			}
			// The value may be one level down: a list element or a map value.
			switch n.Kind {
			case yaml.SequenceNode:
				for j, c := range n.Content {
					if jsonKind(c) == got {
						return resolve(c), path + "[" + strconv.Itoa(j) + "]"
					}
				}
			case yaml.MappingNode:
				for j := 0; j+1 < len(n.Content); j += 2 {
					if jsonKind(n.Content[j+1]) == got {
						return resolve(n.Content[j+1]), path + "[" + n.Content[j].Value + "]"
					}
				}
			}
			return nil, ""
		}
		switch n.Kind {
		case yaml.MappingNode:
			if v := mapValue(n, names[i]); v != nil {
				return walk(v, i+1, childPath(path, names[i]))
			}
		case yaml.SequenceNode:
			for j, c := range n.Content {
				if r, p := walk(c, i, path+"["+strconv.Itoa(j)+"]"); r != nil {
					return r, p
				}
			}
		}
		return nil, ""
	}
	if n, p := walk(root, 0, ""); n != nil {
		return n, p
	}
	return first, firstPath
}
