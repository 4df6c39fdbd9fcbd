package cni

import (
	"errors"
	"fmt"
	"net"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/podnet/podnet/internal/ipam"
)

// Del implements CNI DEL. It is best-effort and idempotent: a missing netns,
// interface, anti-spoof element or IP record is success. It removes the
// anti-spoof element, then the veth pair, and releases the IP last, so the
// IP is never handed out while the old interface still holds it.
func Del(args *skel.CmdArgs) error {
	_, store, err := openStore(args.StdinData)
	if err != nil {
		return err
	}
	defer store.Close()
	hostVeth := HostVethName(args.ContainerID, args.IfName)

	var errs []error
	as, err := newAntiSpoof()
	if err != nil {
		return err
	}
	// Closing an nftables socket right after a transaction that deleted
	// something waits for an RCU grace period in the kernel; removing the
	// element first and closing after the (slow anyway) veth deletion
	// overlaps the two waits.
	defer as.close()
	err = store.Locked(func() error {
		return as.removeWhere(func(e sourceElement) bool { return e.IfName == hostVeth })
	})
	if err != nil {
		errs = append(errs, err)
	}
	// Deleting the host side removes the pod side with it; if the netns is
	// gone, the kernel already removed both.
	if err := deleteLink(hostVeth); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		// Keep the IP until its interface and filter state are gone; the
		// runtime retries DEL.
		return errors.Join(errs...)
	}
	if _, err := store.Release(args.ContainerID, args.IfName); err != nil {
		return err
	}
	return nil
}

// GC implements CNI GC (spec 1.1): it releases every IP whose attachment is
// not in cni.dev/valid-attachments, deletes the host veths of those
// attachments, and reconciles the anti-spoof set and the bridge's podnet
// veths with the allocations that remain.
func GC(args *skel.CmdArgs) error {
	conf, store, err := openStore(args.StdinData)
	if err != nil {
		return err
	}
	defer store.Close()

	valid := make([]ipam.Attachment, 0, len(conf.ValidAttachments))
	for _, v := range conf.ValidAttachments {
		valid = append(valid, ipam.Attachment{ContainerID: v.ContainerID, IfName: v.IfName})
	}
	var errs []error
	freed, err := store.GC(valid)
	if err != nil {
		errs = append(errs, err)
	}
	for _, f := range freed {
		if f.ContainerID == "" {
			continue // a record cut short by a crash: nothing was configured for it
		}
		if err := deleteLink(HostVethName(f.ContainerID, f.IfName)); err != nil {
			errs = append(errs, err)
		}
	}
	err = store.WithAllocations(func(allocs []ipam.Allocation) error {
		return reconcileNode(allocs, conf.Bridge)
	})
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("GC: %w", errors.Join(errs...))
	}
	return nil
}

// reconcileNode (under the IPAM lock) removes anti-spoof elements and bridge
// ports named like podnet's host veths that belong to no allocation.
func reconcileNode(allocs []ipam.Allocation, bridge string) error {
	want := make(map[string]net.IP, len(allocs))
	for _, a := range allocs {
		if a.ContainerID != "" {
			want[HostVethName(a.ContainerID, a.IfName)] = a.IP
		}
	}
	var errs []error
	as, err := newAntiSpoof()
	if err != nil {
		return err
	}
	defer as.close()
	if err := as.removeWhere(func(e sourceElement) bool {
		ip, ok := want[e.IfName]
		return !ok || !ip.Equal(e.IP)
	}); err != nil {
		errs = append(errs, err)
	}

	br, err := nodeNL().LinkByName(bridge)
	if err != nil {
		if !isNotFound(err) {
			errs = append(errs, fmt.Errorf("bridge %s: %w", bridge, err))
		}
		return errors.Join(errs...)
	}
	links, err := nodeNL().LinkList()
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list links: %w", err))...)
	}
	for _, l := range links {
		name := l.Attrs().Name
		if l.Type() != "veth" || l.Attrs().MasterIndex != br.Attrs().Index || !isHostVethName(name) {
			continue
		}
		if _, ok := want[name]; ok {
			continue
		}
		if err := deleteLink(name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
