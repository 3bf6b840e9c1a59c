package scripthook_test

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
