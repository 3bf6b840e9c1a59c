// Package integration_test checks scripthook from the user's side against
// real redis-server processes: every behaviour is compared with a plain
// go-redis client on the same (or a twin) server, reply for reply.
package integration_test

import (
	"os"
	"testing"

	"github.com/scripthook/scripthook/internal/redistest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	redistest.CloseShared()
	os.Exit(code)
}
