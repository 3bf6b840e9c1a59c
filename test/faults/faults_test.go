package faults_test

// Server errors at the moment the hook repairs a NOSCRIPT.
//
// The hook believes the server has a script (it ran it), another client
// flushes the script cache, and the next call's EVALSHA meets NOSCRIPT: the
// hook repairs with its own SCRIPT LOAD and an EVALSHA (or, when the load
// fails, the caller's EVAL as written). A trap, a hook added after
// scripthook (so it sees exactly what scripthook sends), turns a fault on
// just before the repair's SCRIPT LOAD or just before its EVALSHA goes out,
// and real servers produce the errors: OOM, READONLY, MISCONF, BUSY,
// NOPERM, and connections killed with CLIENT KILL while a command of the
// repair is in flight. For each:
//
//   - the caller gets what a plain client's EVAL gets with the same fault
//     on (testkit.Render), with the same side effect (the ledger field of
//     the call);
//   - the hook retries nothing: after the EVALSHA that met NOSCRIPT it
//     sends one SCRIPT LOAD and one command, and the server received no
//     more than the trap saw (with go-redis's own retries on, it made as
//     many attempts at the script as for the plain client);
//   - the hook remembers nothing wrong: once the fault is off, the next
//     call succeeds with one command (no NOSCRIPT), and the one after goes
//     by EVALSHA.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// phase is the command of the repair just before which the trap turns the
// fault on.
type phase string

const (
	atLoad phase = "before SCRIPT LOAD"
	atSHA  phase = "before EVALSHA" // the repair's, after its load succeeded
)

// trap is a Spy placed after scripthook that calls on just before the
// command of its phase goes out, once, and records what each command got.
type trap struct {
	*testkit.Spy
	mu       sync.Mutex
	at       phase // "": disarmed
	on       func()
	fired    bool
	loadSeen bool
	names    []string // the script commands sent (EVAL*, SCRIPT *), in order
	errs     []string // testkit.ErrText of what next returned, per command
}

// scriptCommand reports the commands the trap records: go-redis's own
// (HELLO, CLIENT SETINFO when it dials) go through the hooks too.
func scriptCommand(name string) bool {
	return strings.HasPrefix(name, "eval") || strings.HasPrefix(name, "script|")
}

func newTrap() *trap {
	tr := &trap{Spy: &testkit.Spy{}}
	tr.Spy.Before = tr.before
	tr.Spy.After = tr.after
	return tr
}

func (tr *trap) before(_ context.Context, cmds []redis.Cmder) {
	name := testkit.FullName(cmds[0])
	if !scriptCommand(name) {
		return
	}
	tr.mu.Lock()
	tr.names = append(tr.names, name)
	fire := tr.at != "" && !tr.fired &&
		(tr.at == atLoad && name == "script|load" || tr.at == atSHA && name == "evalsha" && tr.loadSeen)
	if name == "script|load" {
		tr.loadSeen = true
	}
	if fire {
		tr.fired = true
	}
	on := tr.on
	tr.mu.Unlock()
	if fire {
		on()
	}
}

func (tr *trap) after(_ context.Context, cmds []redis.Cmder, err error) {
	if !scriptCommand(testkit.FullName(cmds[0])) {
		return
	}
	tr.mu.Lock()
	tr.errs = append(tr.errs, testkit.ErrText(err))
	tr.mu.Unlock()
}

// arm forgets what was recorded and turns on at the phase's command.
func (tr *trap) arm(at phase, on func()) {
	tr.Reset()
	tr.mu.Lock()
	tr.at, tr.on, tr.fired, tr.loadSeen, tr.names, tr.errs = at, on, false, false, nil, nil
	tr.mu.Unlock()
}

// report disarms and returns the commands sent and what each got.
func (tr *trap) report() (names, errs []string, fired bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.at = ""
	return append([]string(nil), tr.names...), append([]string(nil), tr.errs...), tr.fired
}

// fixture is one server with the clients a fault needs, all dialled before
// any fault is on (a connection dialled while the server is busy, or
// paused, would fail or wait in its handshake).
type fixture struct {
	srv *redistest.Server
	// admin turns faults on and off; killer sends the kills staged in the
	// background; runner runs the script that keeps the server busy.
	admin, killer, runner *redis.Client
	// base is what the hooked and the plain client are made from (a user of
	// the fault's own for NOPERM).
	base redis.Options
	// staged is the outcome of what a fault runs in the background (the
	// busy script, a kill), nil when nothing runs.
	staged chan error
}

// stage runs fn in the background until wait.
func (fx *fixture) stage(fn func() error) {
	fx.staged = make(chan error, 1)
	go func() { fx.staged <- fn() }()
}

// wait returns what the staged function returned, once it has (nil if
// nothing was staged).
func (fx *fixture) wait() error {
	if fx.staged == nil {
		return nil
	}
	err := <-fx.staged
	fx.staged = nil
	return err
}

func newFixture(t *testing.T, srv *redistest.Server) *fixture {
	fx := &fixture{srv: srv}
	ctx := context.Background()
	for _, c := range []**redis.Client{&fx.admin, &fx.killer, &fx.runner} {
		*c = testkit.Client(t, srv, &redis.Options{PoolSize: 1, MaxRetries: -1, ClientName: "fixture"})
		require.NoError(t, (*c).Ping(ctx).Err())
	}
	return fx
}

func (fx *fixture) do(t *testing.T, args ...interface{}) {
	t.Helper()
	require.NoError(t, fx.admin.Do(context.Background(), args...).Err(), "%v", args)
}

// clientID returns the id of the one connection of the client named name.
func (fx *fixture) clientID(t *testing.T, name string) string {
	t.Helper()
	id, _, err := fx.client(name)
	require.NoError(t, err)
	return id
}

// client returns the id and flags of the connection of the client named
// name, from CLIENT LIST.
func (fx *fixture) client(name string) (id, flags string, err error) {
	list, err := fx.admin.ClientList(context.Background()).Result()
	if err != nil {
		return "", "", err
	}
	for _, line := range strings.Split(list, "\n") {
		f := map[string]string{}
		for _, kv := range strings.Fields(line) {
			k, v, _ := strings.Cut(kv, "=")
			f[k] = v
		}
		if f["name"] == name {
			return f["id"], f["flags"], nil
		}
	}
	return "", "", fmt.Errorf("no connection named %q in CLIENT LIST", name)
}

// busyLoop keeps the server busy for at most a few seconds without writing
// (so that SCRIPT KILL can stop it). It counts instead of reading TIME,
// which stands still inside a script since Redis 7.2. It goes out as
// EVAL_RO, so that it is not counted with the EVALs under test.
const busyLoop = "local i = 0 while i < tonumber(ARGV[1]) do i = i + 1 end return i"

// fault is a condition of the server that makes it answer a call with an
// error, turned on by the trap.
type fault struct {
	name   string
	args   []string // extra redis-server arguments
	phases []phase
	// retries: also run with go-redis's own retries on (they retry this
	// error below the hook).
	retries bool
	setup   func(t *testing.T, fx *fixture)
	// on turns the fault on for the next command of the client named
	// victim (hooked or plain); off turns it off. plainOn, when set, stages
	// the plain client's side instead of on (see the kill during SCRIPT
	// LOAD).
	on      func(t *testing.T, fx *fixture, p phase, victim string)
	plainOn func(t *testing.T, fx *fixture, victim string)
	off     func(t *testing.T, fx *fixture)
	// loadFails: the fault makes the hook's SCRIPT LOAD fail when it is on
	// before it (so the caller's EVAL goes as written).
	loadFails bool
}

func faults() []fault {
	both := []phase{atLoad, atSHA}
	return []fault{
		{
			// Used memory above maxmemory: scripts that write are refused at
			// their first write (SCRIPT LOAD is not refused).
			name: "OOM", phases: both,
			setup: func(t *testing.T, fx *fixture) {
				fx.do(t, "set", "big", strings.Repeat("x", 1<<20))
			},
			on:  func(t *testing.T, fx *fixture, _ phase, _ string) { fx.do(t, "config", "set", "maxmemory", "1") },
			off: func(t *testing.T, fx *fixture) { fx.do(t, "config", "set", "maxmemory", "0") },
		},
		{
			// A replica (of a primary that is not there) refuses the writes.
			name: "READONLY", phases: both, retries: true,
			on:  func(t *testing.T, fx *fixture, _ phase, _ string) { fx.do(t, "replicaof", "127.0.0.1", "1") },
			off: func(t *testing.T, fx *fixture) { fx.do(t, "replicaof", "no", "one") },
		},
		{
			// The last BGSAVE failed (its file cannot replace a directory of
			// the same name), so writes are refused while
			// stop-writes-on-bgsave-error is on.
			name: "MISCONF", phases: both, args: []string{"--enable-protected-configs", "yes"},
			setup: func(t *testing.T, fx *fixture) {
				require.NoError(t, os.MkdirAll(filepath.Join(fx.srv.Dir, "misconf.rdb", "x"), 0o755))
				fx.do(t, "config", "set", "save", "3600 1")
				// Without save points again the server shuts down at the
				// end without trying to save (which would fail, and make it
				// refuse to exit).
				t.Cleanup(func() { _ = fx.admin.ConfigSet(context.Background(), "save", "").Err() })
				fx.do(t, "config", "set", "dbfilename", "misconf.rdb")
				fx.do(t, "config", "set", "stop-writes-on-bgsave-error", "no")
				fx.do(t, "bgsave")
				require.Eventually(t, func() bool {
					info := fx.admin.Info(context.Background(), "persistence").Val()
					return strings.Contains(info, "rdb_bgsave_in_progress:0") && strings.Contains(info, "rdb_last_bgsave_status:err")
				}, 10*time.Second, 10*time.Millisecond, "BGSAVE never failed")
			},
			on: func(t *testing.T, fx *fixture, _ phase, _ string) {
				fx.do(t, "config", "set", "stop-writes-on-bgsave-error", "yes")
			},
			off: func(t *testing.T, fx *fixture) { fx.do(t, "config", "set", "stop-writes-on-bgsave-error", "no") },
		},
		{
			// Another client's script runs past busy-reply-threshold: every
			// command but a few (SCRIPT KILL) gets BUSY, SCRIPT LOAD too.
			name: "BUSY", phases: both, args: []string{"--busy-reply-threshold", "20"}, loadFails: true,
			on: func(t *testing.T, fx *fixture, _ phase, _ string) {
				ctx := context.Background()
				fx.stage(func() error { return fx.runner.EvalRO(ctx, busyLoop, nil, 50_000_000).Err() })
				require.Eventually(t, func() bool {
					return redis.HasErrorPrefix(fx.admin.Ping(ctx).Err(), "BUSY")
				}, 5*time.Second, 2*time.Millisecond, "the server never got busy")
			},
			off: func(t *testing.T, fx *fixture) {
				require.NoError(t, fx.admin.ScriptKill(context.Background()).Err())
				assert.ErrorContains(t, fx.wait(), "killed", "the busy script was killed")
			},
		},
		{
			// The hook's own command is revoked from the user (the caller's
			// EVAL is not): SCRIPT LOAD before the load, EVALSHA before the
			// repair's EVALSHA.
			name: "NOPERM hook's command", phases: both, loadFails: true,
			setup: aclUser,
			on: func(t *testing.T, fx *fixture, p phase, _ string) {
				cmd := map[phase]string{atLoad: "-script|load", atSHA: "-evalsha"}[p]
				fx.do(t, "acl", "setuser", "app", cmd)
			},
			off: func(t *testing.T, fx *fixture) { fx.do(t, "acl", "setuser", "app", "+@all") },
		},
		{
			// Every script command is revoked: the caller's EVAL too.
			name: "NOPERM scripting", phases: both, loadFails: true,
			setup: aclUser,
			on:    func(t *testing.T, fx *fixture, _ phase, _ string) { fx.do(t, "acl", "setuser", "app", "-@scripting") },
			off:   func(t *testing.T, fx *fixture) { fx.do(t, "acl", "setuser", "app", "+@all") },
		},
		{
			// The repair's EVALSHA is held by CLIENT PAUSE WRITE (it may
			// write) and its connection killed meanwhile: the call never ran,
			// and the caller gets the network error, as a plain EVAL does.
			name: "CLIENT KILL during EVALSHA", phases: []phase{atSHA}, retries: true,
			on: func(t *testing.T, fx *fixture, _ phase, victim string) {
				fx.do(t, "client", "pause", 5000, "write")
				fx.stage(func() error { return fx.killBlocked(victim) })
			},
			off: func(t *testing.T, fx *fixture) {
				require.NoError(t, fx.wait(), "the kill was staged")
				fx.do(t, "client", "unpause")
			},
		},
		{
			// The repair's SCRIPT LOAD is held by CLIENT PAUSE ALL behind a
			// CLIENT KILL of its connection, queued before it: when the pause
			// ends the server runs the kill first, and the load gets a
			// network error. Nothing ran; the hook sends the caller's EVAL
			// as written on a new connection. The plain client's situation
			// is the same kill before its EVAL went out (a pooled connection
			// killed while idle), after which it sends its EVAL on a new
			// connection.
			name: "CLIENT KILL during SCRIPT LOAD", phases: []phase{atLoad}, loadFails: true,
			on: func(t *testing.T, fx *fixture, _ phase, victim string) {
				id := fx.clientID(t, victim)
				// A connection of its own, written to directly: the kill is
				// in the server's socket buffer before the load is written.
				kc, err := net.Dial("tcp", fx.srv.Addr)
				require.NoError(t, err)
				fx.do(t, "client", "pause", 300, "all")
				_, err = fmt.Fprintf(kc, "*4\r\n$6\r\nCLIENT\r\n$4\r\nKILL\r\n$2\r\nID\r\n$%d\r\n%s\r\n", len(id), id)
				require.NoError(t, err)
				fx.stage(func() error {
					defer kc.Close()
					_ = kc.SetReadDeadline(time.Now().Add(10 * time.Second))
					reply, err := bufio.NewReader(kc).ReadString('\n')
					if err == nil && reply != ":1\r\n" {
						err = fmt.Errorf("CLIENT KILL replied %q", reply)
					}
					return err
				})
				time.Sleep(10 * time.Millisecond) // and read by the server, to be safe
			},
			plainOn: func(t *testing.T, fx *fixture, victim string) {
				fx.do(t, "client", "kill", "id", fx.clientID(t, victim))
			},
			off: func(t *testing.T, fx *fixture) { require.NoError(t, fx.wait(), "the kill was staged") },
		},
	}
}

// aclUser creates the user app, who may run everything, for the hooked and
// the plain client.
func aclUser(t *testing.T, fx *fixture) {
	fx.do(t, "acl", "setuser", "app", "reset", "on", ">secret", "~*", "&*", "+@all")
	fx.base.Username, fx.base.Password = "app", "secret"
}

// killBlocked waits for the connection of the client named victim to be
// blocked by CLIENT PAUSE, then kills it and ends the pause.
func (fx *fixture) killBlocked(victim string) error {
	ctx := context.Background()
	deadline := time.Now().Add(5 * time.Second)
	for {
		id, flags, err := fx.client(victim)
		if err != nil {
			return err
		}
		if strings.Contains(flags, "b") {
			if err := fx.killer.Do(ctx, "client", "kill", "id", id).Err(); err != nil {
				return err
			}
			return fx.killer.Do(ctx, "client", "unpause").Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s was never blocked by the pause (flags %q)", victim, flags)
		}
		time.Sleep(time.Millisecond)
	}
}

// scriptAttempts returns how often the server received EVAL or EVALSHA
// since the last reset, run or refused (calls + rejected_calls).
func scriptAttempts(t *testing.T, c *redis.Client) int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	require.NoError(t, err)
	var total int64
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "cmdstat_eval:") && !strings.HasPrefix(line, "cmdstat_evalsha:") {
			continue
		}
		_, rest, _ := strings.Cut(line, ":")
		for _, field := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(field, "=")
			if k == "calls" || k == "rejected_calls" {
				n, err := strconv.ParseInt(v, 10, 64)
				require.NoError(t, err)
				total += n
			}
		}
	}
	return total
}

// Each fault at each phase of the repair: see the file comment.
func TestFaultsDuringRepair(t *testing.T) {
	t.Parallel()
	for _, f := range faults() {
		for _, p := range f.phases {
			retries := []int{-1}
			if f.retries {
				retries = append(retries, 3)
			}
			for _, r := range retries {
				name := fmt.Sprintf("%s/%s", f.name, p)
				if r >= 0 {
					name += "/go-redis retries"
				}
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					faultDuringRepair(t, f, p, r)
				})
			}
		}
	}
}

func faultDuringRepair(t *testing.T, f fault, p phase, retries int) {
	ctx := context.Background()
	fx := newFixture(t, redistest.Start(t, f.args...))
	if f.setup != nil {
		f.setup(t, fx)
	}
	mk := func(name string) *redis.Client {
		o := fx.base
		o.PoolSize, o.MaxRetries, o.ClientName = 1, retries, name
		c := testkit.Client(t, fx.srv, &o)
		require.NoError(t, c.Ping(ctx).Err())
		return c
	}
	h := scripthook.New(scripthook.WithTracing(false))
	tr := newTrap()
	hooked, plain := mk("hooked"), mk("plain")
	hooked.AddHook(h)
	hooked.AddHook(tr) // after scripthook: it sees the wire
	l := testkit.NewLedger()
	call := func(rdb *redis.Client, tag, id string) *redis.Cmd {
		cmd := rdb.Eval(ctx, testkit.LedgerScript, []string{testkit.LedgerKey(tag)}, id)
		l.RecordCmd(t, tag, id, cmd)
		return cmd
	}

	// The hook learns the script is on the server; another client flushes
	// it.
	tr.arm("", nil)
	for i := 0; i < 2; i++ {
		require.NoError(t, call(hooked, "warm", testkit.ID(0, i)).Err())
	}
	warm, _, _ := tr.report()
	require.Equal(t, []string{"eval", "evalsha"}, warm, "the hook runs the script by SHA1")
	require.NoError(t, fx.admin.ScriptFlush(ctx).Err())

	// The hooked call, the fault turned on by the trap.
	require.NoError(t, fx.admin.ConfigResetStat(ctx).Err())
	tr.arm(p, func() { f.on(t, fx, p, "hooked") })
	got := call(hooked, "hooked", "faulted")
	sent, errs, fired := tr.report()
	f.off(t, fx)
	require.True(t, fired, "the repair reached the trap %s; it sent %v, which got %q", p, sent, errs)
	hookedAttempts := scriptAttempts(t, fx.admin)

	// A plain client's EVAL with the same fault on.
	require.NoError(t, fx.admin.ConfigResetStat(ctx).Err())
	if f.plainOn != nil {
		f.plainOn(t, fx, "plain")
	} else {
		f.on(t, fx, p, "plain")
	}
	want := call(plain, "plain", "faulted")
	f.off(t, fx)
	plainAttempts := scriptAttempts(t, fx.admin)
	t.Logf("caller got %q; hook sent %v, which got %q; plain EVAL got %q", testkit.Render(got), sent, errs, testkit.Render(want))

	assert.Equal(t, testkit.Render(want), testkit.Render(got), "what a plain EVAL gets")
	assert.Equal(t, fx.admin.HGet(ctx, testkit.LedgerKey("plain"), "faulted").Val(),
		fx.admin.HGet(ctx, testkit.LedgerKey("hooked"), "faulted").Val(), "the side effect of a plain EVAL")

	// No retry loop: the EVALSHA that met NOSCRIPT, one SCRIPT LOAD, one
	// command, whose reply the caller got; but when the server refuses
	// the hook's EVALSHA (NOPERM: nothing ran), the caller's EVAL as
	// written, once.
	denied := len(sent) == 4 && sent[2] == "evalsha" && strings.HasPrefix(errs[2], "NOPERM") && sent[3] == "eval"
	if denied {
		sent, errs = append(sent[:2:2], sent[3]), append(errs[:2:2], errs[3])
		hookedAttempts--
	}
	require.Len(t, sent, 3, "sent %v", sent)
	assert.Equal(t, "evalsha", sent[0])
	assert.Equal(t, testkit.NoScriptText[:8], errs[0][:min(8, len(errs[0]))], "the first EVALSHA met NOSCRIPT")
	assert.Equal(t, "script|load", sent[1])
	loadFailed := errs[1] != "<nil>"
	if p == atLoad {
		assert.Equal(t, f.loadFails, loadFailed, "the fault makes SCRIPT LOAD fail: %s", errs[1])
	}
	if loadFailed {
		assert.Equal(t, "eval", sent[2], "a failed load sends the caller's EVAL as written")
	} else if !denied {
		assert.Equal(t, "evalsha", sent[2], "a load that worked is followed by EVALSHA")
	}
	assert.Equal(t, errs[2], testkit.ErrText(got.Err()), "the caller got the reply to the last command unchanged")
	// As many attempts at the script reached the server as for the plain
	// client (go-redis's own retries, when on, retry below the hook), after
	// the EVALSHA that met NOSCRIPT. (A command killed before it ran is not
	// counted.)
	assert.Equal(t, plainAttempts, hookedAttempts-1, "attempts at the script: as for a plain client")
	if retries < 0 {
		assert.LessOrEqual(t, hookedAttempts, int64(2), "the server received no more script commands than the trap saw")
	}

	// The fault is off: nothing wrong was remembered.
	tr.arm("", nil)
	require.NoError(t, call(hooked, "hooked", "next-1").Err())
	next, nextErrs, _ := tr.report()
	assert.Len(t, next, 1, "the next call is one command: %v got %q", next, nextErrs)
	tr.arm("", nil)
	require.NoError(t, call(hooked, "hooked", "next-2").Err())
	next, _, _ = tr.report()
	if denied {
		// The server refused the hook's EVALSHA: it sends what the
		// caller sent on that server until a reconnect asks again.
		assert.Equal(t, []string{"eval"}, next, "then as written")
	} else {
		assert.Equal(t, []string{"evalsha"}, next, "then by SHA1")
	}
	assert.Zero(t, h.Stats().NoScriptPassed, "no NOSCRIPT reached the caller")

	v := l.Verify(t, fx.admin)
	t.Logf("ledger: %+v", v)
}
