// Command scripthook-demo shows what scripthook saves on the wire.
//
// It runs one deterministic workload twice, first with a plain go-redis
// client and then with a client that has a scripthook.Hook, and prints how
// many bytes each wrote to its sockets, how many script bodies each sent and
// how many NOSCRIPT replies the hook repaired. The workload calls a 4 KB Lua
// rate limiter with EVAL: single calls (with the server's script cache
// flushed halfway, by another client), pipelines and MULTI/EXEC
// transactions. It ends with a sample of the hook run's spans (the first
// calls, the repaired one, the first pipeline and transaction) as a text
// waterfall on one time axis. On a server with Redis 7 Functions it then
// calls the same rate limiter as a function with FCALL, removes the library
// by FUNCTION FLUSH halfway (FUNCTION DELETE of its own library where the
// server holds others) and shows the plain client's "Function not found"
// against the hook's repair.
//
// Usage:
//
//	scripthook-demo                         # embedded miniredis
//	scripthook-demo -addr 127.0.0.1:6380    # a real Redis (keys under "scripthook-demo:", deleted at the end)
//	scripthook-demo -cluster h1:p1,h2:p2    # a Redis Cluster
//
// The exit status is 0 when both runs completed without errors and got the
// same replies, 1 otherwise (including an unreachable server), 2 for bad
// flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/scripthook/scripthook"
)

// runTimeout bounds a whole demo, so that a server that stops answering
// ends it with an error instead of hanging.
const runTimeout = 2 * time.Minute

// defaultSingle is the number of single EVAL calls without -n.
const defaultSingle = 200

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// config is what the flags say.
type config struct {
	addr    string // standalone Redis; "" for the embedded miniredis
	db      int
	cluster string // comma-separated seed addresses of a Redis Cluster
	single  int    // number of single EVAL calls
}

// run is the whole program, with its arguments and outputs passed in so
// tests can call it. It returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	cfg, status, ok := parseFlags(args, stderr)
	if !ok {
		return status
	}
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()

	tgt, err := openTarget(ctx, cfg)
	if err != nil {
		return fail(stderr, err)
	}
	defer tgt.close()

	tr := newTracing()
	plain, hooked, err := runBoth(ctx, tgt, cfg, tr)
	// Delete the keys even after a failure: a real server is left as it was.
	if cerr := tgt.deleteKeys(ctx); cerr != nil && err == nil {
		err = fmt.Errorf("cleaning up: %w", cerr)
	}
	if err != nil {
		return fail(stderr, err)
	}

	printReport(stdout, tgt.desc, cfg, plain, hooked)
	printWaterfall(stdout, tr)

	status = verdict(stderr, plain, hooked)
	if !tgt.hasFunctions(ctx) {
		fmt.Fprintf(stdout, "\nFunctions: skipped, %s has no FUNCTION command (run with -addr or -cluster against Redis 7+)\n", tgt.desc)
		return status
	}
	fplain, fhooked, how, ferr := runFunctions(ctx, tgt)
	if ferr != nil {
		return fail(stderr, fmt.Errorf("functions: %w", ferr))
	}
	printFunctions(stdout, fplain, fhooked, how)
	if fhooked.errors > 0 {
		status = fail(stderr, fmt.Errorf("functions, hook run: %d errors, the first: %v", fhooked.errors, fhooked.firstErr))
	}
	return status
}

// runBoth runs the workload without and then with the hook.
func runBoth(ctx context.Context, tgt *target, cfg config, tr *tracing) (plain, hooked runResult, err error) {
	script := buildScript()
	plain, err = runOnce(ctx, tgt, cfg, script, "plain", nil)
	if err != nil {
		return plain, hooked, fmt.Errorf("plain run: %w", err)
	}
	hook := scripthook.New(hookOptions(tr)...)
	// A registered name shows in the spans instead of the SHA1.
	hook.Register("rate-limiter", script)
	hooked, err = runOnce(ctx, tgt, cfg, script, "hook", hook)
	if err != nil {
		return plain, hooked, fmt.Errorf("hook run: %w", err)
	}
	return plain, hooked, nil
}

// hookOptions configures the hook of the second run. The defaults are what
// the demo is about, plus spans recorded in memory for the waterfall; this
// is the one place to change them (pipeline mode, ...).
func hookOptions(tr *tracing) []scripthook.Option {
	return []scripthook.Option{scripthook.WithTracerProvider(tr.rec)}
}

// parseFlags reads the command line. ok is false when run must return
// status at once: 0 after -h, 2 after a usage error (already reported).
func parseFlags(args []string, stderr io.Writer) (cfg config, status int, ok bool) {
	fs := flag.NewFlagSet("scripthook-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.addr, "addr", "", "run against the Redis at `host:port` instead of an embedded miniredis")
	fs.IntVar(&cfg.db, "db", 0, "database number to use with -addr")
	fs.StringVar(&cfg.cluster, "cluster", "", "run against the Redis Cluster with these seed nodes (`host:port,host:port,...`)")
	fs.IntVar(&cfg.single, "n", defaultSingle, "number of single EVAL calls (the script cache is flushed after half of them)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: scripthook-demo [-addr host:port [-db n] | -cluster host:port,...] [-n calls]\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, 0, false
		}
		return cfg, 2, false
	}
	var problem string
	switch {
	case fs.NArg() > 0:
		problem = fmt.Sprintf("unexpected argument %q", fs.Arg(0))
	case cfg.addr != "" && cfg.cluster != "":
		problem = "-addr and -cluster exclude each other"
	case cfg.cluster != "" && cfg.db != 0:
		problem = "-db cannot be used with -cluster: a cluster has only db 0"
	case cfg.db < 0:
		problem = "-db must not be negative"
	case cfg.single < 1 || cfg.single > 1_000_000:
		problem = "-n must be between 1 and 1000000"
	}
	if problem != "" {
		fmt.Fprintf(stderr, "scripthook-demo: %s\n", problem)
		fs.Usage()
		return cfg, 2, false
	}
	return cfg, 0, true
}

// fail reports err on one line of stderr and returns the exit status.
func fail(stderr io.Writer, err error) int {
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	fmt.Fprintf(stderr, "scripthook-demo: %s\n", msg)
	return 1
}

// verdict turns the runs' self-checks into the exit status: the demo is
// also a smoke test, so errors or differing replies must not pass silently.
func verdict(stderr io.Writer, runs ...runResult) int {
	status := 0
	for _, r := range runs {
		if t := r.total(); t.errors > 0 {
			status = fail(stderr, fmt.Errorf("%s run: %d errors, the first: %v", r.name, t.errors, t.firstErr))
		}
	}
	for _, r := range runs[1:] {
		if r.digest != runs[0].digest {
			status = fail(stderr, fmt.Errorf("%s run got different replies than the %s run", r.name, runs[0].name))
		}
	}
	return status
}
