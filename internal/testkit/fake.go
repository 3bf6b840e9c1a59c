package testkit

import (
	"container/list"
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Fake stands in for a Redis server at the hook level. Added to a client
// after scripthook (AddHook, last), it answers every command itself, so the
// client never dials; or its Process and ProcessPipeline serve as the next
// of scripthook's hook functions in unit tests. It keeps a script cache by
// the rules of Redis 7.4+ (EvictAt 500: scripts EVAL creates sit in an LRU
// that evicts the oldest, every use moves a script to the tail, SCRIPT LOAD
// creates scripts that are never evicted, and only Valkey 8 makes an
// EVAL-created one permanent when it is SCRIPT LOADed), keeps function
// libraries (FUNCTION LOAD [REPLACE], FLUSH, DELETE; an FCALL of a function
// no library registers gets "ERR Function not found"), refuses what an ACL
// denies with the servers' exact texts, and counts what crosses its wire:
// round trips, RESP bytes, commands, and the runs of every script body and
// function.
//
// It sets errors only, never reply values (except SCRIPT LOAD's SHA1):
// results are compared on real servers; the fake is for what a real server
// cannot stage on demand (eviction where CI has none, refusals, faults) and
// for exact accounting.
type Fake struct {
	// EvictAt is the LRU's length for EVAL-created scripts; 0: no eviction
	// (Redis 7.0-7.2, Valkey 7.2).
	EvictAt int
	// PromoteOnLoad makes SCRIPT LOAD of an EVAL-created script permanent
	// (Valkey 8).
	PromoteOnLoad bool
	// Denied lists the commands the user may not run, as ACL names them
	// ("evalsha", "evalsha_ro", "script|load").
	Denied map[string]bool
	// DeniedKeys is a key prefix the user may not access.
	DeniedKeys string
	// Fail, when set, is asked first for every command; a non-nil error is
	// its reply and nothing else happens.
	Fail func(args []interface{}) error

	mu      sync.Mutex
	scripts map[string]*fakeScript // by SHA1
	lru     *list.List             // of *fakeScript created by EVAL
	libs    map[string]*fakeLib    // function libraries by name
	stats   FakeStats
}

// fakeLib is a function library FUNCTION LOAD created.
type fakeLib struct {
	name  string
	funcs []string // lower case
}

// FakeStats is what crossed a Fake's wire.
type FakeStats struct {
	RoundTrips int
	Bytes      int64
	// Calls counts commands by name as INFO commandstats does ("eval",
	// "evalsha", "script|load").
	Calls map[string]int
	// Runs counts the runs of each script body.
	Runs    map[string]int
	Evicted int
	// NoScript counts NOSCRIPT replies the fake gave.
	NoScript int
	// FnRuns counts the runs of each function, by lower-case name.
	FnRuns map[string]int
}

type fakeScript struct {
	sha, body string
	elem      *list.Element // in lru; nil: permanent
}

// NoScriptText is the server's NOSCRIPT reply, as Redis 7.0-8.0 write it.
const NoScriptText = "NOSCRIPT No matching script. Please use EVAL."

// NoFunctionText is the server's reply to an FCALL of a function it lacks.
const NoFunctionText = "ERR Function not found"

// fakeErr is an error reply.
type fakeErr string

func (e fakeErr) Error() string { return string(e) }
func (fakeErr) RedisError()     {}

func (f *Fake) init() {
	if f.scripts == nil {
		f.scripts = map[string]*fakeScript{}
		f.lru = list.New()
		f.stats.Calls = map[string]int{}
		f.stats.Runs = map[string]int{}
		f.stats.FnRuns = map[string]int{}
		f.libs = map[string]*fakeLib{}
	}
}

// Stats returns a copy of the counts.
func (f *Fake) Stats() FakeStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	st := f.stats
	st.Calls, st.Runs, st.FnRuns = map[string]int{}, map[string]int{}, map[string]int{}
	for k, v := range f.stats.Calls {
		st.Calls[k] = v
	}
	for k, v := range f.stats.FnRuns {
		st.FnRuns[k] = v
	}
	for k, v := range f.stats.Runs {
		st.Runs[k] = v
	}
	return st
}

// Reset zeroes the counts (not the script cache).
func (f *Fake) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	f.stats = FakeStats{Calls: map[string]int{}, Runs: map[string]int{}, FnRuns: map[string]int{}}
}

// FunctionFlush deletes every function library, as another client's
// FUNCTION FLUSH would.
func (f *Fake) FunctionFlush() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	f.libs = map[string]*fakeLib{}
}

// FunctionLoad loads a library as another client would (replacing one of
// the same name), without counting it.
func (f *Fake) FunctionLoad(code string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	return f.loadLib(code, true)
}

// Libraries returns the names of the libraries the fake holds.
func (f *Fake) Libraries() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	out := make([]string, 0, len(f.libs))
	for name := range f.libs {
		out = append(out, name)
	}
	return out
}

// Flush empties the script cache, as another client's SCRIPT FLUSH would.
func (f *Fake) Flush() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	f.scripts = map[string]*fakeScript{}
	f.lru.Init()
}

// Cached reports how many scripts the cache holds
// (number_of_cached_scripts).
func (f *Fake) Cached() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	return len(f.scripts)
}

// Neighbour runs n one-off scripts as another client of the server would
// (noisy neighbours evicting the LRU), without counting them.
func (f *Fake) Neighbour(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	for i := 0; i < n; i++ {
		body := fmt.Sprintf("return 'neighbour %d %d'", time.Now().UnixNano(), i)
		f.create(body, SHA1(body), true)
	}
}

// DialHook, ProcessHook and ProcessPipelineHook make the Fake a redis.Hook
// that ends the chain.
func (f *Fake) DialHook(next redis.DialHook) redis.DialHook {
	return func(context.Context, string, string) (net.Conn, error) {
		return nil, fmt.Errorf("testkit: the Fake does not dial")
	}
}

func (f *Fake) ProcessHook(redis.ProcessHook) redis.ProcessHook { return f.Process }

func (f *Fake) ProcessPipelineHook(redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return f.ProcessPipeline
}

// Process answers one command: one round trip.
func (f *Fake) Process(_ context.Context, cmd redis.Cmder) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	f.stats.RoundTrips++
	err := f.exec(cmd, false)
	cmd.SetErr(err)
	return err
}

// ProcessPipeline answers a batch, in order, in one round trip. Commands
// between MULTI and EXEC are queued and run at EXEC, as a server does; a
// refusal at queue time aborts the transaction.
func (f *Fake) ProcessPipeline(_ context.Context, cmds []redis.Cmder) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	f.stats.RoundTrips++
	var queued []redis.Cmder
	inMulti, abort := false, false
	var first error
	set := func(c redis.Cmder, err error) {
		c.SetErr(err)
		if err != nil && first == nil {
			first = err
		}
	}
	for _, c := range cmds {
		name := strings.ToLower(fmt.Sprint(c.Args()[0]))
		switch {
		case name == "multi":
			f.count(c)
			inMulti, abort, queued = true, false, nil
			set(c, nil)
		case name == "exec" && inMulti:
			f.count(c)
			inMulti = false
			if abort {
				set(c, fakeErr("EXECABORT Transaction discarded because of previous errors."))
				continue
			}
			for _, q := range queued {
				set(q, f.exec(q, true))
			}
			set(c, nil)
		case name == "discard" && inMulti:
			f.count(c)
			inMulti = false
			set(c, nil)
		case inMulti:
			if err := f.refuse(c); err != nil {
				abort = true
				set(c, err)
				continue
			}
			queued = append(queued, c)
			set(c, nil)
		default:
			set(c, f.exec(c, false))
		}
	}
	return first
}

// count records a command and its bytes.
func (f *Fake) count(c redis.Cmder) {
	args := c.Args()
	f.stats.Bytes += respBytes(args)
	name := strings.ToLower(fmt.Sprint(args[0]))
	if len(args) > 1 && (name == "script" || name == "function") {
		name += "|" + strings.ToLower(fmt.Sprint(args[1]))
	}
	f.stats.Calls[name]++
}

// refuse is what the server checks before running (or queueing) a command.
func (f *Fake) refuse(c redis.Cmder) error {
	args := c.Args()
	name := strings.ToLower(fmt.Sprint(args[0]))
	acl := name
	if (name == "script" || name == "function") && len(args) > 1 {
		acl += "|" + strings.ToLower(fmt.Sprint(args[1]))
	}
	if f.Denied[acl] || f.Denied[name] {
		return fakeErr("NOPERM User fake has no permissions to run the '" + acl + "' command")
	}
	if f.DeniedKeys != "" && (name == "eval" || name == "evalsha" || name == "eval_ro" || name == "evalsha_ro") && len(args) >= 3 {
		n, _ := strconv.Atoi(fmt.Sprint(args[2]))
		for i := 3; i < 3+n && i < len(args); i++ {
			if strings.HasPrefix(fmt.Sprint(args[i]), f.DeniedKeys) {
				return fakeErr("NOPERM No permissions to access a key")
			}
		}
	}
	return nil
}

// exec runs one command. Caller holds f.mu.
func (f *Fake) exec(c redis.Cmder, inTx bool) error {
	if !inTx {
		f.count(c)
	}
	args := c.Args()
	if f.Fail != nil {
		if err := f.Fail(args); err != nil {
			return err
		}
	}
	if err := f.refuse(c); err != nil {
		return err
	}
	name := strings.ToLower(fmt.Sprint(args[0]))
	switch name {
	case "eval", "eval_ro":
		body := text(args[1])
		s, err := f.create(body, SHA1(body), true)
		if err != nil {
			return err
		}
		return f.run(s, args)
	case "evalsha", "evalsha_ro":
		s := f.scripts[strings.ToLower(text(args[1]))]
		if s == nil {
			f.stats.NoScript++
			return fakeErr(NoScriptText)
		}
		return f.run(s, args)
	case "script":
		switch strings.ToLower(text(args[1])) {
		case "load":
			body := text(args[2])
			sha := SHA1(body)
			if old := f.scripts[sha]; old != nil {
				if f.PromoteOnLoad && old.elem != nil {
					f.lru.Remove(old.elem)
					old.elem = nil
				}
			} else if _, err := f.create(body, sha, false); err != nil {
				return err
			}
			if sc, ok := c.(interface{ SetVal(string) }); ok {
				sc.SetVal(sha)
			}
		case "flush":
			f.scripts = map[string]*fakeScript{}
			f.lru.Init()
		}
	case "function":
		switch strings.ToLower(text(args[1])) {
		case "load":
			replace := len(args) > 3 && strings.EqualFold(text(args[2]), "replace")
			return f.loadLib(text(args[len(args)-1]), replace)
		case "flush":
			f.libs = map[string]*fakeLib{}
		case "delete":
			if len(args) < 3 || f.libs[text(args[2])] == nil {
				return fakeErr("ERR Library not found")
			}
			delete(f.libs, text(args[2]))
		}
	case "fcall", "fcall_ro":
		fn := strings.ToLower(text(args[1]))
		for _, l := range f.libs {
			if slices.Contains(l.funcs, fn) {
				f.stats.FnRuns[fn]++
				return nil
			}
		}
		return fakeErr(NoFunctionText)
	}
	return nil
}

// loadLib creates a library from code: "#!lua name=<name>" on the first
// line, functions registered as redis.register_function('<name>', ...);
// code holding "return +" does not compile. Caller holds f.mu.
func (f *Fake) loadLib(code string, replace bool) error {
	line, rest, _ := strings.Cut(code, "\n")
	name, ok := strings.CutPrefix(line, "#!lua name=")
	if !ok || name == "" {
		return fakeErr("ERR Missing library metadata")
	}
	if f.libs[name] != nil && !replace {
		return fakeErr("ERR Library '" + name + "' already exists")
	}
	if strings.Contains(rest, "return +") {
		return fakeErr("ERR Error compiling function: user_function:1: unexpected symbol near '+'")
	}
	l := &fakeLib{name: name}
	for _, part := range strings.Split(rest, "register_function('")[1:] {
		if fn, _, ok := strings.Cut(part, "'"); ok {
			l.funcs = append(l.funcs, strings.ToLower(fn))
		}
	}
	f.libs[name] = l
	return nil
}

// create returns the script, creating it (compiling: "return +" and bodies
// starting with "(" do not compile). Caller holds f.mu.
func (f *Fake) create(body, sha string, byEval bool) (*fakeScript, error) {
	if s := f.scripts[sha]; s != nil {
		return s, nil
	}
	if strings.Contains(body, "return +") || strings.HasPrefix(body, "(") {
		return nil, fakeErr("ERR Error compiling script (new function): user_script:1: unexpected symbol near '+'")
	}
	s := &fakeScript{sha: sha, body: body}
	if byEval && f.EvictAt > 0 {
		for f.lru.Len() >= f.EvictAt {
			old := f.lru.Remove(f.lru.Front()).(*fakeScript)
			delete(f.scripts, old.sha)
			f.stats.Evicted++
		}
		s.elem = f.lru.PushBack(s)
	}
	f.scripts[sha] = s
	return s, nil
}

// run counts a run and moves the script to the LRU's tail. A body holding
// error_reply('X') answers X, and error_reply(ARGV[1]) its first argument,
// as the script would. Caller holds f.mu.
func (f *Fake) run(s *fakeScript, args []interface{}) error {
	f.stats.Runs[s.body]++
	if s.elem != nil {
		f.lru.MoveToBack(s.elem)
	}
	if strings.Contains(s.body, "error_reply(ARGV[1])") {
		n, _ := strconv.Atoi(text(args[2]))
		if len(args) > 3+n {
			return fakeErr(text(args[3+n]))
		}
	}
	if i := strings.Index(s.body, "error_reply('"); i >= 0 {
		rest := s.body[i+len("error_reply('"):]
		if j := strings.IndexByte(rest, '\''); j >= 0 {
			return fakeErr(rest[:j])
		}
	}
	return nil
}

// Text is a command argument as the server reads it.
func Text(v interface{}) string { return text(v) }

// IsFunctionLoad reports a FUNCTION LOAD command.
func IsFunctionLoad(args []interface{}) bool {
	return len(args) > 1 && strings.EqualFold(text(args[0]), "function") && strings.EqualFold(text(args[1]), "load")
}

func text(v interface{}) string {
	switch t := v.(type) {
	case string:
		return t
	case []byte:
		return string(t)
	}
	return fmt.Sprint(v)
}

// respBytes is what go-redis writes for args: a RESP array of bulk strings.
func respBytes(args []interface{}) int64 {
	n := int64(1 + len(strconv.Itoa(len(args))) + 2)
	for _, a := range args {
		l := len(text(a))
		n += int64(1 + len(strconv.Itoa(l)) + 2 + l + 2)
	}
	return n
}
