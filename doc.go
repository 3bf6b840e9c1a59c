// Package scripthook is a go-redis v9 hook that sends Lua scripts as EVALSHA
// once the server has them, repairs NOSCRIPT replies transparently, carries
// the saving into pipelines and transactions, and traces every script run and
// batch with OpenTelemetry.
//
// Adding the hook is the whole integration:
//
//	rdb.AddHook(scripthook.New())
//
// For a Cluster or a Ring, use [Instrument], which reaches every node.
package scripthook
