package redistest

import (
	"errors"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
)

// Port range from which servers get their ports. Every port is picked so that
// port+clusterBusOffset is free as well, because a cluster-enabled redis-server
// also listens on that bus port and fails to start if it is taken. The range
// is chosen so that both the port and its bus port stay below Linux's default
// ephemeral range (32768-60999): outgoing connections of unrelated programs
// then cannot be holding them, and everything stays below 55000 as required
// for cluster nodes.
const (
	portMin          = 11000
	portMax          = 22700 // exclusive; bus ports end below 32768
	clusterBusOffset = 10000
	pickAttempts     = 200
)

var (
	portMu sync.Mutex
	// handedOut holds every port this process has given to a server. Ports
	// are never returned to the pool: a stopped server's port may still be
	// in TIME_WAIT or, after Restart, be expected to come back, and the range
	// is large compared to what a test binary uses.
	handedOut = map[int]bool{}
)

// errNoPort is returned when no free port pair could be found.
var errNoPort = errors.New("redistest: no free 127.0.0.1 port pair found")

// pickPort returns a random port p in [portMin, portMax) such that p and
// p+clusterBusOffset can currently be bound on 127.0.0.1 and p was not handed
// out before by this process.
//
// Ports are probed by binding and closing them, so there is a window in which
// another process (for example a parallel test binary using this package) can
// take the port before redis-server binds it; callers handle that by retrying
// with a new port when redis-server reports "Address already in use". A
// random pick, rather than asking the kernel for port 0, keeps the chance of
// two test binaries colliding small and lets us control the bus port.
func pickPort() (int, error) {
	portMu.Lock()
	defer portMu.Unlock()
	for range pickAttempts {
		p := portMin + rand.IntN(portMax-portMin)
		if handedOut[p] || handedOut[p+clusterBusOffset] || handedOut[p-clusterBusOffset] {
			continue
		}
		if !canBind(p) || !canBind(p+clusterBusOffset) {
			continue
		}
		handedOut[p] = true
		return p, nil
	}
	return 0, errNoPort
}

// canBind reports whether 127.0.0.1:port can be listened on right now.
func canBind(port int) bool {
	l, err := net.Listen("tcp", localAddr(port))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// localAddr formats the only address this package ever binds to.
func localAddr(port int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}
