package main

import (
	"context"
	"fmt"

	"github.com/scripthook/scripthook"
)

// runResult is one run of the workload.
type runResult struct {
	name   string
	hooked bool
	phases []phaseResult
	digest uint64 // of every reply, to compare runs
	// observed is the number of body-carrying commands the observer saw
	// leave the client; for the hook run it should equal Stats().BodiesSent.
	observed int64
}

// total adds up the phases.
func (r runResult) total() phaseResult {
	t := phaseResult{name: "total"}
	for _, p := range r.phases {
		t.calls += p.calls
		t.errors += p.errors
		if t.firstErr == nil {
			t.firstErr = p.firstErr
		}
		t.written += p.written
		t.read += p.read
		t.bodies += p.bodies
		t.repaired += p.repaired
	}
	if !r.hooked {
		t.repaired = -1
	}
	return t
}

// runOnce runs the workload on a fresh client: plain when h is nil, with h
// otherwise. A fresh client means fresh connections, so the byte counts
// include each run's own handshake and nothing of the other run.
//
// Both runs start from the same state, with the workload's keys deleted and
// the server's script cache empty, so they must get the same replies and
// the first EVAL of each has to carry the body.
func runOnce(ctx context.Context, tgt *target, cfg config, script, name string, h *scripthook.Hook) (runResult, error) {
	res := runResult{name: name, hooked: h != nil}
	if err := tgt.deleteKeys(ctx); err != nil {
		return res, err
	}
	if err := tgt.flushScripts(ctx); err != nil {
		return res, fmt.Errorf("SCRIPT FLUSH before the run: %w", err)
	}

	wire := &wireCounter{}
	obs := &bodyObserver{}
	rdb := tgt.newClient(wire.dialer(dialTimeout))
	defer rdb.Close()
	if err := tgt.install(rdb, h, obs); err != nil {
		return res, err
	}

	w := &workload{rdb: rdb, script: script, single: cfg.single, flush: tgt.flushScripts}
	phases := []struct {
		name string
		run  func(context.Context, *phaseResult) error
	}{
		{"single", w.runSingle},
		{"pipeline", w.runPipelines},
		{"tx", w.runTransactions},
	}
	for _, p := range phases {
		ph := phaseResult{name: p.name}
		written0, read0 := wire.snapshot()
		var stats0 scripthook.Stats
		if h != nil {
			stats0 = h.Stats()
		}
		observed0 := obs.bodies.Load()

		if err := p.run(ctx, &ph); err != nil {
			return res, fmt.Errorf("%s phase: %w", p.name, err)
		}

		written1, read1 := wire.snapshot()
		ph.written, ph.read = written1-written0, read1-read0
		if h != nil {
			// The hook's own account of what it sent and repaired.
			stats1 := h.Stats()
			ph.bodies = stats1.BodiesSent - stats0.BodiesSent
			ph.repaired = stats1.NoScriptRepaired - stats0.NoScriptRepaired
		} else {
			// Without a hook every EVAL carries its body; the observer
			// counts them as they go out.
			ph.bodies = obs.bodies.Load() - observed0
			ph.repaired = -1
		}
		res.phases = append(res.phases, ph)
	}
	res.digest = w.digest.sum
	res.observed = obs.bodies.Load()
	return res, nil
}
