package main

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/scripthook/scripthook/internal/redistest"
)

// readServerCPU returns the CPU time a process has used, in ns: the sum of
// its threads' run times from /proc/PID/task/*/schedstat (nanosecond
// precision), or, where schedstat is missing, utime+stime from
// /proc/PID/stat (10 ms ticks, via redistest.ProcessCPUTime). precise says
// which one it was.
func readServerCPU(pid int) (ns int64, precise bool, err error) {
	if ns, err := readSchedstat(pid); err == nil {
		return ns, true, nil
	}
	d, err := redistest.ProcessCPUTime(pid)
	if err != nil {
		return 0, false, err
	}
	return d.Nanoseconds(), false, nil
}

func readSchedstat(pid int) (int64, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, e := range ents {
		b, err := os.ReadFile(dir + "/" + e.Name() + "/schedstat")
		if err != nil {
			continue // a thread that just exited
		}
		f := strings.Fields(string(b))
		if len(f) < 1 {
			return 0, errors.New("malformed schedstat")
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	if sum == 0 {
		return 0, errors.New("schedstat reports no run time")
	}
	return sum, nil
}

// clockTicks is USER_HZ, the unit of /proc/stat. It is 100 on every
// mainstream Linux build.
const clockTicks = 100

// readSystemBusy returns the CPU time all processes of the machine have
// used (user, nice, system and steal from the "cpu" line of /proc/stat), in
// ns. Interrupt time is left out: loopback traffic of this benchmark is
// partly accounted there.
func readSystemBusy() (int64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, errors.New("malformed /proc/stat")
	}
	var busy int64
	for _, i := range []int{1, 2, 3, 8} { // user nice system steal
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, err
		}
		busy += v
	}
	return busy * (1e9 / clockTicks), nil
}

// processCPU is this program's user plus system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
