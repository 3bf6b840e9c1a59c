package scripthook

import (
	"crypto/sha1"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"unsafe"
)

// DefaultCacheSize is how many script bodies a Hook remembers when
// WithCacheSize is not given.
const DefaultCacheSize = 512

// script is one remembered script body. Every field but name, used, evicted
// and the alias fields is written once, before the script is published.
type script struct {
	sha    string
	shaArg interface{} // sha boxed once, so rewriting allocates nothing for it
	body   string
	// id is the identity the body is indexed under (see bodyID).
	id bodyID
	// alias is a second string identity with the same content (a caller's
	// string when the body was first seen under another, for instance given
	// to Register); aliasBody keeps that string alive. Guarded by the cache
	// lock; at most one per script, so the index stays bounded.
	alias     bodyID
	aliasBody string
	// name is the name given to Register, read by tracing; names caches the
	// span names built from it, indexed by scriptKind (reset on rename).
	name  atomic.Pointer[string]
	names atomic.Pointer[[5]string]
	// used is the clock bit: set on every hit, cleared by the eviction hand.
	used atomic.Bool
	// evicted is set once the script has left the cache, so that per-node
	// state can drop it too.
	evicted atomic.Bool
	// pinned scripts were given to Register and are never evicted. Guarded
	// by the cache lock.
	pinned bool
}

// displayName is the registered name, or the SHA1.
func (s *script) displayName() string {
	if n := s.name.Load(); n != nil {
		return *n
	}
	return s.sha
}

// bodyID identifies a body by where its bytes live and how many there are.
// For a string body, the cached script keeps that very string, so its memory
// cannot be reused while the id is in the index: the same id means the same
// immutable bytes, and looking it up costs the same for 200 B and 32 KB.
// A []byte body can change under the same id, so a hit is checked with a
// byte comparison before it is trusted.
type bodyID struct {
	p *byte
	n int
}

// shaCache remembers script bodies by SHA1, bounded by a count, with CLOCK
// eviction (an approximation of LRU whose hits take no write lock).
type shaCache struct {
	mu     sync.RWMutex
	byID   map[bodyID]*script
	byBody map[string]*script // content index: a new string with known content
	bySHA  map[string]*script
	ring   []*script // evictable scripts; the clock hand walks it
	hand   int
	limit  int
}

func newSHACache(limit int) *shaCache {
	return &shaCache{
		byID:   make(map[bodyID]*script),
		byBody: make(map[string]*script),
		bySHA:  make(map[string]*script),
		limit:  limit,
	}
}

func stringID(s string) bodyID { return bodyID{p: unsafe.StringData(s), n: len(s)} }

func bytesID(b []byte) bodyID { return bodyID{p: unsafe.SliceData(b), n: len(b)} }

// forCall returns the script of an EVAL/EVAL_RO call, learning it on first
// sight. A string seen before under the same identity costs one small map
// lookup; a new identity with known content costs a hash of the content; only
// unknown content is hashed with SHA1.
func (c *shaCache) forCall(sc *scriptCall) *script {
	var id bodyID
	if sc.isBytes {
		id = bytesID(sc.bodyBytes)
	} else {
		id = stringID(sc.body)
	}
	c.mu.RLock()
	s := c.byID[id]
	if s != nil && !s.holds(id, sc) {
		s = nil
	}
	if s == nil {
		if sc.isBytes {
			s = c.byBody[string(sc.bodyBytes)] // no allocation: the compiler uses the bytes
		} else {
			s = c.byBody[sc.body]
		}
		if s != nil && !sc.isBytes && s.alias == (bodyID{}) {
			c.mu.RUnlock()
			c.addAlias(s, sc.body)
			s.touch()
			return s
		}
	}
	c.mu.RUnlock()
	if s != nil {
		s.touch()
		return s
	}

	// Hash outside the lock: it is the slow part.
	body := sc.body
	if sc.isBytes {
		body = string(sc.bodyBytes) // our own copy: the caller may reuse the buffer
	}
	sum := sha1.Sum([]byte(body))
	sha := hex.EncodeToString(sum[:])
	if sc.isBytes {
		id = stringID(body) // index our copy, whose memory we keep
	}
	return c.add(sha, body, id, false)
}

// holds reports whether an index hit under id really is this call's body.
// Only string identities are indexed, and only while the script keeps that
// string alive, so the pointer check proves the bytes are the same: a string
// cannot change and its memory cannot be reused while referenced. A []byte
// body can change under the same pointer, so it is compared.
func (s *script) holds(id bodyID, sc *scriptCall) bool {
	if sc.isBytes {
		return len(s.body) == len(sc.bodyBytes) && string(sc.bodyBytes) == s.body
	}
	return (id == s.id && unsafe.StringData(s.body) == id.p) ||
		(id == s.alias && unsafe.StringData(s.aliasBody) == id.p)
}

// addAlias indexes a second string identity for a script, once.
func (c *shaCache) addAlias(s *script, body string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.evicted.Load() || s.alias != (bodyID{}) {
		return
	}
	id := stringID(body)
	if _, taken := c.byID[id]; taken {
		return
	}
	s.alias, s.aliasBody = id, body
	c.byID[id] = s
}

// lookupSHA returns the script with that (lower-case) SHA1, or nil.
func (c *shaCache) lookupSHA(sha string) *script {
	c.mu.RLock()
	s := c.bySHA[sha]
	c.mu.RUnlock()
	if s != nil {
		s.touch()
	}
	return s
}

// register remembers a body for good under a name.
func (c *shaCache) register(name, body string) *script {
	sum := sha1.Sum([]byte(body))
	s := c.add(hex.EncodeToString(sum[:]), body, stringID(body), true)
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
}

// add publishes a script, or returns the one already there for that SHA1.
// id must be the string identity of body.
func (c *shaCache) add(sha, body string, id bodyID, pin bool) *script {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.bySHA[sha]; s != nil {
		if pin && !s.pinned {
			c.unring(s)
			s.pinned = true
		}
		return s
	}
	s := &script{sha: sha, shaArg: sha, body: body, id: id, pinned: pin}
	if !pin {
		for c.limit > 0 && len(c.ring) >= c.limit {
			c.evictOne()
		}
		c.ring = append(c.ring, s)
	}
	c.bySHA[sha] = s
	c.byBody[body] = s
	if _, taken := c.byID[id]; !taken {
		c.byID[id] = s
	}
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
	delete(c.bySHA, s.sha)
	if c.byBody[s.body] == s {
		delete(c.byBody, s.body)
	}
	if c.byID[s.id] == s {
		delete(c.byID, s.id)
	}
	if s.alias != (bodyID{}) && c.byID[s.alias] == s {
		delete(c.byID, s.alias)
	}
	s.evicted.Store(true)
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

// len reports how many scripts are remembered, pinned ones included.
func (c *shaCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.bySHA)
}
