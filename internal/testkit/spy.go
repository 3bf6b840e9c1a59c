package testkit

import (
	"context"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Spy is a hook that lets every command through and records what it saw:
// placed after scripthook it sees the wire, before it the caller's
// commands. Keep makes it hold on to the commands themselves, as a hook may
// (and go-redis's ClusterClient does); Before and After run around next.
type Spy struct {
	Keep   bool
	Before func(ctx context.Context, cmds []redis.Cmder)
	After  func(ctx context.Context, cmds []redis.Cmder, err error)

	mu      sync.Mutex
	batches [][]string
	kept    [][]redis.Cmder
}

var _ redis.Hook = (*Spy)(nil)

func (s *Spy) DialHook(next redis.DialHook) redis.DialHook { return next }

func (s *Spy) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		cmds := []redis.Cmder{cmd}
		s.note(ctx, cmds)
		err := next(ctx, cmd)
		if s.After != nil {
			s.After(ctx, cmds, err)
		}
		return err
	}
}

func (s *Spy) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		s.note(ctx, cmds)
		err := next(ctx, cmds)
		if s.After != nil {
			s.After(ctx, cmds, err)
		}
		return err
	}
}

func (s *Spy) note(ctx context.Context, cmds []redis.Cmder) {
	names := make([]string, len(cmds))
	for i, c := range cmds {
		names[i] = FullName(c)
	}
	s.mu.Lock()
	s.batches = append(s.batches, names)
	if s.Keep {
		s.kept = append(s.kept, cmds)
	}
	s.mu.Unlock()
	if s.Before != nil {
		s.Before(ctx, cmds)
	}
}

// FullName is a command's name as INFO commandstats counts it: "eval",
// "script|load".
func FullName(c redis.Cmder) string {
	args := c.Args()
	name := strings.ToLower(c.Name())
	if (name == "script" || name == "function") && len(args) > 1 {
		name += "|" + strings.ToLower(text(args[1]))
	}
	return name
}

// Names returns every command seen, in order, batches flattened.
func (s *Spy) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, b := range s.batches {
		out = append(out, b...)
	}
	return out
}

// Batches returns what each call of the spy saw (a single command is a
// batch of one).
func (s *Spy) Batches() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]string(nil), s.batches...)
}

// Kept returns the commands kept (with Keep).
func (s *Spy) Kept() [][]redis.Cmder {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]redis.Cmder(nil), s.kept...)
}

// Reset forgets what was recorded.
func (s *Spy) Reset() {
	s.mu.Lock()
	s.batches, s.kept = nil, nil
	s.mu.Unlock()
}
