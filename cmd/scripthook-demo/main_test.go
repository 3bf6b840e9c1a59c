package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook/internal/redistest"
)

// TestMiniredis runs the demo as `go run ./cmd/scripthook-demo` does.
func TestMiniredis(t *testing.T) {
	out := runOK(t)
	checkReport(t, out, 1)
}

// TestRealRedis runs the demo against a real redis-server with -addr, on a
// non-default database, and checks that it leaves no key behind.
// redistest.Start skips without redis-server, or fails when
// SCRIPTHOOK_REQUIRE_REDIS=1.
func TestRealRedis(t *testing.T) {
	srv := redistest.Start(t)
	out := runOK(t, "-addr", srv.Addr, "-db", "2", "-n", "50")
	checkReport(t, out, 1)
	if !strings.Contains(out, "Redis "+srv.Addr+", db 2") {
		t.Errorf("header does not name the server:\n%s", out)
	}

	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, DB: 2})
	defer rdb.Close()
	n, err := rdb.DBSize(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		keys, _ := rdb.Keys(context.Background(), "*").Result()
		t.Errorf("%d keys left behind: %v", n, keys)
	}
}

// TestCluster runs the demo with -cluster against three masters made by
// redistest. It needs redis-server and redis-cli; without them it skips, or
// fails when SCRIPTHOOK_REQUIRE_REDIS=1.
func TestCluster(t *testing.T) {
	redistest.Require(t)
	if _, err := exec.LookPath("redis-cli"); err != nil {
		if os.Getenv("SCRIPTHOOK_REQUIRE_REDIS") == "1" {
			t.Fatal("redis-cli, needed to create a cluster, is not on PATH")
		}
		t.Skip("redis-cli, needed to create a cluster, is not on PATH")
	}
	c, err := redistest.NewCluster(3, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out := runOK(t, "-cluster", strings.Join(c.Addrs, ","))
	checkReport(t, out, 3)
}

func TestUnreachable(t *testing.T) {
	for _, args := range [][]string{
		{"-addr", "127.0.0.1:1"},
		{"-cluster", "127.0.0.1:1,127.0.0.1:2"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 1 {
			t.Errorf("%q: exit status %d, want 1", args, code)
		}
		msg := stderr.String()
		if !strings.HasPrefix(msg, "scripthook-demo: cannot reach 127.0.0.1:1: ") ||
			strings.Count(msg, "\n") != 1 || !strings.HasSuffix(msg, "\n") {
			t.Errorf("%q: stderr is not one line about 127.0.0.1:1:\n%q", args, msg)
		}
		if stdout.Len() != 0 {
			t.Errorf("%q: stdout not empty:\n%s", args, stdout.String())
		}
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-addr", "127.0.0.1:1", "-cluster", "127.0.0.1:2"},
		{"-n", "0"},
		{"-nosuchflag"},
		{"extra"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 2 {
			t.Errorf("%q: exit status %d, want 2; stderr:\n%s", args, code, stderr.String())
		}
	}
}

// TestScript checks that the script is exactly scriptSize bytes and the
// same on every call: its SHA1 must not change between runs.
func TestScript(t *testing.T) {
	s := buildScript()
	if len(s) != scriptSize {
		t.Errorf("script is %d bytes, want %d", len(s), scriptSize)
	}
	if buildScript() != s {
		t.Error("buildScript is not deterministic")
	}
}

// runOK runs the demo with args and returns its stdout, failing the test
// unless it exits 0 with nothing on stderr.
func runOK(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	t.Logf("output:\n%s", stdout.String())
	if code != 0 || stderr.Len() != 0 {
		t.Fatalf("exit status %d, stderr:\n%s", code, stderr.String())
	}
	return stdout.String()
}

// checkReport reads the table's total rows and checks what the demo claims,
// for a target with this many masters (1 for a standalone server).
func checkReport(t *testing.T, out string, masters int) {
	t.Helper()
	totals := map[string][]string{} // run name -> cells of its total row
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 8 && f[1] == "total" {
			totals[f[0]] = f
		}
	}
	plain, hook := totals["plain"], totals["hook"]
	if plain == nil || hook == nil {
		t.Fatalf("want total rows for the plain and the hook run:\n%s", out)
	}
	num := func(cell string) int64 {
		n, err := strconv.ParseInt(strings.ReplaceAll(cell, ",", ""), 10, 64)
		if err != nil {
			t.Fatalf("cell %q is not a number:\n%s", cell, out)
		}
		return n
	}
	// Columns: RUN PHASE CALLS ERRORS WRITTEN READ BODIES REPAIRED.
	if plain[2] != hook[2] || num(plain[2]) == 0 {
		t.Errorf("calls: plain %s, hook %s; want the same, non-zero", plain[2], hook[2])
	}
	if plain[3] != "0" || hook[3] != "0" {
		t.Errorf("errors: plain %s, hook %s; want 0", plain[3], hook[3])
	}
	if num(hook[4]) >= num(plain[4]) {
		t.Errorf("hook run wrote %s bytes, plain run %s; want fewer", hook[4], plain[4])
	}
	if plain[6] != plain[2] {
		t.Errorf("plain run sent %s bodies in %s calls; every EVAL carries one", plain[6], plain[2])
	}
	// Single calls: one body per master before the flush and one after.
	// Pipelines (strict mode): one per pipeline per master, as the tenants'
	// hash tags cover every master of a three-master cluster. Transactions:
	// one each, as each stays on one slot.
	if want := strconv.Itoa(2*masters + pipelines*masters + transactions); hook[6] != want {
		t.Errorf("hook run sent %s bodies, want %s", hook[6], want)
	}
	if want := strconv.Itoa(masters); hook[7] != want {
		t.Errorf("hook run repaired %s NOSCRIPT, want %s (one per master after SCRIPT FLUSH)", hook[7], want)
	}
	if !strings.Contains(out, "replies: identical in both runs") {
		t.Errorf("runs got different replies:\n%s", out)
	}
	if strings.Contains(out, "note:") {
		t.Errorf("the hook's count of bodies disagrees with the wire:\n%s", out)
	}
	table, spans, found := strings.Cut(out, "\nspans of the hook run:")
	if !found {
		t.Errorf("no span waterfall:\n%s", out)
	}
	if !strings.Contains(spans, "rate-limiter") || !strings.Contains(spans, "reloaded (NOSCRIPT)") ||
		!strings.Contains(spans, "PIPELINE") || !strings.Contains(spans, "MULTI") {
		t.Errorf("the waterfall misses a script call, the repaired call, a pipeline or a transaction:\n%s", spans)
	}
	if n := strings.Count(table, "\n"); n >= 25 {
		t.Errorf("report is %d lines, want fewer than 25", n)
	}
}
