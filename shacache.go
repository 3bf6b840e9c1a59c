package scripthook

import (
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// DefaultCacheSize is how many script bodies a Hook remembers when
// WithCacheSize is not given. It is also the default number of scripts the
// hook pins on each server with SCRIPT LOAD (see WithCacheSize).
const DefaultCacheSize = 512

// script is one remembered script body. body and the traits are written
// before the script is published and never change.
type script struct {
	// body is scripthook's own copy of the bytes: what it sends in a SCRIPT
	// LOAD or in place of a caller's EVALSHA, and what every identity hit is
	// proven against. A caller's memory is never kept.
	body string
	// sha is the body's SHA1, nil until known: computed on first sight, or,
	// when SHA-1 may not be used (FIPS 140-only mode), learned from the reply
	// to the hook's own SCRIPT LOAD.
	sha atomic.Pointer[shaRef]
	// forgeable: the script can produce an error reply that reads like the
	// server's own refusal of EVALSHA (see forgeable), so scripthook never
	// sends it by SHA1, where it could not tell the two apart.
	forgeable bool
	// echoes: the script builds error replies from strings (error_reply or
	// an err table), so a call whose arguments spell a refusal is forgeable.
	echoes bool
	// registered scripts were given to Register: never evicted from the
	// cache, warmed on every server (see single.go, decide.go).
	registered atomic.Bool
	// name is the name given to Register; names caches span names.
	name  atomic.Pointer[string]
	names atomic.Pointer[[kindFCallRO + 1]string]
	// used is the clock bit: set on every hit, cleared by the eviction hand.
	used atomic.Bool
	// seen is set from the second sighting on: the script proved hot.
	seen atomic.Bool
	// compiles is set once a server ran or loaded it; broken once a
	// server's SCRIPT LOAD said it does not compile (SCRIPT LOAD runs
	// nothing, so the reply is the server's own): the hook stops loading it
	// to learn its SHA1.
	compiles, broken atomic.Bool
	// ids are identities (see bodyID) the script is indexed under. Guarded
	// by the cache lock.
	ids [2]bodyID
	// next is where the next identity goes in ids. Guarded by the cache lock.
	next uint8
}

// shaRef is a SHA1 in lower-case hex and the same string boxed once, so
// that building an EVALSHA allocates nothing for it.
type shaRef struct {
	hex string
	arg interface{}
}

func newSHARef(hex string) *shaRef { return &shaRef{hex: hex, arg: hex} }

// hex returns the SHA1, or "" while it is not known.
func (s *script) hex() string {
	if r := s.sha.Load(); r != nil {
		return r.hex
	}
	return ""
}

// displayName is the registered name, or the SHA1 (or "" while unknown).
func (s *script) displayName() string {
	if n := s.name.Load(); n != nil {
		return *n
	}
	return s.hex()
}

// bodyID is where a caller's body bytes lived and how many there were. It
// is only a hint: the memory is not kept alive (the address is stored as an
// integer), so it may be reused for other bytes, and a caller may even
// change bytes in place behind a string (unsafe.String over a reused
// buffer). Every hit is proven by comparing the caller's bytes with the
// script's own copy: a whole identity hit, compare included, costs about
// 34 ns for 200 B, 100 ns for 4 KB and 0.7 µs for 32 KB, against SHA-1's
// 0.34, 2.4 and 18 µs (BenchmarkCacheHit, README).
type bodyID struct {
	p uintptr
	n int
}

func idOf(body string) bodyID {
	return bodyID{p: uintptr(unsafe.Pointer(unsafe.StringData(body))), n: len(body)}
}

// shaCache remembers script bodies, bounded by a count, with CLOCK eviction
// (an approximation of LRU whose hits take no write lock).
type shaCache struct {
	mu     sync.RWMutex
	byID   map[bodyID]*script
	byBody map[string]*script
	bySHA  map[string]*script
	ring   []*script // evictable scripts; the clock hand walks it
	hand   int
	limit  int
	// hash computes a body's SHA1, or reports that it may not (FIPS).
	hash func(string) (string, bool)
}

func newSHACache(limit int, hash func(string) (string, bool)) *shaCache {
	return &shaCache{
		byID:   make(map[bodyID]*script),
		byBody: make(map[string]*script),
		bySHA:  make(map[string]*script),
		limit:  limit,
		hash:   hash,
	}
}

// forBody returns the script whose bytes are exactly body, learning it on
// first sight. A body seen before under the same identity costs a map lookup
// and the proof; a new identity with known content costs a hash of the
// content by the map; only unknown content is copied and SHA1-hashed.
func (c *shaCache) forBody(body string) *script {
	id := idOf(body)
	c.mu.RLock()
	s := c.byID[id]
	if s != nil && s.body != body {
		s = nil // the memory now holds other bytes
	}
	aliased := s != nil
	if s == nil {
		s = c.byBody[body]
	}
	c.mu.RUnlock()
	if s != nil {
		if !aliased {
			c.alias(s, id)
		}
		s.touch()
		return s
	}
	// Copy and hash outside the lock: they are the slow part. strings.Clone
	// copies for certain (the caller's bytes may change behind its string).
	own := strings.Clone(body)
	s = newScript(own, false)
	if sha, ok := c.hash(own); ok {
		s.sha.Store(newSHARef(sha))
	}
	return c.add(s, id)
}

func newScript(body string, registered bool) *script {
	s := &script{body: body}
	s.registered.Store(registered)
	s.forgeable, s.echoes = forgeable(body)
	return s
}

// alias indexes one more identity for a script, replacing its oldest, so
// the index stays bounded by two identities per script.
func (c *shaCache) alias(s *script, id bodyID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bySHA[s.hex()] != s && c.byBody[s.body] != s {
		return // evicted meanwhile
	}
	old := s.ids[s.next]
	if old != (bodyID{}) && c.byID[old] == s {
		delete(c.byID, old)
	}
	s.ids[s.next] = id
	s.next = (s.next + 1) % uint8(len(s.ids))
	c.byID[id] = s
}

// peek returns the script whose bytes are exactly body, or nil, without
// learning it or counting a sighting: for a top hook, which only names the
// call its node hook will look up.
func (c *shaCache) peek(body string) *script {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if s := c.byID[idOf(body)]; s != nil && s.body == body {
		return s
	}
	return c.byBody[body]
}

// peekSHA is peek by SHA1.
func (c *shaCache) peekSHA(sha string) *script {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.bySHA[sha]
}

// bySHA1 returns the script with that (lower-case) SHA1, or nil.
func (c *shaCache) bySHA1(sha string) *script {
	c.mu.RLock()
	s := c.bySHA[sha]
	c.mu.RUnlock()
	if s != nil {
		s.touch()
	}
	return s
}

// learnSHA records the SHA1 the server reported for a script whose SHA1 was
// not known (FIPS 140-only mode), so that calls by SHA1 find it.
func (c *shaCache) learnSHA(s *script, sha string) {
	if s.sha.Load() != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.sha.Load() != nil {
		return
	}
	s.sha.Store(newSHARef(sha))
	if c.byBody[s.body] == s || s.registered.Load() {
		c.bySHA[sha] = s
	}
}

// register remembers a body for good under a name.
func (c *shaCache) register(name, body string) *script {
	own := strings.Clone(body)
	s := newScript(own, true)
	if sha, ok := c.hash(own); ok {
		s.sha.Store(newSHARef(sha))
	}
	s = c.add(s, idOf(body))
	if name != "" {
		s.name.Store(&name)
		s.names.Store(nil)
	}
	return s
}

func (s *script) touch() {
	// Read before writing: a hot script's cache line stays shared between
	// cores instead of bouncing on every call.
	if !s.used.Load() {
		s.used.Store(true)
	}
	if !s.seen.Load() {
		s.seen.Store(true) // a second sighting: the script proved hot
	}
}

// add publishes a new script, or returns the one already there with the same
// body. A registered script is pinned: taken out of the eviction ring.
func (c *shaCache) add(s *script, id bodyID) *script {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.byBody[s.body]; old != nil {
		if s.registered.Load() && !old.registered.Load() {
			// Registering a body the cache already has keeps that script.
			c.unring(old)
			old.registered.Store(true)
		}
		return old
	}
	if !s.registered.Load() {
		for c.limit > 0 && len(c.ring) >= c.limit {
			c.evictOne()
		}
		c.ring = append(c.ring, s)
	}
	c.byBody[s.body] = s
	if sha := s.hex(); sha != "" {
		c.bySHA[sha] = s
	}
	s.ids[0], s.next = id, 1
	c.byID[id] = s
	return s
}

// evictOne removes the first script the clock hand finds unused, clearing
// the used bit of those it passes. Caller holds c.mu.
func (c *shaCache) evictOne() {
	for {
		if c.hand >= len(c.ring) {
			c.hand = 0
		}
		s := c.ring[c.hand]
		if s.used.Load() {
			s.used.Store(false)
			c.hand++
			continue
		}
		c.removeAt(c.hand)
		// removeAt moved the newest script into this slot: step past it,
		// so that it gets a full sweep before it can be evicted.
		c.hand++
		return
	}
}

// removeAt drops ring[i] from every index. Caller holds c.mu.
func (c *shaCache) removeAt(i int) {
	s := c.ring[i]
	last := len(c.ring) - 1
	c.ring[i] = c.ring[last]
	c.ring[last] = nil
	c.ring = c.ring[:last]
	if sha := s.hex(); sha != "" && c.bySHA[sha] == s {
		delete(c.bySHA, sha)
	}
	if c.byBody[s.body] == s {
		delete(c.byBody, s.body)
	}
	for _, id := range s.ids {
		if id != (bodyID{}) && c.byID[id] == s {
			delete(c.byID, id)
		}
	}
}

// unring takes a script out of the eviction ring (it is being pinned).
func (c *shaCache) unring(s *script) {
	for i, r := range c.ring {
		if r == s {
			last := len(c.ring) - 1
			c.ring[i] = c.ring[last]
			c.ring[last] = nil
			c.ring = c.ring[:last]
			return
		}
	}
}

// len reports how many scripts are remembered, registered ones included.
func (c *shaCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.byBody)
}
