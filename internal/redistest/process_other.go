//go:build !linux

package redistest

import (
	"errors"
	"syscall"
	"time"
)

// sysProcAttr has no parent-death signal outside Linux; servers are stopped
// by Stop and t.Cleanup only.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// procCPUTime needs /proc, which only Linux provides in the expected format.
func procCPUTime(int) (time.Duration, error) {
	return 0, errors.New("redistest: CPUTime is only supported on Linux")
}
