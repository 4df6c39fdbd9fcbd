package ipam

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

const (
	lockFileName = "lock"
	lastFileName = "last_reserved"
)

// Allocation is one pod IP held by an attachment.
type Allocation struct {
	IP          net.IP
	ContainerID string
	IfName      string
}

// Attachment names one pod interface: a CNI (containerID, ifName) pair.
type Attachment struct {
	ContainerID string
	IfName      string
}

// Store hands out pod IPs from one node's podCIDR. Its state lives in a
// directory, one file per allocated IP, so that short-lived CNI processes
// running at the same time share it: every mutation holds an exclusive flock
// on dataDir/lock, and every record is fsync'd before Allocate returns, so a
// crash leaves either no record or a record that GC reclaims.
//
// Address plan: the network address (.0) is the node's own (VXLAN VTEP), the
// first host address (.1) is the pods' gateway, the broadcast address is
// excluded; pods get the rest, handed out round-robin.
//
// A Store is safe for concurrent use by goroutines; separate Stores (in one
// process or many) on the same directory serialise through the flock.
type Store struct {
	mu          sync.Mutex
	dir         string
	subnet      *net.IPNet
	gateway     net.IP
	first, last uint32 // inclusive range of pod addresses
	lock        *os.File
}

// Open opens (creating if needed) the IP store in dataDir for subnet, an IPv4
// CIDR no longer than /30. The caller should Close it.
func Open(dataDir string, subnet *net.IPNet) (*Store, error) {
	if dataDir == "" {
		return nil, fmt.Errorf("ipam data directory: missing")
	}
	if subnet == nil {
		return nil, fmt.Errorf("pod CIDR: missing")
	}
	ip4 := subnet.IP.To4()
	ones, size := subnet.Mask.Size()
	if ip4 == nil || size != 32 {
		return nil, fmt.Errorf("pod CIDR %s: not an IPv4 CIDR", subnet)
	}
	if ones > 30 {
		return nil, fmt.Errorf("pod CIDR %s: too small, need at least a /30 (node address, gateway, one pod, broadcast)", subnet)
	}
	mask := net.CIDRMask(ones, 32)
	network := ipToU32(ip4) & ipToU32(net.IP(mask))
	broadcast := network | ^ipToU32(net.IP(mask))
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("ipam data directory %s: %w", dataDir, err)
	}
	lf, err := os.OpenFile(filepath.Join(dataDir, lockFileName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ipam data directory %s: lock file: %w", dataDir, err)
	}
	return &Store{
		dir:     dataDir,
		subnet:  &net.IPNet{IP: u32ToIP(network), Mask: mask},
		gateway: u32ToIP(network + 1),
		first:   network + 2,
		last:    broadcast - 1,
		lock:    lf,
	}, nil
}

// Close releases the store's lock file.
func (s *Store) Close() error { return s.lock.Close() }

// Dir is the store's data directory.
func (s *Store) Dir() string { return s.dir }

// Subnet is the podCIDR the store allocates from.
func (s *Store) Subnet() *net.IPNet {
	return &net.IPNet{IP: append(net.IP(nil), s.subnet.IP...), Mask: s.subnet.Mask}
}

// Gateway is the pods' default gateway: the first host address of the podCIDR.
func (s *Store) Gateway() net.IP { return append(net.IP(nil), s.gateway...) }

// Capacity is the number of pod addresses in the podCIDR.
func (s *Store) Capacity() int { return int(s.last - s.first + 1) }

// Locked runs fn while holding the store's exclusive lock, serialising it
// with every other mutation of this data directory by any process. fn must
// not call other methods of s (they take the lock themselves).
func (s *Store) Locked(fn func() error) error {
	unlock, err := s.acquire()
	if err != nil {
		return err
	}
	defer unlock()
	return fn()
}

// WithAllocations runs fn under the store's lock with the current
// allocations, so that fn can reconcile other state (for example firewall
// sets) against them without racing concurrent Allocate calls. Like Locked,
// fn must not call other methods of s.
func (s *Store) WithAllocations(fn func(current []Allocation) error) error {
	unlock, err := s.acquire()
	if err != nil {
		return err
	}
	defer unlock()
	allocs, err := s.list()
	if err != nil {
		return err
	}
	return fn(allocs)
}

func (s *Store) acquire() (func(), error) {
	s.mu.Lock()
	for {
		err := syscall.Flock(int(s.lock.Fd()), syscall.LOCK_EX)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EINTR) {
			s.mu.Unlock()
			return nil, fmt.Errorf("ipam: lock %s: %w", s.lock.Name(), err)
		}
	}
	return func() {
		_ = syscall.Flock(int(s.lock.Fd()), syscall.LOCK_UN)
		s.mu.Unlock()
	}, nil
}

// Allocate returns an IP for the attachment (containerID, ifName). It is
// idempotent: an attachment that already holds an IP gets the same IP back.
// The record is durable (file and directory fsync'd) before Allocate returns.
func (s *Store) Allocate(containerID, ifName string) (net.IP, error) {
	ip, _, err := s.Reserve(containerID, ifName)
	return ip, err
}

// Reserve is Allocate that also reports whether this call created the
// record (false: the attachment already held the IP), so that a caller
// undoing a failed setup releases only what it took.
func (s *Store) Reserve(containerID, ifName string) (ip net.IP, created bool, err error) {
	if err := validAttachment(containerID, ifName); err != nil {
		return nil, false, err
	}
	unlock, err := s.acquire()
	if err != nil {
		return nil, false, err
	}
	defer unlock()

	allocs, err := s.list()
	if err != nil {
		return nil, false, err
	}
	taken := make(map[uint32]bool, len(allocs))
	for _, a := range allocs {
		if a.ContainerID == containerID && a.IfName == ifName {
			return a.IP, false, nil
		}
		taken[ipToU32(a.IP)] = true
	}

	n := s.last - s.first + 1
	start := s.first
	if last, ok := s.lastReserved(); ok {
		start = last + 1
	}
	for i := uint32(0); i < n; i++ {
		cand := start + i
		if cand < s.first || cand > s.last {
			cand = s.first + (cand-s.first)%n
		}
		if taken[cand] {
			continue
		}
		ip := u32ToIP(cand)
		created, err := s.writeRecord(ip, containerID, ifName)
		if err != nil {
			return nil, false, err
		}
		if !created {
			continue // a name list() skipped, e.g. a directory
		}
		// The hint is not critical: losing it only makes the next
		// allocation start lower.
		_ = os.WriteFile(filepath.Join(s.dir, lastFileName), []byte(ip.String()+"\n"), 0o600)
		return ip, true, nil
	}
	return nil, false, fmt.Errorf("podCIDR %s is exhausted: all %d pod addresses are allocated", s.subnet, n)
}

// writeRecord creates the record for ip with O_EXCL and makes it durable. It
// returns false when a record for ip already exists.
func (s *Store) writeRecord(ip net.IP, containerID, ifName string) (bool, error) {
	path := filepath.Join(s.dir, ip.String())
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("ipam: record %s: %w", path, err)
	}
	_, err = f.WriteString(containerID + "\n" + ifName + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.syncDir()
	}
	if err != nil {
		_ = os.Remove(path)
		return false, fmt.Errorf("ipam: record %s: %w", path, err)
	}
	return true, nil
}

func (s *Store) syncDir() error {
	d, err := os.Open(s.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (s *Store) lastReserved() (uint32, bool) {
	b, err := os.ReadFile(filepath.Join(s.dir, lastFileName))
	if err != nil {
		return 0, false
	}
	ip := net.ParseIP(strings.TrimSpace(string(b))).To4()
	if ip == nil {
		return 0, false
	}
	v := ipToU32(ip)
	if v < s.first || v > s.last {
		return 0, false
	}
	return v, true
}

// Release frees the attachment's IP. It reports whether there was one;
// releasing an attachment without an IP is not an error.
func (s *Store) Release(containerID, ifName string) (bool, error) {
	unlock, err := s.acquire()
	if err != nil {
		return false, err
	}
	defer unlock()
	allocs, err := s.list()
	if err != nil {
		return false, err
	}
	var freed []Allocation
	for _, a := range allocs {
		if a.ContainerID == containerID && a.IfName == ifName {
			freed = append(freed, a)
		}
	}
	if err := s.remove(freed); err != nil {
		return false, err
	}
	return len(freed) > 0, nil
}

// Get returns the attachment's IP, if it holds one.
func (s *Store) Get(containerID, ifName string) (net.IP, bool, error) {
	allocs, err := s.List()
	if err != nil {
		return nil, false, err
	}
	for _, a := range allocs {
		if a.ContainerID == containerID && a.IfName == ifName {
			return a.IP, true, nil
		}
	}
	return nil, false, nil
}

// List returns every allocation, sorted by IP. A record left empty or
// truncated by a crash appears with an empty ContainerID/IfName.
func (s *Store) List() ([]Allocation, error) {
	unlock, err := s.acquire()
	if err != nil {
		return nil, err
	}
	defer unlock()
	return s.list()
}

// GC frees every allocation whose attachment is not in valid, including
// records left incomplete by a crash, and returns what it freed.
func (s *Store) GC(valid []Attachment) ([]Allocation, error) {
	keep := make(map[Attachment]bool, len(valid))
	for _, a := range valid {
		keep[a] = true
	}
	unlock, err := s.acquire()
	if err != nil {
		return nil, err
	}
	defer unlock()
	allocs, err := s.list()
	if err != nil {
		return nil, err
	}
	var freed []Allocation
	for _, a := range allocs {
		if !keep[Attachment{a.ContainerID, a.IfName}] {
			freed = append(freed, a)
		}
	}
	if err := s.remove(freed); err != nil {
		return nil, err
	}
	return freed, nil
}

// Free returns the number of unallocated pod addresses.
func (s *Store) Free() (int, error) {
	allocs, err := s.List()
	if err != nil {
		return 0, err
	}
	used := 0
	for _, a := range allocs {
		if v := ipToU32(a.IP); v >= s.first && v <= s.last {
			used++
		}
	}
	return s.Capacity() - used, nil
}

// list reads every record; the caller holds the lock.
func (s *Store) list() ([]Allocation, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("ipam: read %s: %w", s.dir, err)
	}
	var out []Allocation
	for _, e := range entries {
		ip := net.ParseIP(e.Name()).To4()
		if ip == nil || e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.dir, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("ipam: read record %s: %w", e.Name(), err)
		}
		a := Allocation{IP: ip}
		// A complete record is exactly "containerID\nifName\n"; anything
		// else was cut short by a crash and belongs to nobody.
		if lines := strings.Split(string(b), "\n"); len(lines) == 3 && lines[2] == "" {
			a.ContainerID, a.IfName = lines[0], lines[1]
		}
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return ipToU32(out[i].IP) < ipToU32(out[j].IP) })
	return out, nil
}

func (s *Store) remove(allocs []Allocation) error {
	if len(allocs) == 0 {
		return nil
	}
	for _, a := range allocs {
		if err := os.Remove(filepath.Join(s.dir, a.IP.String())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("ipam: release %s: %w", a.IP, err)
		}
	}
	if err := s.syncDir(); err != nil {
		return fmt.Errorf("ipam: sync %s: %w", s.dir, err)
	}
	return nil
}

func validAttachment(containerID, ifName string) error {
	if containerID == "" {
		return fmt.Errorf("container ID: missing")
	}
	if ifName == "" {
		return fmt.Errorf("interface name: missing")
	}
	if strings.ContainsAny(containerID, "\n\x00") {
		return fmt.Errorf("container ID %s: contains a newline or NUL", strconv.Quote(containerID))
	}
	if strings.ContainsAny(ifName, "\n\x00") {
		return fmt.Errorf("interface name %s: contains a newline or NUL", strconv.Quote(ifName))
	}
	return nil
}
