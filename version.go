package scripthook

// Version is the version of scripthook, reported as the instrumentation
// version of its tracer and meter.
const Version = "0.1.0"

// ScopeName is the instrumentation scope name of scripthook's tracer and
// meter: the package's full import path.
const ScopeName = "github.com/scripthook/scripthook"
