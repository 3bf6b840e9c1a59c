package integration_test

// FIPS 140-only mode. Under GODEBUG=fips140=only crypto/sha1 refuses to
// hash; the hook then learns each hot script's SHA1 from its own SCRIPT
// LOAD. TestFIPSOnly re-runs this package's core cases in a child process in
// that mode, with TestFIPSCore, which asserts the mode is on and that the
// saving still happens. The child's tests use testkit.SHA1 (pure Go) where
// they need a SHA1, never crypto/sha1 or redis.NewScript.

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fipsChild marks the child process.
const fipsChild = "SCRIPTHOOK_FIPS_CHILD"

// fipsCases are the cases the child runs: single calls, pipelines and
// transactions against plain EVAL, repairs after flush, restart and storms,
// the adversarial cases, large batches. Left out: tests that count exact
// commands (the mode learns a SHA1 by SCRIPT LOAD on a script's second
// sighting, so counts differ by design) and tests of EVALSHA calls for
// registered scripts (in this mode the hook learns a registered script's
// SHA1 from the first server that loads it, and a caller could only have
// computed the SHA1 itself with a SHA-1 of its own).
const fipsCases = `^(TestFIPSCore|TestSameResultsAsPlainEval|TestPipelineOptimisticSameAsPlain|TestRestartBetweenCalls|TestNoScriptStormNobodyWaits|TestPipelineStrictSameAsPlain|TestTxErrorsAsPlain|TestBytesChangedBehindTheString|TestScriptsThatSayNoScriptRunOnce|TestOnConnectRunsTheSameScript|TestSameHookTwiceInOneChain|TestDownstreamHookKeepsCommands|TestHandWrittenTransactions|TestFlushSpellings|TestEvictionLargeBatches)$`

func TestFIPSOnly(t *testing.T) {
	if os.Getenv(fipsChild) != "" {
		t.Skip("in the child")
	}
	redistest.Require(t)
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run", fipsCases, "-test.v", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), fipsChild+"=1", "GODEBUG=fips140=only")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "child under GODEBUG=fips140=only:\n%s", out)
	passed := regexp.MustCompile(`(?m)^--- PASS: (Test\w+)`).FindAllStringSubmatch(string(out), -1)
	names := map[string]bool{}
	for _, m := range passed {
		names[m[1]] = true
	}
	want := strings.Split(strings.Trim(fipsCases, "^()$"), "|")
	for _, name := range want {
		assert.True(t, names[name], "%s did not pass in FIPS 140-only mode", name)
	}
	assert.NotContains(t, string(out), "--- SKIP", "nothing skipped in the child")
}

// TestFIPSCore runs in the child only: the mode is on, nothing panics,
// Register returns "" (the SHA1 is the server's to tell), and a hot script
// still goes out by SHA1, in single calls and pipelines.
func TestFIPSCore(t *testing.T) {
	if os.Getenv(fipsChild) == "" {
		t.Skip("runs in TestFIPSOnly's child process")
	}
	t.Parallel()
	require.True(t, testkit.FIPSOnly(), "GODEBUG=fips140=only is in force")
	h := quiet()
	var pw, hw testkit.Wire
	srv := redistest.Start(t)
	r := testkit.RigOn(t, srv, nil, nil)
	r.Plain = testkit.Client(t, srv, pw.Options(nil))
	r.Hooked = testkit.Client(t, srv, hw.Options(nil))
	r.Hooked.AddHook(h)
	ctx := t.Context()
	assert.Equal(t, "", h.Register("reg", regScript))
	for i := 0; i < 5; i++ {
		want, err := r.Plain.Eval(ctx, bigCounter, []string{"p"}).Result()
		require.NoError(t, err)
		got, err := r.Hooked.Eval(ctx, bigCounter, []string{"h"}).Result()
		require.NoError(t, err)
		assert.Equal(t, want, got)
	}
	assert.Greater(t, h.Stats().Rewritten, int64(0), "single calls go by SHA1 once learned")
	before := h.Stats().Rewritten
	for i := 0; i < 3; i++ {
		for _, c := range []*redis.Client{r.Plain, r.Hooked} {
			_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
				for j := 0; j < 5; j++ {
					p.Eval(ctx, bigCounter, []string{"k"})
					p.Eval(ctx, pad(300), nil)
				}
				return nil
			})
			require.NoError(t, err)
		}
	}
	assert.Greater(t, h.Stats().Rewritten, before, "pipelines go by SHA1 once learned")
	// Learning costs one SCRIPT LOAD per script; over the run the hook
	// still writes fewer bytes than plain EVAL.
	assert.Less(t, hw.Written(), pw.Written(), "bytes over the run")
}
