package redistest

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// adminClient returns a plain client for this package's own queries. RESP2
// and DisableIdentity keep it from sending CLIENT SETINFO and similar
// handshake commands that would show up in the statistics under test, and
// it never has the hooks of the client under test.
func (s *Server) adminClient() *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:            s.Addr,
		Protocol:        2,
		DisableIdentity: true,
		DialTimeout:     clientTimeout,
		ReadTimeout:     clientTimeout,
		WriteTimeout:    clientTimeout,
		PoolSize:        2,
		MaxRetries:      -1, // callers poll; retries would only hide state
	})
}

// infoField returns the value of "field:value" in an INFO reply, or "".
func infoField(info, field string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}

// role returns the first element of ROLE: "master", "slave" or "sentinel".
func (s *Server) role(ctx context.Context) (string, error) {
	c := s.adminClient()
	defer c.Close()
	v, err := c.Do(ctx, "ROLE").Slice()
	if err != nil {
		return "", fmt.Errorf("redistest: ROLE on %s: %w", s.Addr, err)
	}
	if len(v) == 0 {
		return "", fmt.Errorf("redistest: empty ROLE reply from %s", s.Addr)
	}
	r, _ := v[0].(string)
	return r, nil
}

// waitFor polls cond every interval until it returns nil, ctx is done or
// timeout elapses, and then reports cond's last error, which says what was
// still missing.
func waitFor(ctx context.Context, timeout, interval time.Duration, what string, cond func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := cond(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redistest: timed out waiting for %s: %w", what, err)
		case <-time.After(interval):
		}
	}
}
