package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/scripthook/scripthook/internal/spanrec"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// tracing records the hook run's spans in memory, with spanrec (the
// OpenTelemetry API alone), so that the demo adds no SDK to the library's
// module. A program passes its SDK's TracerProvider instead.
type tracing struct {
	rec *spanrec.Recorder
}

func newTracing() *tracing { return &tracing{rec: spanrec.New()} }

// Shape of the waterfall.
const (
	// The run's first script calls are shown up to the first warm one (sent
	// with no body), at least minFirstCalls and at most maxFirstCalls of
	// them: on a standalone server the cold call and a warm one, on a
	// cluster the cold call on each master its first tenants reach.
	minFirstCalls = 2
	maxFirstCalls = 4
	// childrenShown bounds the child spans printed under one span.
	childrenShown = 2
	// childDepth bounds the levels of children printed under a top-level
	// span (a Cluster's batch has node batches, which have script spans).
	childDepth = 2
	// axisCells is the width of the time axis, in characters.
	axisCells = 40
)

// printWaterfall prints a sample of the run's span trees as a text
// waterfall: the first script calls, the first call that repaired a
// NOSCRIPT, the first pipeline and the first transaction, each with some of
// its children. Every bar is drawn on one time axis shared by the spans
// shown, so their lengths compare: the time between the sampled spans is
// left out of the axis (marked ┆), the time of the spans themselves is not.
func printWaterfall(w io.Writer, t *tracing) {
	spans := t.rec.Ended()
	if len(spans) == 0 {
		return
	}
	sort.SliceStable(spans, func(i, j int) bool { return spans[i].StartTime.Before(spans[j].StartTime) })
	children := map[trace.SpanID][]*spanrec.Span{}
	var roots []*spanrec.Span
	for _, s := range spans {
		if s.Parent.IsValid() {
			children[s.Parent.SpanID()] = append(children[s.Parent.SpanID()], s)
		} else {
			roots = append(roots, s)
		}
	}

	var rows []row
	var add func(s *spanrec.Span, depth int)
	add = func(s *spanrec.Span, depth int) {
		rows = append(rows, row{span: s, depth: depth})
		if depth == childDepth {
			return
		}
		kids := children[s.SpanContext.SpanID()]
		for i, k := range kids {
			if i == childrenShown {
				rows = append(rows, row{more: len(kids) - childrenShown, depth: depth + 1})
				break
			}
			add(k, depth+1)
		}
	}
	for _, r := range pick(roots) {
		add(r, 0)
	}
	var shown []interval
	for _, r := range rows {
		if r.span != nil {
			shown = append(shown, interval{r.span.StartTime, r.span.EndTime})
		}
	}
	ax := newAxis(shown, axisCells)

	origin := spans[0].StartTime
	fmt.Fprintf(w, "\nspans of the hook run: %d recorded (in-memory OpenTelemetry SDK); a sample on one time axis\n", len(spans))
	fmt.Fprintf(w, "(%s of span time across %d characters; ┆ marks time between the spans shown, left out):\n", ms(ax.total), axisCells)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "START\tDURATION\tTIMELINE\tSPAN\tATTRIBUTES")
	for _, r := range rows {
		indent := strings.Repeat("  ", max(0, r.depth-1))
		if r.depth > 0 {
			indent += "├─ "
		}
		if r.span == nil {
			fmt.Fprintf(tw, "\t\t%s\t%s… %d more\t\n", ax.bar(time.Time{}, time.Time{}), strings.Replace(indent, "├", "└", 1), r.more)
			continue
		}
		s := r.span
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s%s\t%s\n",
			ms(s.StartTime.Sub(origin)), ms(s.EndTime.Sub(s.StartTime)),
			ax.bar(s.StartTime, s.EndTime), indent, s.Name, describe(s))
	}
	_ = tw.Flush()
}

// row is one line of the waterfall: a span, or how many more children its
// parent has than are shown (span nil).
type row struct {
	span  *spanrec.Span
	more  int
	depth int
}

// pick chooses the top-level spans worth a look, in the order they started:
// the first script calls (see minFirstCalls), the first repaired call, the
// first pipeline and the first transaction.
func pick(roots []*spanrec.Span) []*spanrec.Span {
	var picked []*spanrec.Span
	calls := 0
	var warm, repaired, pipeline, multi bool
	for _, r := range roots {
		switch batch := batchKind(r); {
		case batch == "PIPELINE" && !pipeline:
			pipeline = true
		case batch == "MULTI" && !multi:
			multi = true
		case batch == "" && !repaired && boolAttr(r, "scripthook.repaired"):
			repaired = true
		case batch == "" && (calls < minFirstCalls || !warm && calls < maxFirstCalls):
			calls++
			warm = warm || !boolAttr(r, "scripthook.body_sent")
		default:
			continue
		}
		picked = append(picked, r)
	}
	return picked
}

// batchKind is PIPELINE or MULTI for a batch span, "" for a script call.
// Batch spans are named PIPELINE or MULTI, followed by the command when all
// of the batch's commands are the same.
func batchKind(s *spanrec.Span) string {
	name := s.Name
	for _, b := range []string{"PIPELINE", "MULTI"} {
		if name == b || strings.HasPrefix(name, b+" ") {
			return b
		}
	}
	return ""
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

// describe summarizes what a span says scripthook did: what went out in
// place of the caller's command, whether a body went with it, a repair with
// its cause and how; for a batch, its size and counts.
func describe(s *spanrec.Span) string {
	var parts []string
	a := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		a[kv.Key] = kv.Value
	}
	if v, ok := a["scripthook.sent"]; ok {
		parts = append(parts, "sent="+v.AsString())
	}
	if v, ok := a["scripthook.body_sent"]; ok && v.AsBool() {
		parts = append(parts, "body_sent")
	}
	if v, ok := a["scripthook.repaired"]; ok && v.AsBool() {
		repair := "repaired"
		for _, ev := range s.Events {
			if ev.Name != "scripthook.repair" {
				continue
			}
			for _, kv := range ev.Attributes {
				switch kv.Key {
				case "scripthook.repair.cause":
					repair += " cause=" + kv.Value.AsString()
				case "scripthook.repair.how":
					repair += " how=" + kv.Value.AsString()
				}
			}
		}
		parts = append(parts, repair)
	}
	if v, ok := a["db.operation.batch.size"]; ok {
		parts = append(parts, fmt.Sprintf("batch=%d", v.AsInt64()))
	}
	for _, c := range []struct {
		key   attribute.Key
		label string
		zero  bool // show it when it is 0
	}{
		{"scripthook.batch.bodies_sent", "bodies", true},
		{"scripthook.batch.rewritten", "rewritten", true},
		{"scripthook.batch.repaired", "repaired", false},
		{"scripthook.batch.scripts_without_span", "without_span", false},
	} {
		if v, ok := a[c.key]; ok && (c.zero || v.AsInt64() != 0) {
			parts = append(parts, fmt.Sprintf("%s=%d", c.label, v.AsInt64()))
		}
	}
	return strings.Join(parts, " ")
}

func boolAttr(s *spanrec.Span, key attribute.Key) bool {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value.AsBool()
		}
	}
	return false
}

// interval is a span's time.
type interval struct{ start, end time.Time }

// axis maps times onto the waterfall's one time axis: the shown spans'
// time, merged into segments where they overlap or follow closely, laid end
// to end with one marker cell between segments. Within a segment, position
// is proportional to time, and the scale is the same for all of them, so
// bar lengths compare across the whole waterfall.
type axis struct {
	segs  []interval
	cum   []time.Duration // time in the segments before segs[i]
	total time.Duration   // time in all segments
	cells int             // width of the time part, without the markers
	scale float64         // cells per nanosecond
}

// newAxis builds the axis for the given spans' intervals. A gap shorter than
// one cell's worth of time is kept on the axis, not cut: marking it would
// cost more room than drawing it.
func newAxis(spans []interval, cells int) *axis {
	ax := &axis{cells: cells}
	if len(spans) == 0 {
		return ax
	}
	ivs := append([]interval(nil), spans...)
	sort.Slice(ivs, func(i, j int) bool { return ivs[i].start.Before(ivs[j].start) })
	var merged []interval
	var covered time.Duration
	for _, iv := range ivs {
		if iv.end.Before(iv.start) {
			iv.end = iv.start
		}
		if n := len(merged); n > 0 && !iv.start.After(merged[n-1].end) {
			if iv.end.After(merged[n-1].end) {
				covered += iv.end.Sub(merged[n-1].end)
				merged[n-1].end = iv.end
			}
			continue
		}
		covered += iv.end.Sub(iv.start)
		merged = append(merged, iv)
	}
	cell := covered / time.Duration(cells)
	for _, iv := range merged {
		if n := len(ax.segs); n > 0 && iv.start.Sub(ax.segs[n-1].end) < cell {
			ax.segs[n-1].end = iv.end
			continue
		}
		ax.segs = append(ax.segs, iv)
	}
	for _, sg := range ax.segs {
		ax.cum = append(ax.cum, ax.total)
		ax.total += sg.end.Sub(sg.start)
	}
	if ax.total > 0 {
		ax.scale = float64(cells) / float64(ax.total)
	}
	return ax
}

// width is the axis's width in characters, markers included.
func (ax *axis) width() int { return ax.cells + max(0, len(ax.segs)-1) }

// pos is where t falls on the axis, in cells from its start.
func (ax *axis) pos(t time.Time) float64 {
	for i, sg := range ax.segs {
		if t.After(sg.end) && i < len(ax.segs)-1 {
			continue
		}
		off := t.Sub(sg.start)
		off = min(max(off, 0), sg.end.Sub(sg.start))
		return float64(ax.cum[i]+off)*ax.scale + float64(i)
	}
	return 0
}

// markers returns the cells that separate segments.
func (ax *axis) markers() map[int]bool {
	m := map[int]bool{}
	for i := 1; i < len(ax.segs); i++ {
		m[int(math.Round(float64(ax.cum[i])*ax.scale))+i-1] = true
	}
	return m
}

// eighths are the block characters one to eight eighths of a cell wide.
var eighths = []rune("▏▎▍▌▋▊▉█")

// bar draws the span [start, end] on the axis: it begins at the cell
// nearest its start and is as long as its duration, to an eighth of a cell
// (at least one eighth, so that no span vanishes). A zero start draws the
// axis's markers only.
func (ax *axis) bar(start, end time.Time) string {
	w := ax.width()
	line := []rune(strings.Repeat(" ", w))
	for c := range ax.markers() {
		if c >= 0 && c < w {
			line[c] = '┆'
		}
	}
	if !start.IsZero() && w > 0 {
		p0, p1 := ax.pos(start), ax.pos(end)
		from := min(int(math.Round(p0)), w-1) * 8
		to := from + max(1, int(math.Round((p1-p0)*8)))
		to = min(to, w*8)
		for c := from / 8; c*8 < to; c++ {
			if n := min(to, c*8+8) - c*8; n > 0 {
				line[c] = eighths[n-1]
			}
		}
	}
	return strings.TrimRight(string(line), " ")
}
