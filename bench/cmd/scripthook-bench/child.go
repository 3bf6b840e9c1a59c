package main

// The FIPS 140-only row runs in a child process started with
// GODEBUG=fips140=only (the mode is fixed when a Go program starts). The
// child is this same executable: it reads the row from stdin, measures it
// against the parent's server, and writes the samples to stdout as JSON.

import (
	"bytes"
	"context"
	"crypto/fips140"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/scripthook/scripthook"
)

// childEnv marks the child process; its value names what it runs.
const childEnv = "SCRIPTHOOK_BENCH_CHILD"

// childSpec is the row a child measures.
type childSpec struct {
	Addr            string
	PID             int
	Seed            uint64
	Warm, Dur       time.Duration
	MaxInterference float64
	Size            int
	Goroutines      int
	Rounds          int
	Salt            uint64
	Contenders      []contender
}

// childResult is what the child measured.
type childResult struct {
	Enforced  bool // crypto/fips140.Enforced() in the child
	Samples   map[contender][][]json.RawMessage
	Orders    [][]int
	Redone    int
	HookDelta map[contender]scripthook.Stats
	Error     string
}

// fields lists a sample's fields, for JSON in both directions (decoding
// into the pointers fills the sample).
func (s *sample) fields() []any {
	return []any{&s.calls, &s.wrong, &s.noScript, &s.otherErr, &s.firstErr, &s.elapsed, &s.wall, &s.p50, &s.p99,
		&s.bytes, &s.trips, &s.srvNs, &s.srvExact, &s.cmdUs, &s.infoCPUUs, &s.cliCPU, &s.mallocs,
		&s.spans, &s.batches, &s.foreignNs}
}

// isChild reports whether this process is a child of the suite.
func isChild() bool { return os.Getenv(childEnv) != "" }

// runChildRow measures row r in a child process under GODEBUG=fips140=only.
func (s *suite) runChildRow(ctx context.Context, r *row) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	spec := childSpec{Addr: s.srv.Addr, PID: s.srv.PID(), Seed: s.cfg.seed, Warm: s.cfg.warm, Dur: r.dur,
		MaxInterference: s.cfg.maxInterference, Size: r.size, Goroutines: r.goroutines, Rounds: r.rounds,
		Salt: r.salt, Contenders: r.contenders}
	in, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), childEnv+"=fips", "GODEBUG=fips140=only")
	cmd.Stdin = bytes.NewReader(in)
	cmd.Stderr = s.cfg.log
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("child under GODEBUG=fips140=only: %w", err)
	}
	var res childResult
	if err := json.Unmarshal(out, &res); err != nil {
		return fmt.Errorf("child's result: %w", err)
	}
	if res.Error != "" {
		return fmt.Errorf("child under GODEBUG=fips140=only: %s", res.Error)
	}
	if !res.Enforced {
		return errors.New("child: GODEBUG=fips140=only was not in force")
	}
	r.samples = map[contender][]sample{}
	for c, raws := range res.Samples {
		for _, raw := range raws {
			var smp sample
			if err := decodeFields(raw, smp.fields()); err != nil {
				return fmt.Errorf("child's sample: %w", err)
			}
			r.samples[c] = append(r.samples[c], smp)
		}
	}
	r.orders, r.redone, r.hookDelta = res.Orders, res.Redone, res.HookDelta
	return nil
}

func decodeFields(raw []json.RawMessage, ptrs []any) error {
	if len(raw) != len(ptrs) {
		return fmt.Errorf("%d fields, want %d", len(raw), len(ptrs))
	}
	for i := range raw {
		if err := json.Unmarshal(raw[i], ptrs[i]); err != nil {
			return err
		}
	}
	return nil
}

// childMain is the child's whole life: stdin has a childSpec, stdout gets a
// childResult. Progress goes to stderr, which the parent logs.
func childMain() int {
	res := childResult{Enforced: fips140.Enforced()}
	err := func() error {
		var spec childSpec
		if err := json.NewDecoder(os.Stdin).Decode(&spec); err != nil {
			return err
		}
		if !res.Enforced {
			return errors.New("GODEBUG=fips140=only is not in force")
		}
		cfg := defaultConfig()
		cfg.seed, cfg.warm, cfg.maxInterference, cfg.log = spec.Seed, spec.Warm, spec.MaxInterference, os.Stderr
		ctx := context.Background()
		s, err := newSuite(ctx, &cfg, &server{Addr: spec.Addr, pid: spec.PID})
		if err != nil {
			return err
		}
		defer s.close()
		s.inChild = true
		r := &row{group: groupFIPS, size: spec.Size, mode: modeSingle, goroutines: spec.Goroutines,
			rounds: spec.Rounds, dur: spec.Dur, contenders: spec.Contenders, fips: true, salt: spec.Salt}
		if err := s.runRow(ctx, r); err != nil {
			return err
		}
		res.Samples = map[contender][][]json.RawMessage{}
		for c, ss := range r.samples {
			for i := range ss {
				var fs []json.RawMessage
				for _, p := range ss[i].fields() {
					b, err := json.Marshal(p)
					if err != nil {
						return err
					}
					fs = append(fs, b)
				}
				res.Samples[c] = append(res.Samples[c], fs)
			}
		}
		res.Orders, res.Redone, res.HookDelta = r.orders, r.redone, r.hookDelta
		return nil
	}()
	if err != nil {
		res.Error = err.Error()
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}
