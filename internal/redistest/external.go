package redistest

import (
	"strconv"
	"strings"
	"time"
)

// Helpers for programs that measure a server they did not start with this
// package (the benchmark suite's -addr mode) or that are not tests at all.
// NewServer and Stop are the non-testing way to run a server.

// InfoField returns the value of "field:value" in an INFO reply, or "".
func InfoField(info, field string) string { return infoField(info, field) }

// VersionFromInfo reads a running server's name and version from its INFO
// server section: Valkey reports valkey_version (its redis_version is the
// Redis version it is compatible with), Redis redis_version.
func VersionFromInfo(info string) Version {
	v := Version{Name: "Redis"}
	s := infoField(info, "redis_version")
	if vk := infoField(info, "valkey_version"); vk != "" || strings.EqualFold(infoField(info, "server_name"), "valkey") {
		v.Name = "Valkey"
		if vk != "" {
			s = vk
		}
	}
	parts := strings.SplitN(s, ".", 3)
	for i, p := range parts {
		n, _ := strconv.Atoi(p)
		switch i {
		case 0:
			v.Major = n
		case 1:
			v.Minor = n
		case 2:
			v.Patch = n
		}
	}
	return v
}

// ProcessCPUTime returns the user plus system CPU time process pid has used,
// from /proc/<pid>/stat (10 ms ticks), as Server.CPUTime does for a server
// of this package. It only works on Linux.
func ProcessCPUTime(pid int) (time.Duration, error) { return procCPUTime(pid) }
