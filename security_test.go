package scripthook

// Security: secrets (arguments, keys, bodies, the AUTH password) never reach
// spans, metrics, logs or error strings the hook creates; and the hook never
// runs a body under a SHA1 it did not compute from that very body, even when
// callers reuse and mutate []byte buffers or pass substrings sharing memory,
// concurrently.
//
//	SCRIPTHOOK_REQUIRE_REDIS=1 go test -race -run 'TestSecurity' -v -timeout 300s .

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// secToken marks every secret; it must appear nowhere the hook exports.
const secToken = "s3cr3t"

// secErrors collects what OpenTelemetry's global error handler is given: the
// hook's only log.
type secErrors struct {
	mu   sync.Mutex
	msgs []string
}

func (e *secErrors) Handle(err error) {
	e.mu.Lock()
	e.msgs = append(e.msgs, err.Error())
	e.mu.Unlock()
}

func secDump(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// Every way a secret could travel: in a body, a key, an argument, the
// password, a server error that echoes a body or an argument, and an
// EVALSHA given a body instead of a SHA1 by mistake. Nothing of it is
// exported, with or without query text; the hook logs nothing; every error
// a caller gets is the one a plain client gets (the hook makes up none).
func TestSecuritySecretsNotExported(t *testing.T) {
	const password = "pw-" + secToken
	srv := redistest.Start(t)
	// Set after start: redistest's readiness probe does not authenticate.
	func() {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr})
		defer c.Close()
		require.NoError(t, c.ConfigSet(context.Background(), "requirepass", password).Err())
	}()
	errs := &secErrors{}
	prev := otel.GetErrorHandler()
	otel.SetErrorHandler(errs)
	defer otel.SetErrorHandler(prev)

	body := "-- body-" + secToken + "\nreturn redis.call('SET', KEYS[1], ARGV[1])"
	keys := []string{"key-" + secToken}
	arg := "arg-" + secToken
	calls := []struct {
		name string
		do   func(ctx context.Context, c *redis.Client) error
	}{
		{"eval", func(ctx context.Context, c *redis.Client) error { return c.Eval(ctx, body, keys, arg).Err() }},
		{"eval []byte", func(ctx context.Context, c *redis.Client) error {
			return c.Do(ctx, "EVAL", []byte(body), 1, keys[0], arg).Err()
		}},
		{"evalsha registered", func(ctx context.Context, c *redis.Client) error {
			return c.EvalSha(ctx, sha1Hex(body), keys, arg).Err()
		}},
		{"evalsha given the body by mistake", func(ctx context.Context, c *redis.Client) error {
			return c.EvalSha(ctx, body, keys, arg).Err()
		}},
		{"evalsha unknown", func(ctx context.Context, c *redis.Client) error {
			return c.EvalSha(ctx, sha1Hex("return '"+secToken+"'"), keys, arg).Err()
		}},
		{"error reply echoing an argument", func(ctx context.Context, c *redis.Client) error {
			return c.Eval(ctx, "return redis.error_reply(ARGV[1])", keys, "ERR "+arg).Err()
		}},
		{"runtime error echoing the body", func(ctx context.Context, c *redis.Client) error {
			return c.Eval(ctx, "return nosuch_"+secToken+".x", keys, arg).Err()
		}},
		{"compile error echoing the body", func(ctx context.Context, c *redis.Client) error {
			return c.Eval(ctx, "return 1 body_"+secToken, keys, arg).Err()
		}},
		{"pipeline", func(ctx context.Context, c *redis.Client) error {
			_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
				p.Eval(ctx, body, keys, arg)
				p.EvalSha(ctx, sha1Hex(body), keys, arg)
				p.EvalSha(ctx, body, keys, arg)
				p.Eval(ctx, "return redis.error_reply(ARGV[1])", keys, "ERR "+arg)
				p.Eval(ctx, "return 1 body_"+secToken, keys, arg)
				return nil
			})
			return err
		}},
		{"transaction", func(ctx context.Context, c *redis.Client) error {
			_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Eval(ctx, body, keys, arg)
				p.Eval(ctx, "return nosuch_"+secToken+".x", keys, arg)
				return nil
			})
			return err
		}},
		{"AUTH through the hook", func(ctx context.Context, c *redis.Client) error {
			return c.Do(ctx, "AUTH", password).Err()
		}},
	}

	for _, queryText := range []bool{false, true} {
		t.Run(fmt.Sprintf("query text %v", queryText), func(t *testing.T) {
			ctx := context.Background()
			spans := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
			reader := sdkmetric.NewManualReader()
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
			defer func() { _ = tp.Shutdown(ctx); _ = mp.Shutdown(ctx) }()
			h := New(WithTracerProvider(tp), WithMeterProvider(mp), WithQueryText(queryText))
			h.Register("registered", body)
			opts := func() *redis.Options {
				return &redis.Options{Addr: srv.Addr, Password: password, MaxRetries: -1}
			}
			rdb, plain, admin := redis.NewClient(opts()), redis.NewClient(opts()), redis.NewClient(opts())
			defer rdb.Close()
			defer plain.Close()
			defer admin.Close()
			rdb.AddHook(h)

			for round := 0; round < 3; round++ { // cold, warm, after a flush
				if round == 2 {
					require.NoError(t, admin.ScriptFlush(ctx).Err())
				}
				for _, c := range calls {
					require.NoError(t, admin.FlushDB(ctx).Err())
					got := c.do(ctx, rdb)
					require.NoError(t, admin.FlushDB(ctx).Err())
					want := c.do(ctx, plain)
					if got == nil && want != nil && strings.HasPrefix(want.Error(), "NOSCRIPT") && c.name == "evalsha registered" {
						continue // the one deliberate difference: the hook repairs it
					}
					assert.Equal(t, fmt.Sprint(want), fmt.Sprint(got), "%s: the caller gets the plain client's error", c.name)
				}
			}

			var rm metricdata.ResourceMetrics
			require.NoError(t, reader.Collect(ctx, &rm))
			var b strings.Builder
			for _, s := range spans.Ended() {
				b.WriteString(s.Name())
				b.WriteString(secDump(t, s.Attributes()))
				b.WriteString(secDump(t, s.Events()))
				b.WriteString(secDump(t, s.Status()))
				b.WriteString(secDump(t, s.Links()))
			}
			b.WriteString(secDump(t, rm))
			exported := b.String()
			if frags := strings.Split(exported, secToken); len(frags) > 1 {
				for _, frag := range frags[:min(len(frags)-1, 5)] {
					t.Logf("leaked after: ...%s", frag[max(0, len(frag)-160):])
				}
			}
			require.NotEmpty(t, spans.Ended())
			assert.NotContains(t, exported, secToken, "a secret reached the telemetry")
			assert.NotContains(t, exported, "redis.call(", "a body reached the telemetry")
			errs.mu.Lock()
			assert.NotContains(t, strings.Join(errs.msgs, "\n"), secToken, "a secret reached the log")
			errs.mu.Unlock()
		})
	}
}

// secSpy sits below scripthook and checks every command it sends: a SHA1
// the hook put on the wire is the SHA1 of the body the caller's command
// carries at that moment (or, for a repaired EVALSHA, the body the hook sends
// is the one whose SHA1 the caller gave), and a SCRIPT LOAD the hook adds is
// followed by an EVALSHA of exactly that body's SHA1.
type secSpy struct {
	mu       sync.Mutex
	problems []string
	checked  int
}

func (s *secSpy) fail(format string, args ...any) {
	s.mu.Lock()
	if len(s.problems) < 10 {
		s.problems = append(s.problems, fmt.Sprintf(format, args...))
	}
	s.mu.Unlock()
}

func argBody(v interface{}) (string, bool) {
	switch b := v.(type) {
	case string:
		return b, true
	case []byte:
		return string(b), true
	}
	return "", false
}

// check looks at one outgoing command (and the next one, for SCRIPT LOAD).
func (s *secSpy) check(cmd, next redis.Cmder) {
	w, ok := cmd.(*rewritten)
	if ok {
		callerArgs := w.Cmder.Args()
		sent := w.args
		name := sent[0].(string)
		switch name {
		case "evalsha", "evalsha_ro":
			// The caller's EVAL went out by SHA1.
			body, ok := argBody(callerArgs[1])
			if !ok || sent[1] != sha1Hex(body) {
				s.fail("EVAL of %.20q sent as EVALSHA %v", body, sent[1])
			}
		case "eval", "eval_ro":
			// The caller's EVALSHA went out with a body: its SHA1 must be
			// the caller's.
			body, _ := argBody(sent[1])
			if sha, _ := normalizeSHA(callerArgs[1].(string)); sha != sha1Hex(body) {
				s.fail("EVALSHA %v repaired with body %.20q", callerArgs[1], body)
			}
		default:
			s.fail("unexpected rewritten command %v", name)
		}
		s.mu.Lock()
		s.checked++
		s.mu.Unlock()
		return
	}
	args := cmd.Args()
	if len(args) == 3 && args[0] == "script" && args[1] == "load" {
		body := args[2].(string)
		if next == nil {
			s.fail("SCRIPT LOAD with nothing after it")
			return
		}
		nargs := next.Args()
		sha, _ := normalizeSHA(fmt.Sprint(nargs[1]))
		if !strings.HasPrefix(next.Name(), "evalsha") || sha != sha1Hex(body) {
			s.fail("SCRIPT LOAD of %.20q followed by %v %v", body, nargs[0], nargs[1])
		}
		s.mu.Lock()
		s.checked++
		s.mu.Unlock()
	}
}

func (s *secSpy) DialHook(next redis.DialHook) redis.DialHook { return next }

func (s *secSpy) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		s.check(cmd, nil)
		return next(ctx, cmd)
	}
}

func (s *secSpy) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for i, c := range cmds {
			var after redis.Cmder
			if i+1 < len(cmds) {
				after = cmds[i+1]
			}
			s.check(c, after)
		}
		return next(ctx, cmds)
	}
}

// 16 goroutines call with bodies that defeat identity shortcuts: a []byte
// buffer per goroutine rewritten in place between calls (same pointer, same
// length, other content), substrings of one shared string (same memory,
// different offsets), and prefixes of one string (same pointer, different
// lengths); with SCRIPT FLUSH now and then, singly and in pipelines. The
// server checks each result (a wrong SHA1 would run another script), and the
// spy checks every SHA1 the hook puts on the wire.
func TestSecuritySHAAlwaysFromTheBody(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	h := New(WithTracing(false), WithCacheSize(16)) // small: evictions too
	spy := &secSpy{}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 16})
	defer rdb.Close()
	rdb.AddHook(h)
	rdb.AddHook(spy) // after scripthook: sees what it sends
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()
	for i := 0; i < 4; i++ {
		h.Register(fmt.Sprint("reg", i), fmt.Sprintf("return 'reg-%d'", i))
	}

	// Bodies "return 'v-NNN'" of one length, back to back in one string.
	const variants = 40
	var all strings.Builder
	for i := 0; i < variants; i++ {
		fmt.Fprintf(&all, "return 'v-%03d'", i)
	}
	shared := all.String()
	width := len(shared) / variants
	// "return 1", "return 12", ... "return 123456789": prefixes of one string.
	digits := "return 123456789"

	const workers, each = 16, 150
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var flusher sync.WaitGroup
	flusher.Add(1)
	go func() {
		defer flusher.Done()
		for {
			select {
			case <-stop:
				return
			default:
				_ = admin.ScriptFlush(ctx).Err()
			}
			select {
			case <-stop:
				return
			case <-time.After(3 * time.Millisecond):
			}
		}
	}()
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			buf := make([]byte, width)
			// call runs one body and checks the reply.
			type call struct {
				args []interface{}
				want interface{}
			}
			next := func(i int) call {
				k := (w*7 + i*13) % variants
				switch i % 5 {
				case 0: // the buffer, rewritten in place
					copy(buf, fmt.Sprintf("return 'v-%03d'", k))
					return call{[]interface{}{"eval", buf, 0}, fmt.Sprintf("v-%03d", k)}
				case 1: // a substring of the shared string
					return call{[]interface{}{"eval", shared[k*width : (k+1)*width], 0}, fmt.Sprintf("v-%03d", k)}
				case 2: // a prefix of another string: same pointer, another length
					n := 8 + k%9
					v, _ := strconv.ParseInt(digits[7:n], 10, 64)
					return call{[]interface{}{"eval_ro", digits[:n], 0}, v}
				case 3: // a registered script by SHA1, upper case sometimes
					r := k % 4
					sha := sha1Hex(fmt.Sprintf("return 'reg-%d'", r))
					if k%2 == 0 {
						sha = strings.ToUpper(sha)
					}
					return call{[]interface{}{"evalsha", sha, 0}, fmt.Sprintf("reg-%d", r)}
				default: // a fresh string with known content
					return call{[]interface{}{"eval", fmt.Sprintf("return 'v-%03d'", k), 0}, fmt.Sprintf("v-%03d", k)}
				}
			}
			for i := 0; i < each; i++ {
				if i%10 == 9 {
					// A pipeline of the next few calls. The buffer is only
					// written before the pipeline is built, once.
					var cs []call
					var cmds []*redis.Cmd
					_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
						for j := 0; j < 5; j++ {
							c := next(i*5 + j + 1)
							if _, isBuf := c.args[1].([]byte); isBuf {
								continue // the buffer changes per call; keep it out of batches
							}
							cs = append(cs, c)
							cmds = append(cmds, p.Do(ctx, c.args...))
						}
						return nil
					})
					if err != nil {
						errs <- err
						return
					}
					for j, cmd := range cmds {
						if fmt.Sprint(cmd.Val()) != fmt.Sprint(cs[j].want) {
							errs <- fmt.Errorf("pipeline: %v returned %v, want %v", cs[j].args[1], cmd.Val(), cs[j].want)
							return
						}
					}
					continue
				}
				c := next(i)
				v, err := rdb.Do(ctx, c.args...).Result()
				if err != nil {
					errs <- err
					return
				}
				if fmt.Sprint(v) != fmt.Sprint(c.want) {
					errs <- fmt.Errorf("%q returned %v, want %v", c.args[1], v, c.want)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(stop)
	flusher.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	spy.mu.Lock()
	defer spy.mu.Unlock()
	assert.Empty(t, spy.problems)
	assert.Greater(t, spy.checked, workers*each/4, "the spy saw rewritten commands")
	t.Logf("%d calls, %d SHA1s and reloads checked on the wire, %d NOSCRIPT repaired", workers*each, spy.checked, h.Stats().NoScriptRepaired)
}
