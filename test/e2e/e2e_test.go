// Package e2e drives the podnet binary exactly as a user does: `podnet lab up`, `apply`, `exec`,
// and checks real traffic between pods. It needs root and runs in `make test`.
package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

var bin string // directory holding the podnet and podnet-cni binaries built for this run

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("e2e: skipped, needs root")
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "pne2e")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "bin")
	for _, c := range []string{"podnet", "podnet-cni"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(bin, c), "../../cmd/"+c).CombinedOutput()
		if err != nil {
			fmt.Printf("build %s: %v\n%s", c, err, out)
			os.Exit(1)
		}
	}
	// Labs of this run keep their state here, not in /var/lib/podnet.
	os.Setenv("PODNET_STATE_ROOT", filepath.Join(dir, "state"))
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// podnet runs the binary and returns stdout, stderr and the error.
func podnet(args ...string) (string, string, error) {
	cmd := exec.Command(filepath.Join(bin, "podnet"), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func mustPodnet(t *testing.T, args ...string) string {
	t.Helper()
	out, stderr, err := podnet(args...)
	if err != nil {
		t.Fatalf("podnet %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
	}
	return out
}

// upLab starts a lab with a unique name and removes it when the test ends, failed or not.
func upLab(t *testing.T, prefix string, args ...string) string {
	t.Helper()
	name := prefix + randHex(3)
	t.Cleanup(func() {
		if _, stderr, err := podnet("lab", "down", "--name", name); err != nil {
			t.Errorf("lab down %s: %v %s", name, err, stderr)
		}
		if left := netnsWithPrefix(name + "."); len(left) > 0 {
			t.Errorf("lab down left namespaces behind: %v", left)
		}
	})
	mustPodnet(t, append([]string{"lab", "up", "--name", name}, args...)...)
	return name
}

func netnsWithPrefix(prefix string) []string {
	entries, _ := os.ReadDir("/var/run/netns")
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

func applyYAML(t *testing.T, lab, yaml string, extra ...string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "objects.yaml")
	if err := os.WriteFile(f, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return mustPodnet(t, append([]string{"apply", "--lab", lab, "-f", f}, extra...)...)
}

func getPods(t *testing.T, lab, ns string) []corev1.Pod {
	t.Helper()
	out := mustPodnet(t, "get", "pods", "--lab", lab, "-n", ns, "-o", "json")
	var list struct{ Items []corev1.Pod }
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("decode pods: %v\n%s", err, out)
	}
	return list.Items
}

// reply is what the workload server answers.
type reply struct {
	Pod, Node, PodIP, ClientIP string
}

// probe asks the workload server at addr, from inside pod ns/pod, who it is and whom it saw.
func probe(lab, ns, pod, proto, addr string) (reply, error) {
	out, stderr, err := podnet("exec", "--lab", lab, "-n", ns, pod, "--", filepath.Join(bin, "podnet"), "probe", proto, addr, "--timeout", "3s")
	var r reply
	if err != nil {
		return r, fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr))
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return r, fmt.Errorf("bad reply %q: %v", out, err)
	}
	return r, nil
}
