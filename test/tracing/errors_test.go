package tracing_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// serverError asserts what README promises for a server's error reply:
// status Error with an empty description (the message can echo arguments
// or the body), error.type and db.response.status_code the Redis prefix,
// no event (RecordError is never called), and the same two attributes on
// the duration series.
func serverError(t *testing.T, what string, s sdktrace.ReadOnlySpan, pts []point, prefix string) {
	t.Helper()
	assert.Equal(t, status{codes.Error, ""}, statusOf(s), "%s: status", what)
	a := attrs(s)
	assert.Equal(t, prefix, a[kErrType], "%s: error.type", what)
	assert.Equal(t, prefix, a[kStatus], "%s: db.response.status_code", what)
	assert.Empty(t, events(s), "%s: no events (no RecordError)", what)
	require.Len(t, pts, 1, "%s: one duration series", what)
	assert.Equal(t, prefix, pts[0].Attrs[kErrType], "%s: the metric's error.type", what)
	assert.Equal(t, prefix, pts[0].Attrs[kStatus], "%s: the metric's db.response.status_code", what)
}

// noError asserts a span and series that are not errors.
func noError(t *testing.T, what string, s sdktrace.ReadOnlySpan, pts []point) {
	t.Helper()
	assert.Equal(t, status{codes.Unset, ""}, statusOf(s), "%s: status", what)
	assert.NotContains(t, attrs(s), kErrType, "%s", what)
	assert.NotContains(t, attrs(s), kStatus, "%s", what)
	require.Len(t, pts, 1, "%s: one duration series", what)
	assert.NotContains(t, pts[0].Attrs, kErrType, "%s: the metric", what)
	assert.NotContains(t, pts[0].Attrs, kStatus, "%s: the metric", what)
}

// Every kind of server error reply a script call can get, cold (the body
// went out) and warm (it went as EVALSHA): a Lua runtime error (ERR),
// WRONGTYPE from a redis.call inside the script, a compile error (ERR),
// the script's own error_reply and {err=...} prefixes, and NOSCRIPT for an
// EVALSHA of a SHA1 nobody loaded. The caller gets the plain client's
// error; the span and the metric carry only the prefix.
func TestErrorsServerReplies(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	ctx := t.Context()
	require.NoError(t, r.Plain.Set(ctx, "errors:string", "v", 0).Err())
	pad := " -- tracing: padded beyond the length of a SHA1 so that it goes by SHA1"
	cases := []struct {
		what, prefix string
		do           func(c *redis.Client) *redis.Cmd
	}{
		{"runtime error", "ERR", func(c *redis.Client) *redis.Cmd {
			return c.Eval(ctx, "local t = nil\nreturn t.x"+pad, nil)
		}},
		{"WRONGTYPE", "WRONGTYPE", func(c *redis.Client) *redis.Cmd {
			return c.Eval(ctx, "return redis.call('HGET', KEYS[1], 'f')"+pad, []string{"errors:string"})
		}},
		{"compile error", "ERR", func(c *redis.Client) *redis.Cmd {
			return c.Eval(ctx, "return +"+pad, nil)
		}},
		{"error_reply with the script's own prefix", "MYAPP_LIMIT", func(c *redis.Client) *redis.Cmd {
			return c.Eval(ctx, "return redis.error_reply('MYAPP_LIMIT over the limit')"+pad, nil)
		}},
		{"an err table with the script's own prefix", "QUOTA", func(c *redis.Client) *redis.Cmd {
			return c.Eval(ctx, "return {err='QUOTA exceeded for this key'}"+pad, nil)
		}},
		{"EVALSHA of an unknown SHA1", "NOSCRIPT", func(c *redis.Client) *redis.Cmd {
			return c.EvalSha(ctx, testkit.SHA1("return 'never loaded anywhere'"), nil)
		}},
	}
	for _, c := range cases {
		for _, round := range []string{"cold", "warm"} {
			what := c.what + ", " + round
			want := c.do(r.Plain).Err()
			require.Error(t, want, what)
			require.True(t, strings.HasPrefix(want.Error(), c.prefix+" "), "%s: the server's reply %q", what, want)
			got := c.do(r.Hooked).Err()
			assert.Equal(t, testkit.ErrText(want), testkit.ErrText(got), "%s: the plain client's error", what)
			serverError(t, what, r.tl.one(t), r.tl.points(t), c.prefix)
		}
	}
}

// redis.Nil is a reply, not an error: a script returning nil (a GET of a
// missing key) gives a span and a series without error, single and in a
// batch; the batch itself, whose first error go-redis reports as
// redis.Nil, is no error either.
func TestErrorsNilIsNoError(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	ctx := t.Context()
	k := []string{"errors:missing"}
	for _, round := range []string{"cold", "warm"} {
		assert.Equal(t, redis.Nil, r.Hooked.Eval(ctx, readBody, k).Err())
		noError(t, "single, "+round, r.tl.one(t), r.tl.points(t))
	}
	_, err := r.Hooked.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Eval(ctx, bigRead, k)
		p.Eval(ctx, bigRead, k)
		return nil
	})
	assert.Equal(t, redis.Nil, err)
	spans := r.tl.take()
	require.Len(t, spans, 3)
	for _, s := range spans {
		assert.Equal(t, status{codes.Unset, ""}, statusOf(s), "%s", s.Name())
		assert.NotContains(t, attrs(s), kErrType, "%s", s.Name())
	}
	pts := r.tl.points(t)
	require.Len(t, pts, 1)
	assert.NotContains(t, pts[0].Attrs, kErrType, "the batch's series")
}

// A repaired NOSCRIPT is not an error: the caller got the script's reply,
// so neither the span nor the series has an error, in a single call and
// for a caller's own EVALSHA of a body the hook knows.
func TestErrorsRepairedNoScriptIsNoError(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	ctx := t.Context()
	k := []string{"errors:repaired"}
	for i := 0; i < 2; i++ {
		require.NoError(t, r.Hooked.Eval(ctx, incrBody, k, 1).Err())
	}
	r.tl.take()
	r.tl.points(t)
	for _, what := range []string{"EVAL", "EVALSHA"} {
		r.FlushScripts(t)
		if what == "EVAL" {
			require.NoError(t, r.Hooked.Eval(ctx, incrBody, k, 1).Err())
		} else {
			require.NoError(t, r.Hooked.EvalSha(ctx, testkit.SHA1(incrBody), k, 1).Err())
		}
		s := r.tl.one(t)
		require.Equal(t, true, attrs(s)[kRepaired], what)
		noError(t, what+" repaired", s, r.tl.points(t))
	}
}

// A batch child for a failing command has the status and attributes of a
// failed single call; the batch span reports the batch's error (go-redis's
// first command error) the same way, with an empty description.
func TestErrorsInBatch(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	ctx := t.Context()
	failing := "return redis.error_reply('BATCH_FAIL in the pipeline') -- tracing: padded beyond a SHA1"
	_, err := r.Hooked.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Eval(ctx, incrBody, []string{"errors:batch"}, 1)
		p.Eval(ctx, failing, nil)
		return nil
	})
	require.Error(t, err)
	spans := r.tl.take()
	require.Len(t, spans, 3)
	assert.Equal(t, status{codes.Unset, ""}, statusOf(spans[0]), "the command that worked")
	assert.NotContains(t, attrs(spans[0]), kErrType)
	for _, s := range spans[1:] {
		assert.Equal(t, status{codes.Error, ""}, statusOf(s), "%s", s.Name())
		assert.Equal(t, "BATCH_FAIL", attrs(s)[kErrType], "%s", s.Name())
		assert.Equal(t, "BATCH_FAIL", attrs(s)[kStatus], "%s", s.Name())
		assert.Empty(t, events(s), "%s: no events", s.Name())
	}
	pts := r.tl.points(t)
	require.Len(t, pts, 1)
	assert.Equal(t, "BATCH_FAIL", pts[0].Attrs[kErrType])
}

// goError asserts what README promises for a network or context error:
// status Error with the Go message as description, error.type the Go type
// (as semconv.ErrorType names it), no db.response.status_code, no event.
func goError(t *testing.T, what string, s sdktrace.ReadOnlySpan, pts []point, err error, wantType string) {
	t.Helper()
	require.Error(t, err, what)
	var rerr redis.Error
	require.False(t, errors.As(err, &rerr), "%s: %v is not a server reply", what, err)
	assert.Equal(t, status{codes.Error, err.Error()}, statusOf(s), "%s: status", what)
	assert.Equal(t, wantType, attrs(s)[kErrType], "%s: error.type", what)
	assert.Equal(t, semconv.ErrorType(err).Value.AsString(), wantType, "%s: the conventions' name of the Go type", what)
	assert.NotContains(t, attrs(s), kStatus, "%s", what)
	assert.Empty(t, events(s), "%s: no events (no RecordError)", what)
	require.Len(t, pts, 1, "%s: one duration series", what)
	assert.Equal(t, wantType, pts[0].Attrs[kErrType], "%s: the metric's error.type", what)
	assert.NotContains(t, pts[0].Attrs, kStatus, "%s: the metric", what)
}

// Context errors keep their Go message ("context canceled", "context
// deadline exceeded") as the description and their Go type as error.type,
// cold and warm, single and in a batch.
func TestErrorsContext(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	k := []string{"errors:ctx"}
	require.NoError(t, r.Hooked.Eval(t.Context(), incrBody, k, 1).Err()) // dials, warms
	r.tl.take()
	r.tl.points(t)
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	expired, cancel2 := context.WithDeadline(t.Context(), time.Unix(1, 0))
	defer cancel2()
	for _, c := range []struct {
		what     string
		ctx      context.Context
		wantType string
	}{
		{"cancelled", cancelled, "*errors.errorString"},
		{"deadline", expired, "context.deadlineExceededError"},
	} {
		err := r.Hooked.Eval(c.ctx, incrBody, k, 1).Err()
		require.ErrorIs(t, err, c.ctx.Err(), c.what)
		goError(t, c.what+", single", r.tl.one(t), r.tl.points(t), err, c.wantType)

		_, err = r.Hooked.Pipelined(c.ctx, func(p redis.Pipeliner) error {
			p.Eval(c.ctx, bigIncr, k, 1)
			p.Eval(c.ctx, bigIncr, k, 1)
			return nil
		})
		require.ErrorIs(t, err, c.ctx.Err(), c.what)
		spans := r.tl.take()
		require.NotEmpty(t, spans, c.what)
		goError(t, c.what+", batch", spans[len(spans)-1], r.tl.points(t), err, c.wantType)
	}
}

// A server that is gone: the call fails with a network error, which keeps
// its Go message as the description and its Go type as error.type. Once
// on a client whose connection was open when the server stopped (the
// error is whatever go-redis meets first), once on a client that never
// reached it (the dial's *net.OpError).
func TestErrorsClosedServer(t *testing.T) {
	t.Parallel()
	srv, err := redistest.NewServer(t.TempDir())
	require.NoError(t, err)
	defer srv.Stop()
	warm := newRigOn(t, srv, &redis.Options{MaxRetries: -1}, nil)
	ctx := t.Context()
	k := []string{"errors:closed"}
	require.NoError(t, warm.Hooked.Eval(ctx, incrBody, k, 1).Err())
	warm.tl.take()
	warm.tl.points(t)
	srv.Stop()

	err = warm.Hooked.Eval(ctx, incrBody, k, 1).Err()
	require.Error(t, err)
	t.Logf("the warm client's error: %T %v", err, err)
	goError(t, "closed server, warm client", warm.tl.one(t), warm.tl.points(t), err, semconv.ErrorType(err).Value.AsString())

	cold := newRigOn(t, srv, &redis.Options{MaxRetries: -1}, nil)
	err = cold.Hooked.Eval(ctx, incrBody, k, 1).Err()
	require.Error(t, err)
	t.Logf("the cold client's error: %T %v", err, err)
	goError(t, "closed server, cold client", cold.tl.one(t), cold.tl.points(t), err, "*net.OpError")
}

// An EVALSHA argument that is not a SHA1 (a typo, or a body passed by
// mistake) shows as "?" in scripthook.sha1 and db.query.text, and the span
// is named by the command alone: whatever the caller put there is not
// recorded. The server's NOSCRIPT is an error like any other.
func TestErrorsEvalShaNotSHA1(t *testing.T) {
	t.Parallel()
	const secret = "t0k3n-in-the-argument"
	r := newRig(t, nil, scripthook.WithQueryText(true))
	ctx := t.Context()
	for _, arg := range []string{"not-a-sha1-" + secret, "return '" + secret + "'", strings.Repeat("g", 40)} {
		err := r.Hooked.EvalSha(ctx, arg, []string{"errors:" + secret}, secret).Err()
		require.Error(t, err)
		s := r.tl.one(t)
		assert.Equal(t, "EVALSHA", s.Name(), "%q", arg)
		a := attrs(s)
		assert.Equal(t, "?", a[kSHA1], "%q", arg)
		assert.Equal(t, scripthook.OtherName, a[kProc], "%q", arg)
		assert.Equal(t, "EVALSHA ? 1 ? ?", a[kQuery], "%q", arg)
		serverError(t, fmt.Sprintf("%q", arg), s, r.tl.points(t), "NOSCRIPT")
		assert.NotContains(t, dumpSpan(t, s), secret)
	}
}

// Private by default: no key, argument or body reaches a span name,
// attribute, event or status, or the metric, even when the server's error
// reply echoes them (error_reply(ARGV[1]), a compile error quoting the
// body, a Lua error raising an argument). With WithQueryText the query
// text holds placeholders only.
func TestErrorsPrivateByDefault(t *testing.T) {
	t.Parallel()
	const secret = "pr1vate-d4ta"
	srv := redistest.Start(t)
	calls := []func(ctx context.Context, c *redis.Client) error{
		func(ctx context.Context, c *redis.Client) error {
			return c.Eval(ctx, "-- body "+secret+"\nreturn redis.call('SET', KEYS[1], ARGV[1])", []string{"k:" + secret}, "v:"+secret).Err()
		},
		func(ctx context.Context, c *redis.Client) error {
			return c.Eval(ctx, "return redis.error_reply(ARGV[1]) -- echoes its argument, padded", nil, "ERR "+secret).Err()
		},
		func(ctx context.Context, c *redis.Client) error {
			return c.Eval(ctx, "error(ARGV[1]) -- raises its argument as a Lua error, padded", nil, secret).Err()
		},
		func(ctx context.Context, c *redis.Client) error {
			return c.Eval(ctx, "return 1 body_"+secret+" -- a compile error that quotes the body", nil).Err()
		},
		func(ctx context.Context, c *redis.Client) error {
			_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
				for i := 0; i < 2; i++ {
					p.Eval(ctx, "-- body "+secret+"\nreturn redis.call('SET', KEYS[1], ARGV[1])", []string{"k:" + secret}, "v:"+secret)
					p.Eval(ctx, "return redis.error_reply(ARGV[1]) -- echoes its argument, padded", nil, "ERR "+secret)
				}
				return nil
			})
			return err
		},
	}
	for _, qt := range []bool{false, true} {
		r := newRigOn(t, srv, &redis.Options{MaxRetries: -1}, nil, scripthook.WithQueryText(qt))
		ctx := t.Context()
		echoed := 0
		for round := 0; round < 2; round++ {
			for _, c := range calls {
				if err := c(ctx, r.Hooked); err != nil && strings.Contains(err.Error(), secret) {
					echoed++
				}
			}
		}
		require.Positive(t, echoed, "the server's errors echo the secret")
		spans := r.tl.take()
		require.NotEmpty(t, spans)
		failed := 0
		for _, s := range spans {
			d := dumpSpan(t, s)
			assert.NotContains(t, d, secret, "WithQueryText(%v): span %q", qt, s.Name())
			assert.NotContains(t, d, "redis.call", "WithQueryText(%v): span %q holds a body", qt, s.Name())
			if s.Status().Code == codes.Error {
				failed++
				assert.Empty(t, s.Status().Description, "WithQueryText(%v): span %q", qt, s.Name())
			}
			_, has := attrs(s)[kQuery]
			if s.Parent().IsValid() || !strings.HasPrefix(s.Name(), "PIPELINE") {
				assert.Equal(t, qt, has, "WithQueryText(%v): db.query.text on %q", qt, s.Name())
			}
		}
		assert.Positive(t, failed)
		for _, p := range r.tl.points(t) {
			assert.NotContains(t, fmt.Sprint(p.Attrs), secret, "WithQueryText(%v): the metric", qt)
		}
	}
}
