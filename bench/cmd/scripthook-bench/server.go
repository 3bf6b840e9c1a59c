package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// server is the redis-server the suite measures: one it started itself, or
// the one given with -addr.
type server struct {
	Addr    string
	PID     int    // 0 when unknown: server CPU is then not reported
	Version string // redis_version from INFO server
	Started bool   // true when this program started (and will stop) it

	cmd *exec.Cmd
	dir string
}

// startServer runs a redis-server on a free 127.0.0.1 port in a temporary
// directory, without persistence, and waits until it answers PING.
func startServer(ctx context.Context) (*server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found on PATH (install Redis >= 7, or pass -addr): %w", err)
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s, err := launchServer(ctx, bin, port)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, fmt.Errorf("starting redis-server: %w", lastErr)
}

// freePort asks the kernel for a free loopback port. Never 6379, so a system
// Redis is never touched.
func freePort() (int, error) {
	for i := 0; i < 10; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if port != 6379 {
			return port, nil
		}
	}
	return 0, errors.New("no free port")
}

func launchServer(ctx context.Context, bin string, port int) (*server, error) {
	dir, err := os.MkdirTemp("", "scripthook-bench-redis-")
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "redis.log")
	logf, err := os.Create(logPath)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--daemonize", "no",
		"--logfile", "",
	)
	cmd.Dir = dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		_ = os.RemoveAll(dir)
		return nil, err
	}
	_ = logf.Close()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()

	s := &server{Addr: "127.0.0.1:" + strconv.Itoa(port), PID: cmd.Process.Pid, Started: true, cmd: cmd, dir: dir}
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			logb, _ := os.ReadFile(logPath)
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("redis-server on port %d exited: %s", port, lastLines(logb, 5))
		default:
		}
		if v, err := serverVersion(ctx, s.Addr); err == nil {
			s.Version = v
			return s, nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("redis-server on port %d did not answer within 10s", port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends the server this program started, by its pid, and removes its
// directory. A server given with -addr is left alone.
func (s *server) Stop() {
	if s == nil || !s.Started || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		for i := 0; i < 250; i++ {
			if err := s.cmd.Process.Signal(syscall.Signal(0)); err != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(6 * time.Second):
	}
	_ = s.cmd.Process.Kill()
	_ = os.RemoveAll(s.dir)
	s.cmd = nil
}

// attachServer uses an existing server at addr, which must be on loopback.
// Its pid comes from INFO server; its CPU can be read when it runs on this
// machine (and in this pid namespace).
func attachServer(ctx context.Context, addr string) (*server, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("-addr %q: %w", addr, err)
	}
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("-addr %q: %w", addr, err)
	}
	for _, ip := range ips {
		if !ip.IP.IsLoopback() {
			return nil, fmt.Errorf("-addr %q: only loopback servers are benchmarked (resolved to %s)", addr, ip.IP)
		}
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 2 * time.Second})
	defer rdb.Close()
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return nil, fmt.Errorf("-addr %q: %w", addr, err)
	}
	s := &server{Addr: addr, Version: infoField(info, "redis_version")}
	if pid, err := strconv.Atoi(infoField(info, "process_id")); err == nil {
		if _, _, err := readServerCPU(pid); err == nil {
			s.PID = pid
		}
	}
	return s, nil
}

func serverVersion(ctx context.Context, addr string) (string, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer rdb.Close()
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return "", err
	}
	return infoField(info, "redis_version"), nil
}

func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// readServerCPU returns the CPU time a process has used, in ns: the sum of
// its threads' run times from /proc/PID/task/*/schedstat (nanosecond
// precision), or, where schedstat is missing, utime+stime from
// /proc/PID/stat (10 ms ticks). precise says which one it was.
func readServerCPU(pid int) (ns int64, precise bool, err error) {
	if ns, err := readSchedstat(pid); err == nil {
		return ns, true, nil
	}
	t, err := readProcCPU(pid)
	if err != nil {
		return 0, false, err
	}
	return t * (1e9 / clockTicks), false, nil
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

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It is
// 100 on every mainstream Linux build.
const clockTicks = 100

// readProcCPU returns utime+stime of a process, in clock ticks.
func readProcCPU(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may contain spaces:
	// fields are counted from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed /proc stat times")
	}
	return ut + st, nil
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
