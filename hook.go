package scripthook

import (
	"github.com/redis/go-redis/v9"
)

// Hook is the scripthook a program holds: configuration, the script bodies
// it has learned, its counters and its telemetry. It is a go-redis hook
// itself, for rdb.AddHook(h) on one *redis.Client (standalone or Sentinel);
// Install (or Instrument) attaches it to any client, and gives every
// *redis.Client, and every node of a ClusterClient or Ring, a hook of its
// own with its own record of what that server has loaded. A Hook is safe for
// concurrent use.
type Hook struct {
	sh *shared
	// own is the client hook that serves the Hook's own redis.Hook methods,
	// for AddHook. Clients reached through Install get their own.
	own *clientHook
}

var _ redis.Hook = (*Hook)(nil)

// shared is what every hook made from one New call has in common. It is
// immutable after New except for the cache and counters, which are safe for
// concurrent use.
type shared struct {
	cfg   config
	cache *shaCache
	stats counters
	tel   *telemetry
	// claimed records the clients and nodes that have a hook of this one.
	claimed registry
	// hints is what the servers said about the user's permissions.
	hints capHints
	// libs are the function libraries given to RegisterLibrary; fns counts
	// what the hook did for them.
	libs libraries
	fns  fnCounters
}

// New returns a Hook configured by opts.
func New(opts ...Option) *Hook {
	cfg := newConfig(opts)
	sh := &shared{cfg: cfg, cache: newSHACache(cfg.cacheSize, sha1Hex)}
	sh.tel = newTelemetry(&sh.cfg, sh)
	return &Hook{sh: sh, own: newClientHook(sh, "", "")}
}

// newServerState returns the state of one server, bounded by the options:
// its record holds every cached script with room for registered ones, and
// its pin budget is the cache size.
func (sh *shared) newServerState() *server {
	sv := newServer(2*sh.cfg.cacheSize+64, sh.cfg.cacheSize, &sh.hints)
	sv.cached = func(sha string) bool { return sh.cache.peekSHA(sha) != nil }
	return sv
}

// Register remembers a script body under a readable name and returns its
// SHA1 in lower-case hex. A registered script is never evicted from the
// Hook's cache; it is loaded with SCRIPT LOAD on each server before or with
// its first call there (one extra round trip per server the first time, in
// single calls; none in pipelines), so neither EVAL nor EVALSHA calls for it
// meet NOSCRIPT after a failover, a restart or on a new node; and traces
// show the name instead of the SHA1. Registering the same body again renames
// it. Where SHA-1 may not be used (GODEBUG=fips140=only) it returns "": the
// SHA1 is learned from the first server that loads the script.
func (h *Hook) Register(name, src string) string {
	return h.sh.cache.register(name, src).hex()
}

// RegisterLibrary remembers a function library (Redis 7 Functions) and
// returns its name, read from its first line, "#!lua name=<library>". From
// then on, on every server a client of the Hook calls one of its functions
// (FCALL, FCALL_RO; singly, in pipelines and transactions), the hook makes
// sure the server holds this code: before the first such call on each
// server it sends FUNCTION LOAD REPLACE with the code (once per server, and
// again after a restart, a failover or a FUNCTION FLUSH it saw), and a call
// answered "Function not found" is repaired once, on that same server (see
// README for pipelines and transactions). Registering changed code under the
// same name replaces the library the same way on every server, before the
// next call there. The functions are those the code registers by a literal
// name; it is an error when there is none, when the header is missing or
// malformed, or when another registered library has one of the functions.
func (h *Hook) RegisterLibrary(code string) (string, error) {
	l, err := h.sh.libs.register(code)
	if err != nil {
		return "", err
	}
	return l.name, nil
}

// DialHook is the redis.Hook method for AddHook; see Hook.
func (h *Hook) DialHook(next redis.DialHook) redis.DialHook { return h.own.DialHook(next) }

// ProcessHook is the redis.Hook method for AddHook; see Hook.
func (h *Hook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return h.own.ProcessHook(next)
}

// ProcessPipelineHook is the redis.Hook method for AddHook; see Hook.
func (h *Hook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return h.own.ProcessPipelineHook(next)
}
