// Package ipam allocates addresses: node podCIDRs out of the cluster CIDR
// (NodeAllocator, pure and in memory) and pod IPs out of one node's podCIDR
// (Store, crash-safe on the filesystem and shared by concurrent CNI
// processes).
package ipam

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net"
	"sync"
)

// DefaultNodeMaskSize is the prefix length of a node's podCIDR when none is
// configured: a /24 gives every node 253 pod addresses.
const DefaultNodeMaskSize = 24

// maxNodeSubnetBits bounds the size of the allocator's bitmap (2^24 node
// subnets, 2 MiB).
const maxNodeSubnetBits = 24

// NodeAllocator hands out per-node podCIDRs of one fixed size from an IPv4
// cluster CIDR, always the lowest free one. It is safe for concurrent use.
type NodeAllocator struct {
	mu          sync.Mutex
	cluster     *net.IPNet
	base        uint32 // cluster network address
	clusterBits int    // prefix length of the cluster CIDR
	nodeBits    int    // prefix length of a node subnet
	capacity    int
	used        []uint64 // bit i set: subnet i is taken
	count       int
}

// NewNodeAllocator returns an allocator splitting cluster into subnets of
// prefix length nodeMaskSize. The cluster CIDR must be IPv4; its host bits
// are ignored. nodeMaskSize must be between the cluster's prefix length and
// 30.
func NewNodeAllocator(cluster *net.IPNet, nodeMaskSize int) (*NodeAllocator, error) {
	if cluster == nil {
		return nil, fmt.Errorf("cluster CIDR: missing")
	}
	ip4 := cluster.IP.To4()
	ones, size := cluster.Mask.Size()
	if ip4 == nil || size != 32 {
		return nil, fmt.Errorf("cluster CIDR %s: not an IPv4 CIDR", cluster)
	}
	if nodeMaskSize > 30 {
		return nil, fmt.Errorf("node mask size /%d: larger than /30 (a node subnet needs a gateway and at least one pod address)", nodeMaskSize)
	}
	if nodeMaskSize < ones {
		return nil, fmt.Errorf("node mask size /%d: smaller than the cluster CIDR's /%d", nodeMaskSize, ones)
	}
	if nodeMaskSize-ones > maxNodeSubnetBits {
		return nil, fmt.Errorf("node mask size /%d: cluster CIDR /%d would hold 2^%d node subnets, more than the supported 2^%d", nodeMaskSize, ones, nodeMaskSize-ones, maxNodeSubnetBits)
	}
	mask := net.CIDRMask(ones, 32)
	base := binary.BigEndian.Uint32(ip4) & binary.BigEndian.Uint32(mask)
	n := 1 << (nodeMaskSize - ones)
	return &NodeAllocator{
		cluster:     &net.IPNet{IP: u32ToIP(base), Mask: mask},
		base:        base,
		clusterBits: ones,
		nodeBits:    nodeMaskSize,
		capacity:    n,
		used:        make([]uint64, (n+63)/64),
	}, nil
}

// Capacity is the number of node subnets the cluster CIDR holds.
func (a *NodeAllocator) Capacity() int { return a.capacity }

// Used is the number of node subnets currently taken.
func (a *NodeAllocator) Used() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.count
}

// Allocate takes the lowest free node subnet. It fails when every subnet of
// the cluster CIDR is taken.
func (a *NodeAllocator) Allocate() (*net.IPNet, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for w, word := range a.used {
		if word == ^uint64(0) {
			continue
		}
		i := w*64 + bits.TrailingZeros64(^word)
		if i >= a.capacity {
			break
		}
		a.set(i, true)
		return a.subnet(i), nil
	}
	return nil, fmt.Errorf("cluster CIDR %s is full: all %d node subnets of size /%d are allocated", a.cluster, a.capacity, a.nodeBits)
}

// Occupy marks subnet as taken, e.g. a podCIDR found on an existing Node
// after a restart. Occupying a subnet that is already taken is not an error.
// subnet must be a node-sized subnet of the cluster CIDR.
func (a *NodeAllocator) Occupy(subnet *net.IPNet) error {
	i, err := a.index(subnet)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.set(i, true)
	return nil
}

// Release frees subnet. Releasing a free subnet or one outside the cluster
// CIDR does nothing.
func (a *NodeAllocator) Release(subnet *net.IPNet) {
	i, err := a.index(subnet)
	if err != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.set(i, false)
}

// IsAllocated reports whether subnet is a taken node subnet.
func (a *NodeAllocator) IsAllocated(subnet *net.IPNet) bool {
	i, err := a.index(subnet)
	if err != nil {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.used[i/64]&(1<<(i%64)) != 0
}

func (a *NodeAllocator) set(i int, taken bool) {
	bit := uint64(1) << (i % 64)
	was := a.used[i/64]&bit != 0
	switch {
	case taken && !was:
		a.used[i/64] |= bit
		a.count++
	case !taken && was:
		a.used[i/64] &^= bit
		a.count--
	}
}

func (a *NodeAllocator) subnet(i int) *net.IPNet {
	ip := a.base + uint32(i)<<(32-a.nodeBits)
	return &net.IPNet{IP: u32ToIP(ip), Mask: net.CIDRMask(a.nodeBits, 32)}
}

// index returns the position of subnet in the bitmap, validating that it is a
// node-sized, aligned subnet inside the cluster CIDR.
func (a *NodeAllocator) index(subnet *net.IPNet) (int, error) {
	if subnet == nil {
		return 0, fmt.Errorf("node subnet: missing")
	}
	ip4 := subnet.IP.To4()
	ones, size := subnet.Mask.Size()
	if ip4 == nil || size != 32 {
		return 0, fmt.Errorf("node subnet %s: not an IPv4 CIDR", subnet)
	}
	if ones != a.nodeBits {
		return 0, fmt.Errorf("node subnet %s: prefix length /%d, want /%d", subnet, ones, a.nodeBits)
	}
	ip := binary.BigEndian.Uint32(ip4)
	if ip&binary.BigEndian.Uint32(net.CIDRMask(a.nodeBits, 32)) != ip {
		return 0, fmt.Errorf("node subnet %s: host bits set", subnet)
	}
	if !a.cluster.Contains(ip4) {
		return 0, fmt.Errorf("node subnet %s: outside the cluster CIDR %s", subnet, a.cluster)
	}
	return int((ip - a.base) >> (32 - a.nodeBits)), nil
}

func u32ToIP(v uint32) net.IP {
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, v)
	return ip
}

func ipToU32(ip net.IP) uint32 {
	return binary.BigEndian.Uint32(ip.To4())
}
