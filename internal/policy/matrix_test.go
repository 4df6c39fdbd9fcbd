package policy

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// parseRows turns rows of "." (allowed) and "X" (denied), ordered like
// allPodRefs (x/a x/b x/c y/a ... z/c), into a matrix.
func parseRows(rows ...string) [][]bool {
	out := make([][]bool, len(rows))
	for i, r := range rows {
		r = strings.ReplaceAll(r, " ", "")
		out[i] = make([]bool, len(r))
		for j, c := range r {
			out[i][j] = c == '.'
		}
	}
	return out
}

func TestMatrix(t *testing.T) {
	pods := allPodRefs()
	cases := []struct {
		name     string
		policies []*networkingv1.NetworkPolicy
		proto    corev1.Protocol
		port     uint16
		want     [][]bool
	}{
		{
			name: "no policies",
			port: 80,
			want: parseRows(
				"... ... ...", "... ... ...", "... ... ...",
				"... ... ...", "... ... ...", "... ... ...",
				"... ... ...", "... ... ...", "... ... ...",
			),
		},
		{
			name:     "default deny ingress in x",
			policies: []*networkingv1.NetworkPolicy{np("x", "deny", all(), types(tIn))},
			port:     80,
			want: parseRows(
				"XXX ... ...", "XXX ... ...", "XXX ... ...",
				"XXX ... ...", "XXX ... ...", "XXX ... ...",
				"XXX ... ...", "XXX ... ...", "XXX ... ...",
			),
		},
		{
			name:     "default deny egress in x",
			policies: []*networkingv1.NetworkPolicy{np("x", "deny", all(), types(tEg))},
			port:     80,
			want: parseRows(
				"XXX XXX XXX", "XXX XXX XXX", "XXX XXX XXX",
				"... ... ...", "... ... ...", "... ... ...",
				"... ... ...", "... ... ...", "... ... ...",
			),
		},
		{
			name: "x/a: ingress from ns y AND pod b, or from pod c in x",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "a", labelsSel("pod", "a"), ingress(rule{peers: peers(
					nsPodPeer(labelsSel("ns", "y"), labelsSel("pod", "b")),
					podPeer(labelsSel("pod", "c")),
				)})),
			},
			port: 80,
			want: parseRows(
				"X.. ... ...", "X.. ... ...", "... ... ...",
				"X.. ... ...", "... ... ...", "X.. ... ...",
				"X.. ... ...", "X.. ... ...", "X.. ... ...",
			),
		},
		{
			name: "port 81 only into x/a, probed on 80",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "a", labelsSel("pod", "a"), ingress(rule{ports: ports(numPort(tcp, 81))})),
			},
			port: 80,
			want: parseRows(
				"X.. ... ...", "X.. ... ...", "X.. ... ...",
				"X.. ... ...", "X.. ... ...", "X.. ... ...",
				"X.. ... ...", "X.. ... ...", "X.. ... ...",
			),
		},
		{
			name: "same policy probed on UDP 81 (protocol mismatch)",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "a", labelsSel("pod", "a"), ingress(rule{ports: ports(numPort(tcp, 81))})),
			},
			proto: udp,
			port:  81,
			want: parseRows(
				"X.. ... ...", "X.. ... ...", "X.. ... ...",
				"X.. ... ...", "X.. ... ...", "X.. ... ...",
				"X.. ... ...", "X.. ... ...", "X.. ... ...",
			),
		},
		{
			name: "egress from x/a only to ns z, ipBlock excludes z/c",
			policies: []*networkingv1.NetworkPolicy{
				np("x", "a", labelsSel("pod", "a"), types(tEg), egress(rule{peers: peers(cidrPeer("10.0.2.0/24", "10.0.2.3/32"))})),
			},
			port: 81,
			want: parseRows(
				"XXX XXX ..X", "... ... ...", "... ... ...",
				"... ... ...", "... ... ...", "... ... ...",
				"... ... ...", "... ... ...", "... ... ...",
			),
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			proto := c.proto
			if proto == "" {
				proto = tcp
			}
			m := Compile(c.policies, basePods(), baseNamespaces())
			got := m.Matrix(pods, proto, c.port)
			g, w := FormatMatrix(pods, got), FormatMatrix(pods, c.want)
			t.Logf("%s %d:\n%s", proto, c.port, g)
			if g != w {
				t.Errorf("matrix mismatch\ngot:\n%s\nwant:\n%s", g, w)
			}
		})
	}
}

func TestMatrixMissingPod(t *testing.T) {
	m := Compile(nil, basePods(), baseNamespaces())
	got := m.Matrix([]PodRef{{"x", "a"}, {"x", "nope"}}, tcp, 80)
	if !got[0][0] || got[0][1] || got[1][0] || got[1][1] {
		t.Errorf("got %v", got)
	}
}
