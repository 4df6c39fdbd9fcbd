package benchenv

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Table collects a driver's output rows: measurement, value, ratio and a last free column
// (its heading is Last, e.g. "target / notes").
type Table struct {
	Last string
	rows [][4]string
}

// Section starts a titled group of rows.
func (t *Table) Section(s string) { t.rows = append(t.rows, [4]string{"§" + s}) }

// Add adds one row.
func (t *Table) Add(what, value, ratio, last string) {
	t.rows = append(t.rows, [4]string{what, value, ratio, last})
}

// Print writes the table to stdout with aligned columns.
func (t *Table) Print() {
	w := [3]int{}
	for _, r := range t.rows {
		if strings.HasPrefix(r[0], "§") {
			continue
		}
		for i := 0; i < 3; i++ {
			w[i] = max(w[i], len([]rune(r[i])))
		}
	}
	pad := func(s string, n int) string { return s + strings.Repeat(" ", max(0, n-len([]rune(s)))) }
	line := strings.Repeat("-", w[0]+w[1]+w[2]+50)
	fmt.Printf("%s  %s  %s  %s\n", pad("measurement", w[0]), pad("value", w[1]), pad("ratio", w[2]), t.Last)
	for _, r := range t.rows {
		if strings.HasPrefix(r[0], "§") {
			fmt.Println(line)
			fmt.Println(strings.TrimPrefix(r[0], "§"))
			continue
		}
		fmt.Printf("%s  %s  %s  %s\n", pad(r[0], w[0]), pad(r[1], w[1]), pad(r[2], w[2]), r[3])
	}
	fmt.Println(line)
}

// Connect is a blocking connect that, when a signal interrupts it (the Go runtime's preemption
// does), waits for the handshake to finish instead of giving up (a socket with a send timeout
// is not restarted after a signal).
func Connect(fd int, sa *unix.SockaddrInet4) error {
	err := unix.Connect(fd, sa)
	if err != unix.EINTR {
		return err
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	for {
		n, err := unix.Poll(pfd, 1000)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return unix.ETIMEDOUT
		}
		break
	}
	soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	if soerr != 0 {
		return unix.Errno(soerr)
	}
	return nil
}

// Median is the median of xs (0 for none).
func Median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// MedianDur is the median of ds (0 for none).
func MedianDur(ds []time.Duration) time.Duration {
	xs := make([]float64, len(ds))
	for i, d := range ds {
		xs[i] = float64(d)
	}
	return time.Duration(Median(xs))
}
