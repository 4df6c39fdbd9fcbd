//go:build linux

package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The load generator runs in a child process of its own, pinned to a CPU other than the server's.
// One OS thread drives one connected UDP socket with sendmmsg/recvmmsg (batches of up to 64), so
// the client costs as few cycles per query as it can:
//
//   - max: closed loop, a fixed window of queries in flight; every answer received is replaced by
//     a new query at once. A window that times out (200 ms without any answer) is counted lost
//     and refilled.
//   - paced: open loop at a fixed rate (busy-polling the clock and the socket, so sending is
//     smooth), latency measured per query from just before its sendmmsg to its receipt.
//
// Every answer is checked against the query its ID names: QR, opcode, rcode, TC, QDCOUNT and
// ANCOUNT (the full content of every question of the mix is checked separately, once per server,
// before measuring).

const batch = 64

// loadResult is what a load child reports (as JSON on stdout).
type loadResult struct {
	Sent, OK, Wrong, Lost, Late int64
	Seconds                     float64
	QPS                         float64 // correct answers per second
	P50us, P99us, P999us        float64
	ServerCPU                   float64 // server process CPU time / wall time over the measurement
	Errors                      []string
}

type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

type slot struct {
	sent int64 // nanoseconds since the start, 0 = not in flight
	q    int32
}

type loader struct {
	fd      int
	qs      []query
	next    int // next query of the mix
	id      uint16
	slots   [65536]slot
	start   time.Time
	sendBuf [batch][512]byte
	sendIov [batch]unix.Iovec
	sendMsg [batch]mmsghdr
	recvBuf [batch][1500]byte
	recvIov [batch]unix.Iovec
	recvMsg [batch]mmsghdr
	res     loadResult
	lat     []int64
	measure bool
}

func newLoader(target string, qs []query) (*loader, error) {
	ap, err := netip.ParseAddrPort(target)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20)
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200000}); err != nil {
		return nil, err
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}); err != nil {
		return nil, err
	}
	l := &loader{fd: fd, qs: qs}
	for i := 0; i < batch; i++ {
		l.sendIov[i].Base = &l.sendBuf[i][0]
		l.sendMsg[i].hdr.Iov = &l.sendIov[i]
		l.sendMsg[i].hdr.SetIovlen(1)
		l.recvIov[i].Base = &l.recvBuf[i][0]
		l.recvIov[i].SetLen(len(l.recvBuf[i]))
		l.recvMsg[i].hdr.Iov = &l.recvIov[i]
		l.recvMsg[i].hdr.SetIovlen(1)
	}
	return l, nil
}

func (l *loader) now() int64 { return int64(time.Since(l.start)) + 1 }

// send sends n new queries of the mix.
func (l *loader) send(n int) error {
	for n > 0 {
		k := min(n, batch)
		t := l.now()
		for i := 0; i < k; i++ {
			qi := l.next
			l.next++
			if l.next == len(l.qs) {
				l.next = 0
			}
			l.id++
			s := &l.slots[l.id]
			if s.sent != 0 && l.measure {
				l.res.Lost++ // never answered before its ID came round again
			}
			s.sent, s.q = t, int32(qi)
			w := l.qs[qi].wire
			copy(l.sendBuf[i][:], w)
			binary.BigEndian.PutUint16(l.sendBuf[i][:], l.id)
			l.sendIov[i].SetLen(len(w))
		}
		off := 0
		for off < k {
			r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(l.fd), uintptr(unsafe.Pointer(&l.sendMsg[off])), uintptr(k-off), 0, 0, 0)
			if e != 0 {
				if e == unix.EINTR || e == unix.EAGAIN || e == unix.ENOBUFS {
					continue
				}
				return fmt.Errorf("sendmmsg: %w", e)
			}
			off += int(r)
		}
		if l.measure {
			l.res.Sent += int64(k)
		}
		n -= k
	}
	return nil
}

// recv receives up to a batch of answers and checks them; it returns how many answered queries
// in flight and how many datagrams arrived.
func (l *loader) recv(flags int) (answered, got int, err error) {
	r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(l.fd), uintptr(unsafe.Pointer(&l.recvMsg[0])), batch, uintptr(flags), 0, 0)
	if e != 0 {
		if e == unix.EAGAIN || e == unix.EINTR {
			return 0, 0, nil
		}
		if e == unix.ECONNREFUSED {
			return 0, 0, errors.New("server not listening (ECONNREFUSED)")
		}
		return 0, 0, fmt.Errorf("recvmmsg: %w", e)
	}
	t := l.now()
	for i := 0; i < int(r); i++ {
		b := l.recvBuf[i][:l.recvMsg[i].n]
		if len(b) < 12 {
			l.wrong("short answer (%d bytes)", len(b))
			continue
		}
		s := &l.slots[binary.BigEndian.Uint16(b)]
		if s.sent == 0 {
			if l.measure {
				l.res.Late++
			}
			continue
		}
		answered++
		q := &l.qs[s.q]
		sent := s.sent
		s.sent = 0
		if !l.measure {
			continue
		}
		hf := binary.BigEndian.Uint16(b[2:])
		qd, an := binary.BigEndian.Uint16(b[4:]), binary.BigEndian.Uint16(b[6:])
		switch {
		case hf&0x8000 == 0 || (hf>>11)&0xf != 0:
			l.wrong("%s %s: not a query answer (flags %04x)", q.name, kindNames[q.kind], hf)
		case int(hf&0xf) != q.rcode:
			l.wrong("%s: rcode %d, want %d", q.name, hf&0xf, q.rcode)
		case hf&0x0200 != 0:
			l.wrong("%s: truncated", q.name)
		case qd != 1 || int(an) != q.ancount:
			l.wrong("%s: qdcount %d ancount %d, want 1 and %d", q.name, qd, an, q.ancount)
		default:
			l.res.OK++
			l.lat = append(l.lat, t-sent)
		}
	}
	return answered, int(r), nil
}

func (l *loader) wrong(format string, args ...any) {
	l.res.Wrong++
	if len(l.res.Errors) < 5 {
		l.res.Errors = append(l.res.Errors, fmt.Sprintf(format, args...))
	}
}

func (l *loader) inflight() int {
	n := 0
	for i := range l.slots {
		if l.slots[i].sent != 0 {
			n++
		}
	}
	return n
}

// runMax runs the closed loop: warm for warm, then measure for dur.
func (l *loader) runMax(window int, warm, dur time.Duration, cpu func() float64) error {
	l.start = time.Now()
	if err := l.send(window); err != nil {
		return err
	}
	var t0 time.Time
	var c0 float64
	end := l.start.Add(warm + dur)
	for {
		now := time.Now()
		if !l.measure && now.Sub(l.start) >= warm {
			l.measure, t0, c0 = true, now, cpu()
			l.lat = l.lat[:0]
		}
		if now.After(end) {
			l.res.Seconds = now.Sub(t0).Seconds()
			l.res.ServerCPU = (cpu() - c0) / l.res.Seconds
			break
		}
		n, got, err := l.recv(unix.MSG_WAITFORONE)
		if err != nil {
			return err
		}
		if got == 0 {
			// Nothing within the receive timeout: count the window lost and refill it.
			for i := range l.slots {
				if l.slots[i].sent != 0 {
					l.slots[i].sent = 0
					if l.measure {
						l.res.Lost++
					}
				}
			}
			n = window
		}
		if err := l.send(n); err != nil {
			return err
		}
	}
	l.measure = false
	return nil
}

// runPaced sends rate queries per second for dur (after warm at the same rate), busy-polling.
func (l *loader) runPaced(rate float64, warm, dur time.Duration, cpu func() float64) error {
	l.start = time.Now()
	sent := 0
	var t0 time.Time
	var c0 float64
	for {
		now := time.Now()
		el := now.Sub(l.start)
		if !l.measure && el >= warm {
			l.measure, t0, c0 = true, now, cpu()
		}
		if el >= warm+dur {
			l.res.Seconds = now.Sub(t0).Seconds()
			l.res.ServerCPU = (cpu() - c0) / l.res.Seconds
			break
		}
		if due := int(rate*el.Seconds()) - sent; due > 0 {
			if err := l.send(due); err != nil {
				return err
			}
			sent += due
		}
		if _, _, err := l.recv(unix.MSG_DONTWAIT); err != nil {
			return err
		}
	}
	// Drain: answers to queries sent in the window still count (for 200 ms).
	for end := time.Now().Add(200 * time.Millisecond); time.Now().Before(end); {
		if _, _, err := l.recv(unix.MSG_DONTWAIT); err != nil {
			return err
		}
	}
	l.res.Lost += int64(l.inflight())
	l.measure = false
	return nil
}

func (l *loader) finish() {
	if l.res.Seconds > 0 {
		l.res.QPS = float64(l.res.OK) / l.res.Seconds
	}
	if len(l.lat) > 0 {
		slices.Sort(l.lat)
		pct := func(p float64) float64 {
			return float64(l.lat[min(len(l.lat)-1, int(p*float64(len(l.lat))))]) / 1e3
		}
		l.res.P50us, l.res.P99us, l.res.P999us = pct(0.50), pct(0.99), pct(0.999)
	}
}

// cpuSeconds returns the CPU time (user+system) process pid has used.
func cpuSeconds(pid int) func() float64 {
	return func() float64 {
		if pid <= 0 {
			return 0
		}
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return 0
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		u, _ := strconv.ParseFloat(f[11], 64)
		k, _ := strconv.ParseFloat(f[12], 64)
		return (u + k) / 100 // USER_HZ
	}
}

func runLoad(a loadArgs) (*loadResult, error) {
	runtime.LockOSThread()
	qs := mix(a.services, a.headless, 4096, 1)
	l, err := newLoader(a.target, qs)
	if err != nil {
		return nil, err
	}
	defer unix.Close(l.fd)
	l.lat = make([]int64, 0, 1<<20)
	cpu := cpuSeconds(a.pid)
	if a.rate > 0 {
		err = l.runPaced(a.rate, a.warm, a.dur, cpu)
	} else {
		err = l.runMax(a.window, a.warm, a.dur, cpu)
	}
	if err != nil {
		return nil, err
	}
	l.finish()
	return &l.res, nil
}
