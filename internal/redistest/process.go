package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// readyTimeout bounds how long a freshly started redis-server may take to
// answer PING. It starts in milliseconds; the slack is for loaded CI hosts.
const readyTimeout = 15 * time.Second

// errAddrInUse marks a start that failed because the port (or the cluster
// bus port) was taken, which callers answer by retrying.
var errAddrInUse = errors.New("address already in use")

// process is one run of redis-server. A Server gets a new one per Restart.
type process struct {
	cmd      *exec.Cmd
	done     chan struct{} // closed once cmd.Wait has returned
	log      *os.File
	logStart int64 // offset of this run's output in the shared log file
}

var (
	liveMu sync.Mutex
	// live maps the pid of every process started and not yet reaped to its
	// address. The package's own tests use it to prove nothing leaks.
	live = map[int]string{}
)

// livePIDs returns the pids of all processes started by this package that
// have not exited yet.
func livePIDs() map[int]string {
	liveMu.Lock()
	defer liveMu.Unlock()
	m := make(map[int]string, len(live))
	for pid, addr := range live {
		m[pid] = addr
	}
	return m
}

// start launches s's process and waits until it answers PING. The caller
// holds s.mu. On failure nothing is left running.
func (s *Server) start() error {
	logf, err := os.OpenFile(filepath.Join(s.Dir, logName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	off, err := logf.Seek(0, io.SeekEnd)
	if err != nil {
		_ = logf.Close()
		return err
	}
	cmd := exec.Command(serverBin(), append([]string{s.conf}, s.args...)...)
	cmd.Dir = s.Dir
	// Passing an *os.File lets the child write directly, without a copying
	// goroutine that would outlive the process.
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("redistest: starting %s: %w", serverBin(), err)
	}
	p := &process{cmd: cmd, done: make(chan struct{}), log: logf, logStart: off}
	pid := cmd.Process.Pid
	liveMu.Lock()
	live[pid] = s.Addr
	liveMu.Unlock()
	go func() {
		_ = cmd.Wait()
		liveMu.Lock()
		delete(live, pid)
		liveMu.Unlock()
		close(p.done)
	}()
	if err := p.waitReady(s.Addr); err != nil {
		p.terminate()
		p.stop(stopGrace)
		return err
	}
	s.proc = p
	return nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// waitReady polls until the server at addr answers PING and reports our pid.
// The pid check matters because the port can be grabbed by another test
// binary between pickPort and bind: our process then exits with "Address
// already in use" while the other one answers PING.
func (p *process) waitReady(addr string) error {
	deadline := time.Now().Add(readyTimeout)
	want := "process_id:" + strconv.Itoa(p.pid())
	for {
		select {
		case <-p.done:
			out := p.output()
			if strings.Contains(out, "Address already in use") {
				return fmt.Errorf("redistest: %s: %w", addr, errAddrInUse)
			}
			return fmt.Errorf("redistest: redis-server for %s exited during startup (%v); output:\n%s",
				addr, p.cmd.ProcessState, out)
		default:
		}
		if pong, err := rawCommand(addr, dialTimeout, "PING"); err == nil && pong == "PONG" {
			info, err := rawCommand(addr, dialTimeout, "INFO", "server")
			if err == nil && strings.Contains(info, want+"\r\n") {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redistest: redis-server for %s did not answer PING within %v; output:\n%s",
				addr, readyTimeout, p.output())
		}
		time.Sleep(pollInterval)
	}
}

// output returns what this run wrote to the log, for error messages.
func (p *process) output() string {
	b, err := os.ReadFile(p.log.Name())
	if err != nil || int64(len(b)) < p.logStart {
		return fmt.Sprintf("(log unavailable: %v)", err)
	}
	b = b[p.logStart:]
	const tailMax = 4000
	if len(b) > tailMax {
		b = b[len(b)-tailMax:]
	}
	return string(b)
}

// terminate asks the process to shut down. Errors are ignored because the
// process may already have exited; stop waits and escalates.
func (p *process) terminate() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
}

// stop waits up to grace for the process to exit, then kills it, and waits
// for the kill to be reaped. os.Process signals via a pidfd on modern Linux
// and refuses to signal reaped processes, so a recycled pid is never hit.
func (p *process) stop(grace time.Duration) {
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	_ = p.log.Close()
}

// replyError is an error reply from the server, as opposed to a network
// error.
type replyError string

func (e replyError) Error() string { return string(e) }

// rawCommand sends one command over a fresh connection and returns a simple
// string, integer or bulk reply. It is used where go-redis is unsuitable:
// readiness probes (a go-redis pool backs off after dial errors, which would
// slow polling down to one attempt per second) and SHUTDOWN (no reply).
func rawCommand(addr string, timeout time.Duration, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return "", err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("redistest: empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", replyError(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("redistest: bad bulk header %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("redistest: unsupported reply %q", line)
}
