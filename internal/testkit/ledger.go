package testkit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
)

// LedgerScript is the exactly-once probe: every call adds 1 to its own
// field (its call id) of its tag's hash and returns the new count with the
// id, in one atomic step. Afterwards every id must have been counted once,
// a call that ran twice shows as 2, and a reply read into another caller's
// command carries another id.
const LedgerScript = "local n = redis.call('HINCRBY', KEYS[1], ARGV[1], 1) return {n, ARGV[1]}"

// LedgerKey is a tag's hash; the tag is a hash tag, so that a Cluster keeps
// it in the tag's slot.
func LedgerKey(tag string) string { return "{" + tag + "}:ledger" }

// Outcome classifies what a caller saw.
type Outcome int

const (
	// Ran: success, with the call's own id.
	Ran Outcome = iota
	// Unknown: a network or context error; the call may or may not have
	// run.
	Unknown
	// Refused: an error reply; the call must not have run.
	Refused
)

// Ledger files every call of LedgerScript and proves exactly-once.
type Ledger struct {
	mu    sync.Mutex
	calls map[callID]filed
	errs  map[string]int // error text -> count
	// epoch counts DataLost calls.
	epoch int
}

type callID struct{ tag, id string }

// filed is one call's outcome and the epoch the call began in.
type filed struct {
	o     Outcome
	epoch int
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger { return &Ledger{calls: map[callID]filed{}, errs: map[string]int{}} }

// Epoch returns the number of DataLost calls so far: the epoch a call that
// begins now belongs to, for RecordIn.
func (l *Ledger) Epoch() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.epoch
}

// DataLost tells the ledger that the server lost its data (a restart
// without persistence) and serves again: the effects of every call that
// began before (in an earlier epoch) may be gone, so Verify checks those
// only for having run at most once. Call it once the restarted server
// answers, and record calls that may straddle it with RecordIn: a call
// that began before the restart and is filed after it must still count as
// begun before.
func (l *Ledger) DataLost() {
	l.mu.Lock()
	l.epoch++
	l.mu.Unlock()
}

// Record files one call's reply: v and err as the caller got them. The
// call counts as begun in the current epoch (see RecordIn).
func (l *Ledger) Record(t testing.TB, tag, id string, v interface{}, err error) Outcome {
	return l.RecordIn(t, -1, tag, id, v, err)
}

// RecordIn is Record for a call that began in epoch (see Epoch); -1 is the
// current one.
func (l *Ledger) RecordIn(t testing.TB, epoch int, tag, id string, v interface{}, err error) Outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	if epoch < 0 {
		epoch = l.epoch
	}
	c := callID{tag, id}
	if _, dup := l.calls[c]; dup {
		t.Errorf("testkit: call %v recorded twice", c)
	}
	var o Outcome
	switch {
	case err == nil:
		o = Ran
		reply, _ := v.([]interface{})
		if len(reply) != 2 || reply[1] != id {
			t.Errorf("testkit: call %v got %#v, another call's reply", c, v)
		}
	case isNetErr(err):
		o = Unknown
	default:
		o = Refused
	}
	if err != nil {
		l.errs[err.Error()]++
	}
	l.calls[c] = filed{o, epoch}
	return o
}

// RecordCmd is Record for a command.
func (l *Ledger) RecordCmd(t testing.TB, tag, id string, cmd *redis.Cmd) Outcome {
	v, err := cmd.Result()
	return l.Record(t, tag, id, v, err)
}

// Errors returns the error texts callers saw, with counts.
func (l *Ledger) Errors() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := make(map[string]int, len(l.errs))
	for k, v := range l.errs {
		m[k] = v
	}
	return m
}

// Counts returns how many calls had each outcome.
func (l *Ledger) Counts() (ran, unknown, refused int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.calls {
		switch f.o {
		case Ran:
			ran++
		case Unknown:
			unknown++
		default:
			refused++
		}
	}
	return
}

// Verdict is what Verify found.
type Verdict struct {
	// Twice counts calls that ran more than once; Missing calls that
	// succeeded without effect; RanRefused calls refused that ran anyway;
	// Stray fields written by no call.
	Twice, Missing, RanRefused, Stray int
	// UnknownRan and UnknownLost split the calls with network errors.
	UnknownRan, UnknownLost int
	// Lost counts the calls that began before the last DataLost, whose
	// effects may be gone: they are only checked for running at most once.
	Lost int
}

// Verify reads every tag's hash through rdb (a client without the hook),
// reports every violation with t.Errorf, deletes the hashes and returns
// the figures.
func (l *Ledger) Verify(t testing.TB, rdb redis.Cmdable) Verdict {
	t.Helper()
	ctx := context.Background()
	l.mu.Lock()
	defer l.mu.Unlock()
	tags := map[string]bool{}
	for c := range l.calls {
		tags[c.tag] = true
	}
	var v Verdict
	counted := map[callID]int{}
	for tag := range tags {
		m, err := rdb.HGetAll(ctx, LedgerKey(tag)).Result()
		if err != nil {
			t.Fatalf("testkit: reading ledger %s: %v", tag, err)
		}
		for id, s := range m {
			n, _ := strconv.Atoi(s)
			counted[callID{tag, id}] = n
		}
		_ = rdb.Del(ctx, LedgerKey(tag)).Err()
	}
	for c, f := range l.calls {
		n := counted[c]
		delete(counted, c)
		o := f.o
		switch {
		case n > 1:
			v.Twice++
			t.Errorf("testkit: call %v ran %d times", c, n)
		case f.epoch < l.epoch:
			v.Lost++
		case o == Ran && n != 1:
			v.Missing++
			t.Errorf("testkit: call %v succeeded but its effect is missing", c)
		case o == Refused && n != 0:
			v.RanRefused++
			t.Errorf("testkit: call %v got an error reply but ran", c)
		case o == Unknown && n == 1:
			v.UnknownRan++
		case o == Unknown:
			v.UnknownLost++
		}
	}
	for c, n := range counted {
		v.Stray++
		t.Errorf("testkit: field %v (count %d) was written by no call", c, n)
	}
	return v
}

// isNetErr reports an error that is not a server reply: the call may or may
// not have reached the server.
func isNetErr(err error) bool {
	var rerr redis.Error
	return err != nil && err != redis.Nil && !errors.As(err, &rerr)
}

// IsNetErr is isNetErr for tests.
func IsNetErr(err error) bool { return isNetErr(err) }

// ID returns the i-th id of worker w.
func ID(w, i int) string { return fmt.Sprintf("w%d-%d", w, i) }
