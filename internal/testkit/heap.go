package testkit

import "runtime"

// HeapAfterGC returns the live heap after two full collections (the second
// frees what the finalizers run by the first released).
func HeapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
