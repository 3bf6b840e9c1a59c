package scripthook

import (
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// PipelineMode says how a Hook treats scripts inside pipelines and
// transactions.
type PipelineMode int

const (
	// PipelineStrict makes every batch independent of the server's script
	// cache: each script's body crosses the wire once per batch per node,
	// ahead of its first use in the same batch. Results and order are those of
	// the same batch sent with plain EVAL. This is the default.
	PipelineStrict PipelineMode = iota
	// PipelineOptimistic trusts what the hook believes each node has loaded,
	// so warm batches carry no body at all. A NOSCRIPT is retried in one extra
	// round trip only when nothing that succeeded follows the first failure;
	// otherwise those commands keep the NOSCRIPT error. It never reorders.
	PipelineOptimistic
)

// String returns the mode's name.
func (m PipelineMode) String() string {
	switch m {
	case PipelineStrict:
		return "strict"
	case PipelineOptimistic:
		return "optimistic"
	}
	return "unknown"
}

// DefaultMaxChildSpans is how many script commands of one batch get a child
// span when WithMaxChildSpans is not given.
const DefaultMaxChildSpans = 128

// DefaultMaxScriptNames is how many scripts that were not registered (and
// functions) may name spans and metric series by SHA1 (or function name)
// when WithMaxScriptNames is not given.
const DefaultMaxScriptNames = 100

// config is a Hook's configuration. newConfig sets every default in one
// place; it is never changed after New returns.
type config struct {
	rewrite       bool
	cacheSize     int
	pipelineMode  PipelineMode
	maxBatchSize  int
	tracingOn     bool
	queryText     bool
	maxChildSpans int
	// maxScriptNames bounds the names of spans and metric series.
	maxScriptNames int
	tp             trace.TracerProvider
	mp             metric.MeterProvider
	// tpGiven says the provider came from WithTracerProvider, not the global.
	tpGiven bool
}

// tracing reports whether spans are on at all: WithTracing, and not the
// no-op provider, which records nothing.
func (c *config) tracing() bool {
	_, isNoop := c.tp.(noop.TracerProvider)
	return c.tracingOn && !isNoop
}

func newConfig(opts []Option) config {
	c := config{
		rewrite:        true,
		cacheSize:      DefaultCacheSize,
		pipelineMode:   PipelineStrict,
		tracingOn:      true,
		maxChildSpans:  DefaultMaxChildSpans,
		maxScriptNames: DefaultMaxScriptNames,
	}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	return c
}

// Option configures a Hook. Only this package can make options.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithRewrite turns sending EVAL/EVAL_RO as EVALSHA/EVALSHA_RO on or off.
// With rewriting off the hook still repairs NOSCRIPT for EVALSHA calls whose
// body it knows, and still traces. Default: true.
func WithRewrite(on bool) Option {
	return optionFunc(func(c *config) { c.rewrite = on })
}

// WithCacheSize bounds how many script bodies the hook remembers (scripts
// given to Register are kept in addition). Memory is about n times the size
// of the largest body. A script that was forgotten is learned again from the
// next EVAL that carries it; an EVALSHA for it then passes through as it
// would without the hook. n is also the pin budget: how many scripts the
// hook's own SCRIPT LOADs may make permanent on one server between two
// flushes (a script loaded by SCRIPT LOAD is never evicted, so this bounds
// the server memory the hook can hold; registered scripts are pinned in
// addition). A value below 1 is ignored. Default: DefaultCacheSize (512).
func WithCacheSize(n int) Option {
	return optionFunc(func(c *config) {
		if n >= 1 {
			c.cacheSize = n
		}
	})
}

// WithPipelineMode sets how scripts in pipelines and transactions are sent.
// Default: PipelineStrict.
func WithPipelineMode(m PipelineMode) Option {
	return optionFunc(func(c *config) {
		if m == PipelineStrict || m == PipelineOptimistic {
			c.pipelineMode = m
		}
	})
}

// WithMaxBatchSize sends a non-transactional pipeline of more than n commands
// as consecutive sub-batches of at most n commands, in order, so the server
// never buffers the replies of a huge pipeline at once. Transactions are never
// split. 0 turns splitting off. Default: 0.
func WithMaxBatchSize(n int) Option {
	return optionFunc(func(c *config) {
		if n >= 0 {
			c.maxBatchSize = n
		}
	})
}

// WithTracing turns spans on or off. It is the one switch for spans:
// WithTracing(false) starts none whatever the provider, and with it on,
// spans go to the provider of WithTracerProvider (a no-op provider also
// records nothing, at the cost of starting its no-op spans). Metrics are
// not affected: WithMeterProvider decides them. Default: true.
func WithTracing(on bool) Option {
	return optionFunc(func(c *config) { c.tracingOn = on })
}

// WithMaxScriptNames bounds how many scripts (beyond registered ones, which
// are always named) and functions may give their SHA1 or name to spans and
// to the db.stored_procedure.name of the duration metric: scripts from their
// second call on, in the order they proved hot. Every other one is named
// OtherName, so the metric has a bounded number of series however many
// scripts a program builds. A negative value is ignored. Default:
// DefaultMaxScriptNames (100).
func WithMaxScriptNames(n int) Option {
	return optionFunc(func(c *config) {
		if n >= 0 {
			c.maxScriptNames = n
		}
	})
}

// WithTracerProvider sets the TracerProvider spans are created with. A nil
// provider is ignored. Default: the global provider (otel.GetTracerProvider).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) {
		if tp != nil {
			c.tp = tp
			c.tpGiven = true
		}
	})
}

// WithMeterProvider sets the MeterProvider metrics are recorded with. A nil
// provider is ignored. Default: the global provider (otel.GetMeterProvider).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(c *config) {
		if mp != nil {
			c.mp = mp
		}
	})
}

// WithQueryText adds a sanitized db.query.text attribute to script spans:
// the command, the script's name or SHA1, numkeys, and "?" in place of every
// key and argument. Keys, arguments and bodies are never recorded. Default:
// false, because even the shape of a query can be sensitive.
func WithQueryText(on bool) Option {
	return optionFunc(func(c *config) { c.queryText = on })
}

// WithMaxChildSpans sets how many script commands of one batch get a child
// span of the batch span; the batch span records how many got none. A
// negative value is ignored. Default: DefaultMaxChildSpans (128).
func WithMaxChildSpans(n int) Option {
	return optionFunc(func(c *config) {
		if n >= 0 {
			c.maxChildSpans = n
		}
	})
}
