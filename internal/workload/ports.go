package workload

import (
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Port is one port the workload server serves.
type Port struct {
	// Protocol is "TCP" (served as HTTP) or "UDP" (one reply datagram per request datagram).
	Protocol string
	// Port is the port number, 1..65535.
	Port int
	// Name is the optional containerPort name (an IANA service name).
	Name string
}

// String formats p as one item of a port list, e.g. "tcp:8080/http".
func (p Port) String() string {
	s := strings.ToLower(p.Protocol) + ":" + strconv.Itoa(p.Port)
	if p.Name != "" {
		s += "/" + p.Name
	}
	return s
}

// ParsePorts parses a comma-separated port list such as "tcp:80,udp:81,tcp:8080/http".
// Each item is PROTOCOL:PORT[/NAME]; the protocol is "tcp" or "udp" in any case and
// defaults to tcp when the item is just PORT[/NAME]. Spaces around items are ignored and
// an empty spec yields no ports. An error names the offending item.
func ParsePorts(spec string) ([]Port, error) {
	var ports []Port
	if strings.TrimSpace(spec) == "" {
		return ports, nil
	}
	seen := map[string]int{}
	for i, raw := range strings.Split(spec, ",") {
		item := strings.TrimSpace(raw)
		p, err := parsePort(item)
		if err != nil {
			return nil, fmt.Errorf("port item %d %q: %w", i+1, item, err)
		}
		key := p.Protocol + "/" + strconv.Itoa(p.Port)
		if j, dup := seen[key]; dup {
			return nil, fmt.Errorf("port item %d %q: %s port %d already given by item %d", i+1, item, p.Protocol, p.Port, j)
		}
		seen[key] = i + 1
		ports = append(ports, p)
	}
	return ports, nil
}

func parsePort(item string) (Port, error) {
	if item == "" {
		return Port{}, fmt.Errorf("empty item")
	}
	var p Port
	rest := item
	if proto, after, ok := strings.Cut(rest, ":"); ok {
		p.Protocol = strings.ToUpper(proto)
		rest = after
	} else {
		p.Protocol = "TCP"
	}
	if p.Protocol != "TCP" && p.Protocol != "UDP" {
		return Port{}, fmt.Errorf("protocol must be tcp or udp, not %q", strings.ToLower(p.Protocol))
	}
	num, name, hasName := strings.Cut(rest, "/")
	n, err := strconv.Atoi(num)
	if err != nil {
		return Port{}, fmt.Errorf("port %q is not a number", num)
	}
	if msgs := validation.IsValidPortNum(n); len(msgs) > 0 {
		return Port{}, fmt.Errorf("port %d %s", n, strings.Join(msgs, "; "))
	}
	p.Port = n
	if hasName {
		if msgs := validation.IsValidPortName(name); len(msgs) > 0 {
			return Port{}, fmt.Errorf("port name %q %s", name, strings.Join(msgs, "; "))
		}
		p.Name = name
	}
	return p, nil
}

// FormatPorts is the inverse of ParsePorts: it formats ports as "tcp:80,udp:81,tcp:8080/http".
func FormatPorts(ports []Port) string {
	items := make([]string, len(ports))
	for i, p := range ports {
		items[i] = p.String()
	}
	return strings.Join(items, ",")
}
