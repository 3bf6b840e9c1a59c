// Package testkit is the harness scripthook's tests share: rigs of real
// servers and clients (rig.go), the exactly-once ledger (ledger.go), a spy
// hook (spy.go), a Redis stand-in at the hook level for what a real server
// cannot stage on demand (fake.go), the rendering of replies that
// differential tests compare (render.go), byte counting on the wire
// (wire.go), faults on a timer (every.go), and the Cluster rig with its
// per-node spy (cluster.go, nodespy.go).
package testkit
