// Package netnsutil creates sockets inside another network namespace without ever leaving a shared
// OS thread in it.
//
// A socket belongs to the network namespace it was created in, for its whole life, whichever thread
// later uses it. So a listener for a node's namespace can be made once, on a dedicated goroutine
// locked to its OS thread and switched into the namespace, and then served from any goroutine. If
// switching that thread back fails, the goroutine exits still locked and the Go runtime discards the
// thread, so no other goroutine ever runs in the wrong namespace.
//
// Addresses should be literal IP addresses: a host name would be resolved by the Go resolver on other
// threads, i.e. in the process's own namespace.
package netnsutil

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs fn on a dedicated goroutine locked to an OS thread that has been switched into the
// network namespace at nsPath (a path like /run/netns/NAME or /proc/PID/ns/net); "" runs fn
// directly, in the caller's namespace. Sockets fn creates belong to that namespace. fn must not
// start goroutines that expect to inherit the namespace, and must not unlock the OS thread.
func Do(nsPath string, fn func() error) error {
	if nsPath == "" {
		return fn()
	}
	target, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", nsPath, err)
	}
	defer target.Close()
	return DoAt(target, fn)
}

// DoAt is Do with an open namespace handle (which stays open and owned by the caller).
func DoAt(ns netns.NsHandle, fn func() error) error {
	if !ns.IsOpen() {
		return errors.New("network namespace handle is not open")
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get the thread's network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			// setns failed, so the thread is still where it was: safe to hand back.
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// The thread is stuck in the target namespace: exit still locked so the runtime
			// terminates it. What fn created is unaffected and stays valid.
			errc <- ferr
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Listen is net.Listen with the socket created in the network namespace at nsPath ("" = current).
func Listen(nsPath, network, address string) (net.Listener, error) {
	var l net.Listener
	err := Do(nsPath, func() error {
		var err error
		l, err = net.Listen(network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen %s %s in %s: %w", network, address, nsName(nsPath), err)
	}
	return l, nil
}

// ListenPacket is net.ListenPacket with the socket created in the network namespace at nsPath
// ("" = current).
func ListenPacket(nsPath, network, address string) (net.PacketConn, error) {
	var c net.PacketConn
	err := Do(nsPath, func() error {
		var err error
		c, err = net.ListenPacket(network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen %s %s in %s: %w", network, address, nsName(nsPath), err)
	}
	return c, nil
}

// Dial is net.Dial from the network namespace at nsPath ("" = current).
func Dial(nsPath, network, address string) (net.Conn, error) {
	return DialContext(context.Background(), nsPath, network, address)
}

// DialContext is net.Dialer.DialContext from the network namespace at nsPath ("" = current). It
// suits http.Transport.DialContext:
//
//	DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
//		return netnsutil.DialContext(ctx, nsPath, network, addr)
//	}
func DialContext(ctx context.Context, nsPath, network, address string) (net.Conn, error) {
	var c net.Conn
	err := Do(nsPath, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

func nsName(nsPath string) string {
	if nsPath == "" {
		return "the current network namespace"
	}
	return nsPath
}
