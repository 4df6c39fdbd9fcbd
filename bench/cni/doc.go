// Package cni benchmarks podnet-cni's ADD and DEL latency against the
// reference bridge + host-local plugins, both driven through libcni in a
// fresh node namespace exactly as a runtime (or the lab) drives them. Run as
// root:
//
//	go test -run XXX -bench . ./bench/cni -v
package cni
