package scripthook

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Each FUNCTION LOAD the hook sends has arguments of its own: a hook after
// this one that rewrites a command's arguments in place changes that load
// only, never the registered code the next load sends.
func TestFnLoadArgsOwned(t *testing.T) {
	ctx := context.Background()
	const code = "#!lua name=ownlib\nredis.register_function('ownf', function(keys, args) return 1 end)"
	h := New(WithTracing(false))
	_, err := h.RegisterLibrary(code)
	require.NoError(t, err)
	var sent []string
	p := h.ProcessHook(func(_ context.Context, cmd redis.Cmder) error {
		if args := cmd.Args(); len(args) == 4 && args[0] == "function" {
			sent = append(sent, args[3].(string))
			args[3] = "rewritten by a later hook"
		}
		return nil
	})
	require.NoError(t, p(ctx, redis.NewCmd(ctx, "fcall", "ownf", 0)))
	require.NoError(t, p(ctx, redis.NewCmd(ctx, "function", "flush"))) // the next call loads again
	require.NoError(t, p(ctx, redis.NewCmd(ctx, "fcall", "ownf", 0)))
	assert.Equal(t, []string{code, code}, sent)
}
