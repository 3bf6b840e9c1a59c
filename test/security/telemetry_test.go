package security_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// The secrets: every key, argument, body and the password carries
// secToken.
var (
	secKeys  = []string{"key-" + secToken}
	secArg   = "arg-" + secToken
	password = "pw-" + secToken
	// Bodies are longer than a SHA1, so that the hook sends them by SHA1
	// once the server has them, and carry secToken in a comment.
	setBody = "-- body-" + secToken + "\nreturn redis.call('SET', KEYS[1], ARGV[1])"
	getBody = "-- body-" + secToken + "\nreturn redis.call('GET', KEYS[1]) or ARGV[1]"
	regBody = "-- registered body-" + secToken + "\nreturn redis.call('INCR', KEYS[1])"
	// Scripts whose errors echo what they are given or their own text.
	echoArg     = "return redis.error_reply(ARGV[1]) -- body-" + secToken + ": echoes its argument"
	echoKey     = "return redis.error_reply('ERR ' .. KEYS[1]) -- body-" + secToken + ": echoes its key"
	raiseArg    = "error(ARGV[1]) -- body-" + secToken + ": raises its argument as a Lua error"
	wrongType   = "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('HGET', KEYS[1], ARGV[1]) -- body-" + secToken
	runtimeBody = "return nosuch_" + secToken + ".field -- a runtime error that names a global of the body"
	compileBody = "return 1 body_" + secToken + " -- a compile error that quotes the body"
)

// secLibrary is a function library whose functions take the secrets as
// keys and arguments; one echoes its argument in an error reply.
const secLibrary = `#!lua name=seclib
redis.register_function('sec_set', function(keys, args) return redis.call('SET', keys[1], args[1]) end)
redis.register_function{function_name='sec_get', callback=function(keys, args) return redis.call('GET', keys[1]) end, flags={'no-writes'}}
redis.register_function('sec_echo', function(keys, args) return redis.error_reply(args[1]) end)
`

// secCall is one way a secret could travel; it renders every reply and
// error the caller gets.
type secCall struct {
	name string
	do   func(ctx context.Context, c *redis.Client) []string
}

func single(cmd redis.Cmder) []string { return []string{testkit.Render(cmd)} }

func batch(cmds []redis.Cmder, err error) []string { return testkit.RenderAll(cmds, err) }

var secCalls = []secCall{
	{"eval", func(ctx context.Context, c *redis.Client) []string {
		return single(c.Eval(ctx, setBody, secKeys, secArg))
	}},
	{"eval []byte", func(ctx context.Context, c *redis.Client) []string {
		return single(c.Do(ctx, "EVAL", []byte(setBody), 1, secKeys[0], secArg))
	}},
	{"eval_ro", func(ctx context.Context, c *redis.Client) []string {
		return single(c.EvalRO(ctx, getBody, secKeys, secArg))
	}},
	{"evalsha of a registered script", func(ctx context.Context, c *redis.Client) []string {
		return single(c.EvalSha(ctx, testkit.SHA1(regBody), secKeys, secArg))
	}},
	{"evalsha given the body by mistake", func(ctx context.Context, c *redis.Client) []string {
		return single(c.EvalSha(ctx, setBody, secKeys, secArg))
	}},
	{"evalsha of an unknown script", func(ctx context.Context, c *redis.Client) []string {
		return single(c.EvalSha(ctx, testkit.SHA1("return 'never loaded' -- "+secToken), secKeys, secArg))
	}},
	{"error reply echoing an argument", func(ctx context.Context, c *redis.Client) []string {
		return single(c.Eval(ctx, echoArg, secKeys, "ERR "+secArg))
	}},
	{"error reply echoing an argument that reads like NOSCRIPT", func(ctx context.Context, c *redis.Client) []string {
		return single(c.Eval(ctx, echoArg, secKeys, "NOSCRIPT "+secArg))
	}},
	{"error reply echoing a key", func(ctx context.Context, c *redis.Client) []string {
		return single(c.Eval(ctx, echoKey, secKeys))
	}},
	{"Lua error raising an argument", func(ctx context.Context, c *redis.Client) []string {
		return single(c.Eval(ctx, raiseArg, secKeys, secArg))
	}},
	{"WRONGTYPE from inside a script", func(ctx context.Context, c *redis.Client) []string {
		return single(c.Eval(ctx, wrongType, secKeys, secArg))
	}},
	{"runtime error naming the body", func(ctx context.Context, c *redis.Client) []string {
		return single(c.Eval(ctx, runtimeBody, secKeys, secArg))
	}},
	{"compile error quoting the body", func(ctx context.Context, c *redis.Client) []string {
		return single(c.Eval(ctx, compileBody, secKeys, secArg))
	}},
	{"fcall", func(ctx context.Context, c *redis.Client) []string {
		return single(c.FCall(ctx, "sec_set", secKeys, secArg))
	}},
	{"fcall_ro", func(ctx context.Context, c *redis.Client) []string {
		return single(c.FCallRO(ctx, "sec_get", secKeys, secArg))
	}},
	{"fcall echoing an argument", func(ctx context.Context, c *redis.Client) []string {
		return single(c.FCall(ctx, "sec_echo", secKeys, "ERR "+secArg))
	}},
	{"pipeline", func(ctx context.Context, c *redis.Client) []string {
		return batch(c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := 0; i < 2; i++ { // twice: the second use may go by SHA1
				p.Eval(ctx, setBody, secKeys, secArg)
				p.EvalRO(ctx, getBody, secKeys, secArg)
				p.EvalSha(ctx, testkit.SHA1(regBody), secKeys, secArg)
				p.Eval(ctx, echoArg, secKeys, "ERR "+secArg)
				p.Eval(ctx, raiseArg, secKeys, secArg)
			}
			p.EvalSha(ctx, setBody, secKeys, secArg)
			p.Eval(ctx, compileBody, secKeys, secArg)
			p.Eval(ctx, compileBody, secKeys, secArg)
			p.FCall(ctx, "sec_echo", secKeys, "ERR "+secArg)
			return nil
		}))
	}},
	{"transaction", func(ctx context.Context, c *redis.Client) []string {
		return batch(c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Eval(ctx, setBody, secKeys, secArg)
			p.Eval(ctx, setBody, secKeys, secArg)
			p.Eval(ctx, echoKey, secKeys)
			p.Eval(ctx, runtimeBody, secKeys, secArg)
			p.FCall(ctx, "sec_set", secKeys, secArg)
			return nil
		}))
	}},
	{"AUTH through the hook", func(ctx context.Context, c *redis.Client) []string {
		return single(c.Do(ctx, "AUTH", password))
	}},
}

// queryTextRE is the whole of a sanitized db.query.text: the command, the
// script's SHA1, registered name or function name (or "?" for an EVALSHA
// argument that is no SHA1), numkeys, and one "?" per key and argument.
var queryTextRE = regexp.MustCompile(`^(EVAL|EVAL_RO|EVALSHA|EVALSHA_RO|FCALL|FCALL_RO) ([0-9a-f]{40}|[0-9A-F]{40}|registered|sec_set|sec_get|sec_echo|\?) [0-9]+( \?)*$`)

// Every way a secret could travel, cold, warm and after a flush: the
// caller gets exactly the plain client's replies and errors (the hook makes
// none up), and no span name, attribute, event, status description, link,
// metric attribute, Stats field or logged error holds a secret, with
// WithQueryText off (the default: no db.query.text at all) and on (the
// query text holds placeholders only). The status of a span for a server's
// error reply has no description: the reply can echo arguments.
func TestSecurityTelemetryHoldsNoSecrets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t)
	// Set after start: redistest's readiness probe does not authenticate.
	func() {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr})
		defer c.Close()
		require.NoError(t, c.ConfigSet(ctx, "requirepass", password).Err())
	}()
	base := &redis.Options{Password: password, MaxRetries: -1}
	setup := testkit.Client(t, srv, base)
	require.NoError(t, setup.FunctionLoad(ctx, secLibrary).Err())

	for _, queryText := range []bool{false, true} {
		t.Run(fmt.Sprintf("query text %v", queryText), func(t *testing.T) {
			spans := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
			reader := sdkmetric.NewManualReader()
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
			defer func() { _ = tp.Shutdown(ctx); _ = mp.Shutdown(ctx) }()
			h := scripthook.New(scripthook.WithTracerProvider(tp), scripthook.WithMeterProvider(mp),
				scripthook.WithQueryText(queryText))
			h.Register("registered", regBody)
			r := testkit.RigOn(t, srv, base, nil)
			require.NoError(t, h.Install(r.Hooked))

			echoed := 0 // replies that carry a secret: what the hook must not pass on
			for round, when := range []string{"cold", "warm", "after a flush"} {
				if round == 2 {
					r.FlushScripts(t)
				}
				for _, c := range secCalls {
					r.FlushDB(t)
					got := c.do(ctx, r.Hooked)
					r.FlushDB(t)
					want := c.do(ctx, r.Plain)
					assert.Equal(t, want, got, "%s, %s: the caller gets the plain client's replies", c.name, when)
					if strings.Contains(strings.Join(want, "\n"), secToken) {
						echoed++
					}
				}
			}
			require.Positive(t, echoed, "the server's replies echoed secrets")
			st := h.Stats()
			require.Positive(t, st.Rewritten, "calls went by SHA1: the warm paths were exercised")
			require.Positive(t, st.NoScriptRepaired, "the flush was repaired: the repair paths were exercised")

			var rm metricdata.ResourceMetrics
			require.NoError(t, reader.Collect(ctx, &rm))
			ended := spans.Ended()
			require.NotEmpty(t, ended)
			var exported strings.Builder
			var failed, withText int
			for _, s := range ended {
				exported.WriteString(s.Name())
				exported.WriteString(dump(t, s.Attributes()))
				exported.WriteString(dump(t, s.Events()))
				exported.WriteString(dump(t, s.Links()))
				exported.WriteString(s.Status().Description)
				if s.Status().Code == codes.Error {
					failed++
					// Every error here is a server's reply: none may keep
					// its text.
					assert.Empty(t, s.Status().Description, "span %q: the status description of a server error", s.Name())
				}
				for _, kv := range s.Attributes() {
					if kv.Key != semconv.DBQueryTextKey {
						continue
					}
					withText++
					assert.Regexp(t, queryTextRE, kv.Value.AsString(), "span %q: placeholders only", s.Name())
				}
			}
			require.Positive(t, failed, "error spans were recorded")
			if queryText {
				assert.Positive(t, withText, "script spans carry db.query.text")
			} else {
				assert.Zero(t, withText, "no db.query.text by default")
			}
			points := 0
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					exported.WriteString(m.Name)
					exported.WriteString(dump(t, m.Data))
					if hist, ok := m.Data.(metricdata.Histogram[float64]); ok {
						points += len(hist.DataPoints)
					}
				}
			}
			require.Positive(t, points, "durations were recorded")
			exported.WriteString(fmt.Sprintf("%+v", st))

			out := exported.String()
			frags := strings.Split(out, secToken)
			for _, frag := range frags[:min(len(frags)-1, 5)] {
				t.Logf("leaked after: ...%s", frag[max(0, len(frag)-160):])
			}
			assert.NotContains(t, out, secToken, "a secret reached the telemetry")
			assert.NotContains(t, out, "redis.call(", "a body reached the telemetry")
			assert.NotContains(t, logged.text(), secToken, "a secret reached the log")
		})
	}
}

func dump(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}
