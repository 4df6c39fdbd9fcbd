package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// UpOptions say how `podnet lab up` starts the daemon.
type UpOptions struct {
	SelfExe string        // the podnet binary; the daemon is `SelfExe lab daemon --name NAME`
	Timeout time.Duration // how long to wait for every node to be Ready
}

// Prepare validates a new lab's configuration, refuses a name that is taken, and writes the
// configuration into a fresh state directory.
func Prepare(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	p := PathsFor(cfg.Name)
	if _, err := os.Stat(p.Dir); err == nil {
		if daemonAlive(cfg.Name) {
			return fmt.Errorf("lab %q exists and is running; use another --name or `podnet lab down --name %s`", cfg.Name, cfg.Name)
		}
		return fmt.Errorf("lab %q exists but its daemon is not running; restart it with `podnet lab restart --name %s` or remove it with `podnet lab down --name %s`", cfg.Name, cfg.Name, cfg.Name)
	}
	if left := labNetns(cfg.Name); len(left) > 0 {
		return fmt.Errorf("lab %q: network namespaces of that name are left over (%s); remove them with `podnet lab down --name %s`", cfg.Name, strings.Join(left, ", "), cfg.Name)
	}
	if err := os.MkdirAll(p.Dir, 0o755); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	return os.WriteFile(p.Config(), b, 0o644)
}

// Up creates a lab and returns when every node is Ready, its daemon running in the background.
// On failure nothing of the lab is left.
func Up(ctx context.Context, cfg Config, opts UpOptions) (*Status, error) {
	if err := Prepare(cfg); err != nil {
		return nil, err
	}
	st, err := startDaemon(ctx, cfg, opts)
	if err != nil {
		_ = Destroy(cfg.Name)
		return nil, err
	}
	return st, nil
}

// Restart starts a new daemon for a lab whose daemon died: it reads the stored configuration and
// objects and adopts the namespaces, routes and pod processes that are still there.
func Restart(ctx context.Context, name string, opts UpOptions) (*Status, error) {
	cfg, err := LoadConfig(name)
	if err != nil {
		return nil, err
	}
	if daemonAlive(name) {
		return nil, fmt.Errorf("lab %q is running (daemon pid %d)", name, daemonPID(name))
	}
	return startDaemon(ctx, cfg, opts)
}

func startDaemon(ctx context.Context, cfg Config, opts UpOptions) (*Status, error) {
	p := PathsFor(cfg.Name)
	logf, err := os.OpenFile(p.Log(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(opts.SelfExe, "lab", "daemon", "--name", cfg.Name)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = os.Environ()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start lab daemon: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	deadline := time.After(timeout)
	c, err := NewClient(cfg.Name)
	if err != nil {
		return nil, err
	}
	for {
		var st Status
		if err := c.Do(ctx, "GET", "/v1/status", nil, nil, &st); err == nil && st.Ready {
			return &st, nil
		}
		select {
		case err := <-exited:
			return nil, fmt.Errorf("lab daemon exited (%v):\n%s", err, tail(p.Log(), 20))
		case <-deadline:
			_ = cmd.Process.Kill()
			return nil, fmt.Errorf("lab %q not ready after %s:\n%s", cfg.Name, timeout, tail(p.Log(), 20))
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func daemonPID(name string) int {
	b, err := os.ReadFile(PathsFor(name).PIDFile())
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func daemonAlive(name string) bool {
	return processAlive(daemonPID(name))
}

// processAlive is true for a running process; a zombie waiting to be reaped counts as gone.
func processAlive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	if i := strings.LastIndexByte(string(b), ')'); i > 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}

// Exists reports whether anything of the named lab is on this host.
func Exists(name string) bool {
	_, err := os.Stat(PathsFor(name).Dir)
	return err == nil || len(labNetns(name)) > 0
}

// Down stops the lab's daemon and removes everything of the lab; a lab that does not exist is an error.
func Down(ctx context.Context, name string) error {
	if !labNameRE.MatchString(name) {
		return fmt.Errorf("--name %q: not a lab name", name)
	}
	if !Exists(name) {
		return fmt.Errorf("lab %q does not exist", name)
	}
	if pid := daemonPID(name); pid > 0 && daemonAlive(name) {
		if c, err := NewClient(name); err == nil {
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_ = c.Do(sctx, "POST", "/v1/shutdown", nil, nil, nil)
			cancel()
		}
		deadline := time.Now().Add(20 * time.Second)
		for processAlive(pid) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return Destroy(name)
}

// Destroy removes everything of the lab whatever state it is in: every process inside its
// namespaces, the namespaces (and with them every link, route and nft table in them), the
// per-namespace /etc files, and the state directory. Nothing outside the lab is touched.
func Destroy(name string) error {
	if !labNameRE.MatchString(name) {
		return fmt.Errorf("not a lab name: %q", name)
	}
	var errs []error
	if pid := daemonPID(name); pid > 0 && pid != os.Getpid() && daemonAlive(name) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	nss := labNetns(name)
	killInNetns(nss)
	for _, ns := range nss {
		if err := delNetns(ns); err != nil {
			errs = append(errs, err)
		}
		_ = os.RemoveAll(filepath.Join(etcNetnsDir, ns))
	}
	if entries, err := os.ReadDir(etcNetnsDir); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), NetnsPrefix(name)) {
				_ = os.RemoveAll(filepath.Join(etcNetnsDir, e.Name()))
			}
		}
	}
	if err := os.RemoveAll(PathsFor(name).Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// killInNetns kills every process whose network namespace is one of the named ones: every
// thread of it. A host process with one thread inside a lab namespace for a moment (a test
// dialling into a pod, a debugger) is not the lab's and is left alone.
func killInNetns(names []string) {
	inodes := map[uint64]bool{}
	for _, n := range names {
		var st syscall.Stat_t
		if syscall.Stat(NetnsPath(n), &st) == nil {
			inodes[st.Ino] = true
		}
	}
	if len(inodes) == 0 {
		return
	}
	for round := 0; round < 3; round++ {
		procs, _ := os.ReadDir("/proc")
		found := false
		for _, p := range procs {
			pid, err := strconv.Atoi(p.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			var st syscall.Stat_t
			if syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) != nil || !inodes[st.Ino] || !allThreadsIn(pid, inodes) {
				continue
			}
			found = true
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if !found {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// allThreadsIn: every thread of pid is in one of the namespaces.
func allThreadsIn(pid int, inodes map[uint64]bool) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return false
	}
	for _, t := range tasks {
		var st syscall.Stat_t
		if syscall.Stat(fmt.Sprintf("/proc/%d/task/%s/ns/net", pid, t.Name()), &st) != nil {
			continue // the thread has exited
		}
		if !inodes[st.Ino] {
			return false
		}
	}
	return true
}

// RunForeground creates the lab and runs its daemon in this process until ctx is done, then
// removes the lab.
func RunForeground(ctx context.Context, cfg Config, opts DaemonOptions, onReady func()) error {
	if err := Prepare(cfg); err != nil {
		return err
	}
	defer Destroy(cfg.Name)
	d, err := NewDaemon(cfg, opts)
	if err != nil {
		return err
	}
	d.onReady = onReady
	return d.Run(ctx)
}
