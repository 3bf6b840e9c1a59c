package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"text/tabwriter"
)

// printReport writes the comparison: a short header saying what ran, one
// row per run and phase plus a total per run, and the saving in bytes
// written. It stays under 25 lines and prints nothing that changes from one
// invocation to the next (no addresses of embedded servers, no timings), so
// its output can be compared and pasted.
func printReport(out io.Writer, desc string, cfg config, runs ...runResult) {
	fmt.Fprintf(out, "scripthook-demo: %d-byte Lua script (rate limiter) on %s\n", scriptSize, desc)
	fmt.Fprintf(out, "workload: %d single EVAL (SCRIPT FLUSH after %d), %d pipelines x %d EVAL, %d MULTI/EXEC x %d EVAL\n\n",
		cfg.single, cfg.single/2, pipelines, pipelineSize, transactions, txSize)

	// AlignRight suits the numbers; the two text columns are padded to
	// their own width first, so that they read left-aligned. The gap
	// between columns is part of each cell rather than tabwriter padding,
	// which AlignRight would also put in front of the first column.
	tw := tabwriter.NewWriter(out, 0, 0, 0, ' ', tabwriter.AlignRight)
	runW, phaseW := len("RUN"), len("PHASE")
	for _, r := range runs {
		runW = max(runW, len(r.name))
		for _, p := range r.phases {
			phaseW = max(phaseW, len(p.name))
		}
	}
	row := func(cells ...string) {
		cells[0] = fmt.Sprintf("%-*s", runW, cells[0])
		cells[1] = fmt.Sprintf("%-*s", phaseW, cells[1])
		for i, c := range cells {
			if i > 0 {
				c = "  " + c
			}
			fmt.Fprint(tw, c, "\t")
		}
		fmt.Fprintln(tw)
	}
	row("RUN", "PHASE", "CALLS", "ERRORS", "BYTES WRITTEN", "BYTES READ", "BODIES SENT", "NOSCRIPT REPAIRED")
	for _, r := range runs {
		for _, p := range append(slices.Clip(r.phases), r.total()) {
			repaired := "-" // a plain client has nothing that could repair
			if p.repaired >= 0 {
				repaired = strconv.FormatInt(p.repaired, 10)
			}
			row(r.name, p.name, strconv.Itoa(p.calls), strconv.Itoa(p.errors),
				commas(p.written), commas(p.read), strconv.FormatInt(p.bodies, 10), repaired)
		}
	}
	tw.Flush()
	fmt.Fprintln(out)

	if len(runs) != 2 {
		return
	}
	base, hook := runs[0].total(), runs[1].total()
	if hook.written > 0 && base.written > 0 {
		fmt.Fprintf(out, "bytes written: %s with the hook, %s without: %.1fx less (-%.1f%%)\n",
			commas(hook.written), commas(base.written),
			float64(base.written)/float64(hook.written),
			100*(1-float64(hook.written)/float64(base.written)))
	}
	same := "identical"
	if runs[0].digest != runs[1].digest {
		same = "DIFFERENT"
	}
	fmt.Fprintf(out, "replies: %s in both runs\n", same)
	// The observer sits below the hook and counts bodies on their way out;
	// if it disagrees with the hook's own count, one of them is wrong.
	if hook.bodies != runs[1].observed {
		fmt.Fprintf(out, "note: the hook counted %d bodies sent, the wire shows %d\n", hook.bodies, runs[1].observed)
	}
}

// commas formats n with thousands separators, for byte counts read at a
// glance.
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	var b []byte
	for i, c := range []byte(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			b = append(b, ',')
		}
		b = append(b, c)
	}
	if neg {
		return "-" + string(b)
	}
	return string(b)
}
