package testkit

import (
	"io"
	"reflect"
	"testing"

	"github.com/redis/go-redis/v9"
)

// AutoPipeliner is what the tests use of go-redis's *redis.AutoPipeliner,
// named without that type so that the suite builds on go-redis releases
// that lack it.
type AutoPipeliner interface {
	redis.Scripter
	io.Closer
}

// AutoPipeline returns c.AutoPipeline(), closed when t ends. go-redis has
// AutoPipeline only from v9.22 (Client and ClusterClient); on an older
// release the test is skipped, and says so, rather than counted as passed.
func AutoPipeline(t testing.TB, c any) AutoPipeliner {
	t.Helper()
	m := reflect.ValueOf(c).MethodByName("AutoPipeline")
	if !m.IsValid() || m.Type().NumIn() != 0 || m.Type().NumOut() != 2 {
		t.Skipf("go-redis %s has no %T.AutoPipeline (v9.22 and later have it)", redis.Version(), c)
	}
	out := m.Call(nil)
	if err, _ := out[1].Interface().(error); err != nil {
		t.Fatalf("AutoPipeline: %v", err)
	}
	ap, ok := out[0].Interface().(AutoPipeliner)
	if !ok {
		t.Fatalf("%T is not an AutoPipeliner", out[0].Interface())
	}
	t.Cleanup(func() { _ = ap.Close() })
	return ap
}
