package security_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// wantKey carries, in a call's context, the bodies the caller's commands
// hold at the moment of the call, for the wire check below the hook.
type wantKey struct{}

// wireCheck sits below scripthook and checks every script command the hook
// puts on the wire against the bodies the caller's commands held: an EVAL
// carries one of them, an EVALSHA names the SHA1 of one of them, a SCRIPT
// LOAD loads one of them. The hook's probes (EVALSHA of forty zeros, SCRIPT
// LOAD "(") name no script and are let through.
type wireCheck struct {
	mu       sync.Mutex
	problems []string
	checked  atomic.Int64
}

const zeroSHA = "0000000000000000000000000000000000000000"

func (w *wireCheck) fail(format string, args ...any) {
	w.mu.Lock()
	if len(w.problems) < 10 {
		w.problems = append(w.problems, fmt.Sprintf(format, args...))
	}
	w.mu.Unlock()
}

func text(v interface{}) string {
	switch b := v.(type) {
	case string:
		return b
	case []byte:
		return string(b)
	}
	return fmt.Sprint(v)
}

func (w *wireCheck) check(ctx context.Context, cmds []redis.Cmder) {
	want, _ := ctx.Value(wantKey{}).([]string)
	for _, c := range cmds {
		args := c.Args()
		has := func(pred func(body string) bool) bool {
			for _, b := range want {
				if pred(b) {
					return true
				}
			}
			return false
		}
		switch name := testkit.FullName(c); name {
		case "eval", "eval_ro":
			body := text(args[1])
			if !has(func(b string) bool { return b == body }) {
				w.fail("%s of %.40q, which no caller's command held", name, body)
			}
		case "evalsha", "evalsha_ro":
			sha := strings.ToLower(text(args[1]))
			if sha == zeroSHA {
				continue
			}
			if !has(func(b string) bool { return testkit.SHA1(b) == sha }) {
				w.fail("%s %s, the SHA1 of no body a caller's command held (%d bodies)", name, sha, len(want))
			}
		case "script|load":
			body := text(args[2])
			if body == "(" {
				continue
			}
			if !has(func(b string) bool { return b == body }) {
				w.fail("SCRIPT LOAD of %.40q, which no caller's command held", body)
			}
		default:
			continue
		}
		w.checked.Add(1)
	}
}

func (w *wireCheck) DialHook(next redis.DialHook) redis.DialHook { return next }

func (w *wireCheck) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		w.check(ctx, []redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}

func (w *wireCheck) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		w.check(ctx, cmds)
		return next(ctx, cmds)
	}
}

// shaCall is one call and the reply its body gives.
type shaCall struct {
	args []interface{}
	body string // what the command holds now (a []byte is copied here)
	want string // the reply, rendered with fmt.Sprint
}

// 16 goroutines call with bodies that defeat identity shortcuts: a []byte
// buffer per goroutine rewritten in place between calls (same address, same
// length, other content), substrings of one shared string (one memory,
// different offsets), prefixes of one string (one address, different
// lengths), registered scripts by SHA1 in either case, and fresh strings of
// known content; singly and in pipelines, with a cache of 16 (evictions
// all the time) and another client's SCRIPT FLUSH every few milliseconds
// (repairs). Every reply is that body's own (a wrong SHA1 would run another
// script or none), and every script command on the wire carries, names or
// loads a body the caller's command held at that moment.
func TestSecuritySHAAlwaysFromTheBody(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t)
	h := scripthook.New(scripthook.WithTracing(false), scripthook.WithCacheSize(16))
	wire := &wireCheck{}
	r := testkit.RigOn(t, srv, &redis.Options{PoolSize: 16}, nil)
	require.NoError(t, h.Install(r.Hooked))
	r.Hooked.AddHook(wire) // after scripthook: it sees what the hook sends

	// Every body is longer than a SHA1, so that the hook sends it by SHA1
	// once the server has it.
	const filler = " -- padding that makes the body longer than a SHA1"
	reg := func(i int) string { return fmt.Sprintf("return 'reg-%d'%s", i, filler) }
	for i := 0; i < 4; i++ {
		h.Register(fmt.Sprint("reg", i), reg(i))
	}
	variant := func(k int) string { return fmt.Sprintf("return 'v-%03d'%s", k, filler) }
	const variants = 40
	var all strings.Builder
	for k := 0; k < variants; k++ {
		all.WriteString(variant(k))
	}
	shared := all.String()
	width := len(variant(0))
	// "...\nreturn 1", "...\nreturn 12", ... "...\nreturn 123456789":
	// prefixes of one string, each its own script.
	digits := "--" + filler + "\nreturn 123456789"
	digitsAt := strings.Index(digits, "return ") + len("return ")

	const workers, each = 16, 150
	stopFlushing := testkit.Every(1, 3, 0, func() { _ = r.Admin.ScriptFlush(ctx).Err() })
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			buf := make([]byte, width)
			next := func(i int) shaCall {
				k := (w*7 + i*13) % variants
				v := fmt.Sprintf("v-%03d", k)
				switch i % 5 {
				case 0: // the buffer, rewritten in place
					copy(buf, variant(k))
					return shaCall{[]interface{}{"eval", buf, 0}, string(buf), v}
				case 1: // a substring of the shared string
					b := shared[k*width : (k+1)*width]
					return shaCall{[]interface{}{"eval", b, 0}, b, v}
				case 2: // a prefix of one string: one address, another length
					n := digitsAt + 1 + k%9
					return shaCall{[]interface{}{"eval_ro", digits[:n], 0}, digits[:n], digits[digitsAt:n]}
				case 3: // a registered script by SHA1, in upper case sometimes
					i := k % 4
					sha := testkit.SHA1(reg(i))
					if k%2 == 0 {
						sha = strings.ToUpper(sha)
					}
					return shaCall{[]interface{}{"evalsha", sha, 0}, reg(i), "reg-" + strconv.Itoa(i)}
				default: // a fresh string of known content
					b := variant(k)
					return shaCall{[]interface{}{"eval", b, 0}, b, v}
				}
			}
			for i := 0; i < each; i++ {
				if i%10 == 9 {
					// A pipeline of the next few calls; the buffer is
					// changed per call, so it stays out of batches.
					var cs []shaCall
					for j := i*5 + 1; len(cs) < 5; j++ {
						if j%5 != 0 {
							cs = append(cs, next(j))
						}
					}
					bodies := make([]string, len(cs))
					for j, c := range cs {
						bodies[j] = c.body
					}
					var cmds []*redis.Cmd
					_, err := r.Hooked.Pipelined(context.WithValue(ctx, wantKey{}, bodies), func(p redis.Pipeliner) error {
						for _, c := range cs {
							cmds = append(cmds, p.Do(ctx, c.args...))
						}
						return nil
					})
					if err != nil {
						errs <- err
						return
					}
					for j, cmd := range cmds {
						if got := fmt.Sprint(cmd.Val()); got != cs[j].want {
							errs <- fmt.Errorf("pipeline: %.40q returned %v, want %v", cs[j].body, got, cs[j].want)
							return
						}
					}
					continue
				}
				c := next(i)
				v, err := r.Hooked.Do(context.WithValue(ctx, wantKey{}, []string{c.body}), c.args...).Result()
				if err != nil {
					errs <- fmt.Errorf("%.40q: %w", c.body, err)
					return
				}
				if got := fmt.Sprint(v); got != c.want {
					errs <- fmt.Errorf("%.40q returned %v, want %v", c.body, got, c.want)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	stopFlushing()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	wire.mu.Lock()
	defer wire.mu.Unlock()
	assert.Empty(t, wire.problems)
	st := h.Stats()
	assert.Greater(t, wire.checked.Load(), int64(workers*each/2), "the wire check saw the script commands")
	assert.Positive(t, st.Rewritten, "calls went by SHA1")
	assert.Positive(t, st.NoScriptRepaired, "flushes were repaired")
	t.Logf("%d calls, %d script commands checked on the wire, %d by SHA1, %d NOSCRIPT repaired, %d loads",
		workers*each, wire.checked.Load(), st.Rewritten, st.NoScriptRepaired, st.Loads)
}
