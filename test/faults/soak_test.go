package faults_test

// Soak tests: 16 goroutines mix single calls, pipelines and transactions
// through the hook while the server's script cache is flushed every few
// milliseconds and its clients are killed now and then (TestSoakFlushAndKill),
// or while the server is shut down and restarted on the same port
// (TestSoakRestart).
//
// Exactly once: every script call is a ledger call (testkit.LedgerScript,
// padded into scripts of several sizes), filed in a testkit.Ledger, which
// proves at the end that every call that succeeded ran once, every call
// refused ran never, and every reply went to its own caller.
//
// go-redis's own retries are switched off (MaxRetries: -1), so every
// network failure reaches the caller instead of being retried below the
// hook (where a retried EVAL whose reply was lost would run twice, with or
// without the hook). A call that returned a network error may or may not
// have run; the ledger only checks it ran at most once. Every other error
// fails the test; NOSCRIPT in particular must never reach a caller (strict
// pipeline mode, the default), except in the one case TestSoakFlushAndKill
// explains.
//
// The default run is short. For a longer soak:
//
//	SCRIPTHOOK_REQUIRE_REDIS=1 go test -race -run 'TestSoak' -soak 60s -v -timeout 900s ./test/faults/
//
// Each test logs one line starting with "FAULT-TABLE |" with its figures.

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

var soakDuration = flag.Duration("soak", 3*time.Second, "how long each soak test (TestSoak*) runs")

const soakWorkers = 16

// soakBody is the ledger script with a comment: pad makes distinct scripts
// of different sizes (different SHA1s, bodies that span several server
// reads) that all count like testkit.LedgerScript.
func soakBody(tag string, pad int) string {
	return fmt.Sprintf("-- %s %s\n%s", tag, strings.Repeat("x", pad), testkit.LedgerScript)
}

// soakBodies are small enough that every batch of the workload (at most
// one body of each, plus SHA1s) reaches the server in one read.
var soakBodies = []string{
	soakBody("small", 0),
	soakBody("4k", 4<<10),
}

// soakLargeBodies add a body larger than the 16 KB Redis reads at a time, so
// that batches carrying it span several reads, between which the server
// serves other clients, such as one sending SCRIPT FLUSH.
var soakLargeBodies = append([]string{soakBody("20k", 20<<10)}, soakBodies...)

// soakRO reads without writing, by EVAL_RO.
const soakRO = "return redis.call('HGET', KEYS[1], ARGV[1])"

// soakRegistered is run by EVALSHA only: the hook repairs its NOSCRIPT.
var soakRegistered = soakBody("registered", 100)

// soakTally is what the callers saw beyond the ledger: the mix of calls and
// the error replies, by kind.
type soakTally struct {
	singles, batches, txs atomic.Int64
	noScript              atomic.Int64
	// noScriptOutsidePipelines counts NOSCRIPT in single calls and
	// transactions: always zero.
	noScriptOutsidePipelines atomic.Int64
	// okIn is, per worker, the last ledger epoch in which one of its calls
	// began and succeeded (-1: none).
	okIn [soakWorkers]atomic.Int64

	mu     sync.Mutex
	other  int
	others []string // the first unexpected errors, for the failure message
}

// file records one call in the ledger and classifies its error.
func (st *soakTally) file(t *testing.T, l *testkit.Ledger, w, epoch int, kind, id string, v interface{}, err error) bool {
	tag := soakTag(w)
	o := l.RecordIn(t, epoch, tag, id, v, err)
	switch {
	case o == testkit.Ran:
		// The ledger checks the id; the count proves it ran once (the hash
		// may have lost an earlier run in a restart, the reply cannot).
		if reply, _ := v.([]interface{}); len(reply) != 2 || reply[0] != int64(1) {
			t.Errorf("call %s/%s got %#v: it ran more than once", tag, id, v)
		}
		for e := st.okIn[w].Load(); e < int64(epoch) && !st.okIn[w].CompareAndSwap(e, int64(epoch)); e = st.okIn[w].Load() {
		}
	case o == testkit.Refused && redis.HasErrorPrefix(err, "NOSCRIPT"):
		st.noScript.Add(1)
		if kind != "pipeline" {
			st.noScriptOutsidePipelines.Add(1)
		}
	case o == testkit.Refused:
		st.mu.Lock()
		st.other++
		if len(st.others) < 20 {
			st.others = append(st.others, fmt.Sprintf("%s/%s (%s): %v", tag, id, kind, err))
		}
		st.mu.Unlock()
	}
	return o == testkit.Unknown
}

func soakTag(w int) string { return fmt.Sprint("soak", w) }

// soakCmdable is a client or a pipeline.
type soakCmdable interface {
	Eval(ctx context.Context, script string, keys []string, args ...interface{}) *redis.Cmd
	EvalSha(ctx context.Context, sha1 string, keys []string, args ...interface{}) *redis.Cmd
	EvalRO(ctx context.Context, script string, keys []string, args ...interface{}) *redis.Cmd
	HIncrBy(ctx context.Context, key, field string, incr int64) *redis.IntCmd
	Do(ctx context.Context, args ...interface{}) *redis.Cmd
}

// soakWorker runs calls until stop is closed.
func soakWorker(t *testing.T, w int, rdb *redis.Client, bodies []string, stop <-chan struct{}, l *testkit.Ledger, st *soakTally) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(uint64(w), 42))
	key := testkit.LedgerKey(soakTag(w))
	regSHA := testkit.SHA1(soakRegistered)
	seq := 0
	type pending struct {
		id  string
		cmd *redis.Cmd
	}
	// queue adds one ledger call to p (or runs it when p is the client).
	queue := func(p soakCmdable) pending {
		seq++
		id := testkit.ID(w, seq)
		var cmd *redis.Cmd
		switch r := rng.IntN(10); {
		case r < 6:
			cmd = p.Eval(ctx, bodies[rng.IntN(len(bodies))], []string{key}, id)
		case r < 8:
			cmd = p.EvalSha(ctx, regSHA, []string{key}, id)
		default:
			// Do, upper case, []byte body: another way in.
			cmd = p.Do(ctx, "EVAL", []byte(soakBodies[0]), 1, key, id)
		}
		return pending{id, cmd}
	}
	for {
		select {
		case <-stop:
			return
		default:
		}
		epoch := l.Epoch()
		var calls []pending
		netFailure := false
		kind := "single"
		switch r := rng.IntN(10); {
		case r < 5:
			st.singles.Add(1)
			calls = append(calls, queue(rdb))
		default:
			tx := r >= 8
			n := 2 + rng.IntN(11)
			kind = "pipeline"
			if tx {
				kind, n = "tx", 2+rng.IntN(5)
				st.txs.Add(1)
			} else {
				st.batches.Add(1)
			}
			fn := func(p redis.Pipeliner) error {
				for i := 0; i < n; i++ {
					if rng.IntN(4) == 0 {
						p.EvalRO(ctx, soakRO, []string{key}, "none")
						p.HIncrBy(ctx, key+":plain", "n", 1)
					}
					calls = append(calls, queue(p))
				}
				return nil
			}
			var err error
			if tx {
				_, err = rdb.TxPipelined(ctx, fn)
			} else {
				_, err = rdb.Pipelined(ctx, fn)
			}
			netFailure = testkit.IsNetErr(err)
		}
		for _, c := range calls {
			v, err := c.cmd.Result()
			if st.file(t, l, w, epoch, kind, c.id, v, err) {
				netFailure = true
			}
		}
		if netFailure {
			time.Sleep(time.Millisecond) // the server may be down: do not spin
		}
	}
}

// soakRun runs the workers until the returned stop function is called,
// which waits for them.
func soakRun(t *testing.T, rdb *redis.Client, bodies []string, l *testkit.Ledger, st *soakTally) (stop func()) {
	for w := range st.okIn {
		st.okIn[w].Store(-1)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < soakWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			soakWorker(t, w, rdb, bodies, done, l, st)
		}()
	}
	return func() {
		close(done)
		wg.Wait()
	}
}

// soakClient is the client under test: the hook with tracing and metrics
// recording (into an SDK that keeps nothing), strict pipelines, no go-redis
// retries.
func soakClient(t *testing.T, srv *redistest.Server) (*redis.Client, *scripthook.Hook) {
	tp := sdktrace.NewTracerProvider() // records spans, exports none
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	h := scripthook.New(scripthook.WithTracerProvider(tp), scripthook.WithMeterProvider(mp))
	h.Register("soak-registered", soakRegistered)
	rdb := testkit.Client(t, srv, &redis.Options{PoolSize: 32, MaxRetries: -1})
	rdb.AddHook(h)
	return rdb, h
}

// soakReport verifies the ledger, logs the figures and fails on what must
// never happen.
func soakReport(t *testing.T, fault string, l *testkit.Ledger, admin *redis.Client, st *soakTally, d time.Duration, h *scripthook.Hook, extra string, noScriptExpected bool) {
	t.Helper()
	ran, unknown, refused := l.Counts()
	v := l.Verify(t, admin)
	st.mu.Lock()
	other, others := st.other, st.others
	st.mu.Unlock()
	hs := h.Stats()
	t.Logf("FAULT-TABLE | %s | %d script calls (%d single, %d pipelines, %d transactions) | caller errors: %d network (%d applied, %d not, %d lost with the data), %d other, %d NOSCRIPT | %d duplicate executions | %v | hook: %d NOSCRIPT repaired, %d bodies sent, %d rewritten%s",
		fault, ran+unknown+refused, st.singles.Load(), st.batches.Load(), st.txs.Load(),
		unknown, v.UnknownRan, v.UnknownLost, unknown-v.UnknownRan-v.UnknownLost, other,
		st.noScript.Load(), v.Twice, d.Round(100*time.Millisecond),
		hs.NoScriptRepaired, hs.BodiesSent, hs.Rewritten, extra)
	if !noScriptExpected {
		assert.Zero(t, st.noScript.Load(), "NOSCRIPT reached a caller")
	}
	assert.Zero(t, st.noScriptOutsidePipelines.Load(), "NOSCRIPT reached a single call or a transaction")
	assert.Zero(t, other, "unexpected errors: %v", others)
	assert.Greater(t, ran, soakWorkers, "calls succeeded")
}

// Script cache flushed every 1-4 ms and clients killed every 50-150 ms while
// 16 goroutines call: no NOSCRIPT, no other error but network errors from
// the kills, and every effect exactly once.
//
// The second part adds a 20 KB script, so that some pipelines span several
// server reads. Between two reads of one pipeline the server may run another
// client's SCRIPT FLUSH, after the body went out and before a use by SHA1 in
// the same pipeline: that use gets NOSCRIPT. Strict mode cannot repair it
// (re-running it after the rest of the pipeline would change the order);
// the ledger shows that such calls did not run, so the caller may retry
// them, and the test counts them. (Transactions are immune: EXEC runs them
// at once.)
func TestSoakFlushAndKill(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		bodies   []string
		noScript bool
	}{
		{"batches within one read", soakBodies, false},
		{"batches spanning reads", soakLargeBodies, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			soakFlushAndKill(t, tc.bodies, tc.noScript)
		})
	}
}

func soakFlushAndKill(t *testing.T, bodies []string, noScriptExpected bool) {
	srv := redistest.Start(t)
	ctx := context.Background()
	rdb, h := soakClient(t, srv)
	admin := testkit.Client(t, srv, nil)
	// The killer's own connection is spared by CLIENT KILL (SKIPME yes).
	killer := testkit.Client(t, srv, &redis.Options{PoolSize: 1})
	require.NoError(t, admin.FlushAll(ctx).Err())

	l, st := testkit.NewLedger(), &soakTally{}
	var flushes, kills, killed atomic.Int64
	stopFlushes := testkit.Every(1, 1, 4, func() {
		if admin.ScriptFlush(ctx).Err() == nil {
			flushes.Add(1)
		}
	})
	stopKills := testkit.Every(3, 50, 100, func() {
		if n, err := killer.ClientKillByFilter(ctx, "TYPE", "normal").Result(); err == nil {
			kills.Add(1)
			killed.Add(n)
		}
	})
	start := time.Now()
	stop := soakRun(t, rdb, bodies, l, st)
	time.Sleep(*soakDuration)
	stop()
	stopFlushes()
	stopKills()
	elapsed := time.Since(start)

	fault := "SCRIPT FLUSH every 1-4 ms + CLIENT KILL TYPE normal every 50-150 ms"
	if noScriptExpected {
		fault += ", with 20 KB bodies"
	}
	soakReport(t, fault, l, admin, st, elapsed, h,
		fmt.Sprintf(" | %d flushes, %d kills (%d connections)", flushes.Load(), kills.Load(), killed.Load()), noScriptExpected)
	assert.Positive(t, flushes.Load(), "the flusher ran")
	assert.Positive(t, kills.Load(), "the killer ran")
}

// The server is shut down (SHUTDOWN NOSAVE) and restarted on the same port,
// twice (once every 5 s in a longer soak), while 16 goroutines call. Calls
// fail only with network errors while it is down, resume afterwards, and
// stay exactly-once; the scripts the restarted server no longer has are
// reloaded without a NOSCRIPT reaching anyone.
func TestSoakRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb, h := soakClient(t, srv)
	admin := testkit.Client(t, srv, nil)

	l, st := testkit.NewLedger(), &soakTally{}
	start := time.Now()
	stop := soakRun(t, rdb, soakBodies, l, st)
	restarts := max(2, int(*soakDuration/(5*time.Second))) // one every 5 s in a long soak
	var downtime time.Duration
	for i := 0; i < restarts; i++ {
		time.Sleep(*soakDuration / time.Duration(restarts+1))
		t0 := time.Now()
		require.NoError(t, srv.Restart())
		downtime += time.Since(t0)
		// The data of every call begun so far may be gone with the old
		// process; the calls begun from now on run on the new one.
		l.DataLost()
	}
	time.Sleep(*soakDuration / time.Duration(restarts+1))
	stop()
	elapsed := time.Since(start)

	for w := range st.okIn {
		assert.Equal(t, int64(restarts), st.okIn[w].Load(), "worker %d's calls resumed after the last restart", w)
	}
	soakReport(t, fmt.Sprintf("SHUTDOWN NOSAVE + restart on the same port (%dx)", restarts), l, admin, st, elapsed, h,
		fmt.Sprintf(" | server down %v in total", downtime.Round(time.Millisecond)), false)
}
