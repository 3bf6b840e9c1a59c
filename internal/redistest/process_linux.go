package redistest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is the kernel's USER_HZ, the unit of utime/stime in
// /proc/<pid>/stat. It is 100 on every mainstream Linux architecture, and Go
// has no portable sysconf(_SC_CLK_TCK) without cgo, so it is hardcoded.
const clockTicks = 100

// sysProcAttr makes the kernel SIGKILL the server when the thread that
// started it dies. That cleans up after a test binary killed by a -timeout
// panic or a signal, when no t.Cleanup runs. The Go runtime only exits
// threads of goroutines that exit while locked with runtime.LockOSThread, so
// do not start servers from such a goroutine.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// procCPUTime returns utime+stime of pid from /proc/<pid>/stat.
func procCPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may contain spaces,
	// so fields are counted from the last ')'. After it come field 3
	// (state) onwards; utime and stime are fields 14 and 15.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("redistest: malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	const utimeIdx, stimeIdx = 14 - 3, 15 - 3
	if len(f) <= stimeIdx {
		return 0, fmt.Errorf("redistest: short /proc/%d/stat", pid)
	}
	utime, err := strconv.ParseInt(f[utimeIdx], 10, 64)
	if err != nil {
		return 0, err
	}
	stime, err := strconv.ParseInt(f[stimeIdx], 10, 64)
	if err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}
