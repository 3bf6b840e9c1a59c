package redistest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// BinEnv names a directory that holds the server binaries to test against:
// redis-server and redis-cli, or valkey-server and valkey-cli (a build of
// any Redis or Valkey version). Unset: PATH.
const BinEnv = "SCRIPTHOOK_REDIS_BIN"

// binaries are the server and cli programs in use, found once.
var binaries struct {
	once        sync.Once
	server, cli string // "" when not found
	version     Version
}

// Version is a server program's name and version.
type Version struct {
	// Name is "Redis" or "Valkey".
	Name string
	// Major, Minor and Patch are the version's numbers (Redis 8.0 milestone
	// builds call themselves 7.9.x).
	Major, Minor, Patch int
}

// String is "Redis 7.4.1".
func (v Version) String() string {
	return fmt.Sprintf("%s %d.%d.%d", v.Name, v.Major, v.Minor, v.Patch)
}

// AtLeast reports whether the version is major.minor or newer.
func (v Version) AtLeast(major, minor int) bool {
	return v.Major > major || v.Major == major && v.Minor >= minor
}

// EvictsScripts reports a server that evicts the scripts EVAL creates from
// an LRU of 500 (Redis 7.4+, Valkey 8+).
func (v Version) EvictsScripts() bool {
	if v.Name == "Valkey" {
		return v.AtLeast(8, 0)
	}
	return v.AtLeast(7, 4)
}

// FrozenTime reports a server on which TIME inside a script returns the
// same value for the whole script (Redis 7.2+, every Valkey): a slow test
// script must count, not watch the clock.
func (v Version) FrozenTime() bool { return v.Name == "Valkey" || v.AtLeast(7, 2) }

// find locates the binaries in BinEnv's directory or on PATH.
func find() {
	binaries.once.Do(func() {
		dir := os.Getenv(BinEnv)
		look := func(name string) string {
			if dir != "" {
				p := filepath.Join(dir, name)
				if st, err := os.Stat(p); err == nil && !st.IsDir() {
					return p
				}
				return ""
			}
			p, err := exec.LookPath(name)
			if err != nil {
				return ""
			}
			return p
		}
		for _, prefix := range []string{"redis", "valkey"} {
			if s := look(prefix + "-server"); s != "" {
				binaries.server, binaries.cli = s, look(prefix+"-cli")
				break
			}
		}
		if binaries.server != "" {
			binaries.version = probeVersion(binaries.server)
		}
	})
}

var versionRE = regexp.MustCompile(`v=(\d+)\.(\d+)\.(\d+)`)

// probeVersion asks a server program for its version.
func probeVersion(bin string) Version {
	out, err := exec.Command(bin, "--version").Output()
	v := Version{Name: "Redis"}
	if strings.Contains(strings.ToLower(filepath.Base(bin)), "valkey") || strings.Contains(string(out), "Valkey") {
		v.Name = "Valkey"
	}
	if err != nil {
		return v
	}
	if m := versionRE.FindStringSubmatch(string(out)); m != nil {
		v.Major, _ = strconv.Atoi(m[1])
		v.Minor, _ = strconv.Atoi(m[2])
		v.Patch, _ = strconv.Atoi(m[3])
	}
	return v
}

// ServerVersion returns the version of the server program the tests use.
func ServerVersion() Version {
	find()
	return binaries.version
}

func serverBin() string { find(); return binaries.server }

func cliBin() string { find(); return binaries.cli }
